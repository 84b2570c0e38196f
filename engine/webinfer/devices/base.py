"""The device contract: what the WebGPU backend needs from a GPU, and nothing more.

Two implementations share it: ``wgpu_native.WgpuNativeDevice`` (wgpu-py in
CPython) and ``browser.BrowserDevice`` (``navigator.gpu`` through Pyodide's
FFI).  Everything above (weights, kernels, plans) is the same code on both.

The verbs::

    create_buffer / write_buffer / read_buffer / destroy_buffer   memory
    pipeline(name, source)          compile WGSL once, cached by (name, constants)
    bind_group(pipeline, buffers)   created once per dispatch when a plan is built
    prepare(steps) -> Program       a list of dispatches and copies, fixed forever
    run(programs, readback=...)     encode every program, ONE queue.submit, map once
    synchronize / destroy

A decode step is a :class:`Program` built once; each token costs one
``run`` call: one submit and (in the browser) one Python-to-JS crossing,
because the browser device hands the whole program to a small JS encoder.
``stats`` counts every call so tests can prove it.

Buffer usage bits and limit names are WebGPU's own (camelCase limit names,
as in the JS API), on both implementations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, Sequence, Union

import numpy as np


class BufferUsage(enum.IntFlag):
    """GPUBufferUsage bits (the same numbers as the WebGPU spec)."""

    MAP_READ = 0x0001
    MAP_WRITE = 0x0002
    COPY_SRC = 0x0004
    COPY_DST = 0x0008
    INDEX = 0x0010
    VERTEX = 0x0020
    UNIFORM = 0x0040
    STORAGE = 0x0080
    INDIRECT = 0x0100
    QUERY_RESOLVE = 0x0200


STORAGE_RW = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST
UNIFORM_RW = BufferUsage.UNIFORM | BufferUsage.COPY_DST

# WebGPU requires buffer sizes and write/copy sizes and offsets to be multiples of 4.
COPY_ALIGN = 4
# Default minUniformBufferOffsetAlignment / minStorageBufferOffsetAlignment:
# binding offsets must be multiples of this (every adapter supports 256).
BINDING_OFFSET_ALIGN = 256

# Limits we ask for at requestDevice: the adapter's own values, not the spec
# defaults (a default device gets a 128 MiB storage binding whatever the GPU has).
REQUESTED_LIMITS = (
    "maxStorageBufferBindingSize",
    "maxBufferSize",
    "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupSizeX",
    "maxComputeWorkgroupsPerDimension",
    "maxStorageBuffersPerShaderStage",
    "maxUniformBufferBindingSize",
)

# Features we use when present (WebGPU's names; wgpu-native spells subgroups "subgroup").
OPTIONAL_FEATURES = ("shader-f16", "subgroups", "timestamp-query")


def align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass(frozen=True)
class AdapterInfo:
    """What the adapter says about itself (GPUAdapterInfo plus whether it is a fallback adapter)."""

    vendor: str = ""
    architecture: str = ""
    device: str = ""
    description: str = ""
    backend: str = ""            # "vulkan", "metal", "d3d12", "browser", ...
    adapter_type: str = ""       # "discrete-gpu", "integrated-gpu", "cpu", "unknown"
    is_fallback: bool = False    # a software adapter (lavapipe, SwiftShader, WARP)

    def describe(self) -> str:
        parts = [p for p in (self.vendor, self.architecture, self.device or self.description) if p]
        text = " / ".join(parts) or "unknown adapter"
        extra = [p for p in (self.backend, self.adapter_type) if p]
        if self.is_fallback:
            extra.append("software")
        return f"{text} ({', '.join(extra)})" if extra else text

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class DeviceStats:
    """Counters of every device call; the per-token decode test reads them."""

    submits: int = 0
    runs: int = 0                 # run() calls: one Python-to-JS crossing each in the browser
    dispatches: int = 0           # dispatches encoded (by the JS encoder in the browser)
    encode_calls: int = 0         # Python-side encoder calls (set_pipeline/bind/dispatch/copy)
    writes: int = 0
    bytes_written: int = 0
    reads: int = 0
    bytes_read: int = 0
    buffers_created: int = 0
    pipelines_created: int = 0
    bind_groups_created: int = 0

    def snapshot(self) -> "DeviceStats":
        return DeviceStats(**{f.name: getattr(self, f.name) for f in fields(self)})

    def __sub__(self, other: "DeviceStats") -> "DeviceStats":
        return DeviceStats(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})


@dataclass(eq=False)
class Buffer:
    """A GPU buffer: ``handle`` is the implementation's object; ``size`` in bytes (a multiple of 4)."""

    handle: Any
    size: int
    usage: int
    label: str = ""
    destroyed: bool = False


@dataclass(eq=False)
class Pipeline:
    handle: Any
    name: str
    layout: Any = None  # bind group layout 0 (auto layout)


@dataclass(eq=False)
class BindGroup:
    handle: Any
    pipeline: Pipeline


# A binding: a whole buffer, or (buffer, offset, size) with offset a multiple of 256.
Binding = Union[Buffer, tuple]


@dataclass
class Dispatch:
    pipeline: Pipeline
    bind_group: BindGroup
    counts: tuple[int, int, int]
    label: str = ""


@dataclass
class Copy:
    src: Buffer
    src_offset: int
    dst: Buffer
    dst_offset: int
    size: int


Step = Union[Dispatch, Copy]


@dataclass(eq=False)
class Program:
    """A fixed list of dispatches and copies, prepared once and run many times.

    ``native`` is the implementation's prepared form (a tuple of resolved
    handles for wgpu-py, a JS array for the browser encoder).
    """

    steps: list[Step]
    native: Any = None
    label: str = ""

    @property
    def n_dispatches(self) -> int:
        return sum(isinstance(s, Dispatch) for s in self.steps)


@dataclass
class Readback:
    """A region to copy out at the end of a run: ``nbytes`` from ``buffer`` at ``offset``."""

    buffer: Buffer
    offset: int
    nbytes: int


class Device:
    """Base class of the two implementations; see the module docstring for the verbs."""

    kind: str = "abstract"

    def __init__(self) -> None:
        self.info = AdapterInfo()
        self.features: frozenset[str] = frozenset()
        self.limits: dict[str, int] = {}
        self.stats = DeviceStats()
        self.lost_reason: str | None = None
        self._pipelines: dict[tuple, Pipeline] = {}

    # ------------------------------------------------------------------ facts

    @property
    def has_f16(self) -> bool:
        return "shader-f16" in self.features

    @property
    def has_subgroups(self) -> bool:
        return "subgroups" in self.features

    @property
    def max_binding_size(self) -> int:
        return int(self.limits.get("maxStorageBufferBindingSize", 128 << 20))

    @property
    def max_workgroup_invocations(self) -> int:
        return int(self.limits.get("maxComputeInvocationsPerWorkgroup", 256))

    @property
    def lost(self) -> bool:
        return self.lost_reason is not None

    def check_alive(self, step: str = "") -> None:
        from ..errors import DeviceLostError

        if self.lost_reason is not None:
            raise DeviceLostError(f"the GPU device was lost ({self.lost_reason})", reason=self.lost_reason, step=step)

    # ------------------------------------------------------------------ memory

    def create_buffer(self, nbytes: int, usage: int = STORAGE_RW, label: str = "") -> Buffer:
        raise NotImplementedError

    def buffer_from(self, data: np.ndarray, usage: int = STORAGE_RW, label: str = "") -> Buffer:
        """A new buffer holding ``data`` (its bytes, padded with zeros to a multiple of 4)."""
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        buf = self.create_buffer(max(align(raw.size, COPY_ALIGN), COPY_ALIGN), usage, label)
        self.write_buffer(buf, raw)
        return buf

    def write_buffer(self, buf: Buffer, data: np.ndarray, offset: int = 0) -> None:
        """Queue a write of ``data``'s bytes at ``offset`` (padded to 4 bytes); it lands before the next submit."""
        raise NotImplementedError

    def read_buffer(self, buf: Buffer, offset: int = 0, nbytes: int | None = None) -> np.ndarray:
        """Wait for the GPU and copy ``nbytes`` at ``offset`` back: a uint8 array (sync; the browser needs JSPI)."""
        (out,) = self.run([], readback=[Readback(buf, offset, buf.size - offset if nbytes is None else nbytes)])
        return out

    def destroy_buffer(self, buf: Buffer) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ programs

    def pipeline(self, name: str, source: str, constants: dict[str, float] | None = None) -> Pipeline:
        """The compute pipeline of WGSL ``source`` (entry point ``main``), compiled once per (name, constants)."""
        key = (name, tuple(sorted((constants or {}).items())))
        p = self._pipelines.get(key)
        if p is None:
            p = self._create_pipeline(name, source, constants or {})
            self.stats.pipelines_created += 1
            self._pipelines[key] = p
        return p

    def _create_pipeline(self, name: str, source: str, constants: dict) -> Pipeline:
        raise NotImplementedError

    def bind_group(self, pipeline: Pipeline, bindings: Sequence[Binding] | dict[int, Binding],
                   label: str = "") -> BindGroup:
        """A bind group for group 0 of ``pipeline``: binding i is ``bindings[i]`` (a dict names the numbers)."""
        raise NotImplementedError

    def prepare(self, steps: Sequence[Step], label: str = "") -> Program:
        raise NotImplementedError

    def run(self, programs: Sequence[Program], readback: Sequence[Readback] = ()) -> list[np.ndarray]:
        """Encode ``programs`` in order, copy the ``readback`` regions out, submit once.

        Returns one uint8 array per readback region (waiting for the GPU if
        there are any; without readback, returns [] at once).
        """
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait until the GPU has finished all submitted work."""
        self.run([], readback=[])

    def destroy(self) -> None:
        raise NotImplementedError

    def simulate_loss(self, reason: str = "simulated") -> None:
        """Mark the device lost (and destroy it), as a driver reset would; for tests of the fallback."""
        self.lost_reason = reason
        try:
            self.destroy()
        except Exception:  # noqa: BLE001 -- a destroyed device may refuse anything
            pass
