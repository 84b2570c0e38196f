"""The device over wgpu-py (wgpu-native) in CPython: Vulkan, Metal or D3D12.

On a machine without a GPU, Debian's ``mesa-vulkan-drivers`` provides
lavapipe (llvmpipe), a software Vulkan adapter that runs the same WGSL: the
test suite runs every kernel there.

Errors: wgpu-py raises ``wgpu.GPUValidationError`` / ``GPUOutOfMemoryError``
synchronously from the create call that failed (it checks an error scope
around each call itself), so every create call here is wrapped and the error
re-raised as the named webinfer error with the step that failed.  wgpu-native
has no ``device.lost`` promise (wgpu-py 0.32 raises NotImplementedError), so
loss shows up as an error from submit or map; both are mapped to
:class:`~webinfer.errors.DeviceLostError`.

Encoding cost: ``run`` is a tight loop of three cffi calls per dispatch
(``set_pipeline`` is skipped when the pipeline repeats), with every handle
resolved once in :meth:`prepare`.
"""

from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np

from ..errors import (DeviceLostError, GPUError, GPUOutOfMemoryError, GPUUnavailableError, GPUValidationError,
                      ShaderCompileError)
from .base import (COPY_ALIGN, OPTIONAL_FEATURES, REQUESTED_LIMITS, AdapterInfo, BindGroup, Buffer, BufferUsage,
                   Copy, Device, Dispatch, Pipeline, Program, Readback, align)

# wgpu-native spells some feature names differently from the WebGPU spec.
_FEATURE_ALIASES = {"subgroup": "subgroups"}
_FEATURE_NATIVE = {v: k for k, v in _FEATURE_ALIASES.items()}


def _kebab(name: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in name)


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(w.capitalize() for w in rest)


def _import_wgpu():
    # wgpu-native logs an error line about XDG_RUNTIME_DIR when it is unset (harmless).
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="webinfer-xdg-")
    try:
        import wgpu  # noqa: F401
    except ImportError as e:
        raise GPUUnavailableError(
            f"wgpu-py is not installed ({e}); `pip install wgpu` for WebGPU in CPython"
        ) from None
    return wgpu


def _map_error(e: Exception, step: str, device: "WgpuNativeDevice | None" = None) -> GPUError:
    import wgpu

    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = str(e).lower()
    if device is not None and device.lost_reason is not None:
        return DeviceLostError(f"the GPU device was lost ({device.lost_reason})", reason=device.lost_reason, step=step)
    if "lost" in text or "destroyed" in text or "invalid device" in text:
        if device is not None:
            device.lost_reason = msg
        return DeviceLostError(f"the GPU device was lost ({msg})", reason=msg, step=step)
    if isinstance(e, wgpu.GPUOutOfMemoryError):
        return GPUOutOfMemoryError(msg, step=step)
    if isinstance(e, wgpu.GPUValidationError):
        return GPUValidationError(msg, step=step)
    return GPUError(msg, step=step)


class WgpuNativeDevice(Device):
    kind = "wgpu-native"

    def __init__(self, power_preference: str = "high-performance", *, adapter=None):
        super().__init__()
        wgpu = _import_wgpu()
        self._wgpu = wgpu
        try:
            if adapter is None:
                adapter = wgpu.gpu.request_adapter_sync(power_preference=power_preference)
        except Exception as e:  # noqa: BLE001 -- no driver raises many kinds of errors
            raise GPUUnavailableError(f"no WebGPU adapter: {e}") from None
        if adapter is None:
            raise GPUUnavailableError("no WebGPU adapter (is a Vulkan driver installed? e.g. mesa-vulkan-drivers)")
        self._adapter = adapter
        raw = adapter.info
        adapter_type = str(raw.get("adapter_type", "")).lower()
        self.info = AdapterInfo(
            vendor=str(raw.get("vendor", "")), architecture=str(raw.get("architecture", "")),
            device=str(raw.get("device", "")), description=str(raw.get("description", "")),
            backend=str(raw.get("backend_type", "")).lower(),
            adapter_type={"discretegpu": "discrete-gpu", "integratedgpu": "integrated-gpu"}.get(adapter_type, adapter_type),
            is_fallback=adapter_type == "cpu",
        )
        feats = {_FEATURE_ALIASES.get(f, f) for f in adapter.features}
        self.adapter_features = frozenset(feats)
        self.adapter_limits = {_camel(k): v for k, v in adapter.limits.items()}
        want = [_FEATURE_NATIVE.get(f, f) for f in OPTIONAL_FEATURES if f in feats]
        limits = {_kebab(k): self.adapter_limits[k] for k in REQUESTED_LIMITS if k in self.adapter_limits}
        try:
            self._device = adapter.request_device_sync(required_features=want, required_limits=limits,
                                                       label="webinfer")
        except Exception as e:  # noqa: BLE001
            raise GPUUnavailableError(f"the adapter refused a device: {e}") from None
        self.features = frozenset(_FEATURE_ALIASES.get(f, f) for f in self._device.features)
        self.limits = {_camel(k): v for k, v in self._device.limits.items()}
        self._queue = self._device.queue
        self._staging: Buffer | None = None
        self._sync_buf: Buffer | None = None
        self._zero_pad = np.zeros(COPY_ALIGN, np.uint8)

    # ------------------------------------------------------------------ memory

    def create_buffer(self, nbytes: int, usage: int = int(BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST),
                      label: str = "") -> Buffer:
        self.check_alive("create buffer")
        size = max(align(int(nbytes), COPY_ALIGN), COPY_ALIGN)
        try:
            h = self._device.create_buffer(size=size, usage=int(usage), label=label)
        except Exception as e:  # noqa: BLE001
            raise _map_error(e, f"create buffer {label!r} of {size} bytes", self) from None
        self.stats.buffers_created += 1
        return Buffer(h, size, int(usage), label)

    def write_buffer(self, buf: Buffer, data: np.ndarray, offset: int = 0) -> None:
        self.check_alive("write buffer")
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if raw.size % COPY_ALIGN:
            raw = np.concatenate([raw, self._zero_pad[: COPY_ALIGN - raw.size % COPY_ALIGN]])
        try:
            self._queue.write_buffer(buf.handle, int(offset), raw)
        except Exception as e:  # noqa: BLE001
            raise _map_error(e, f"write buffer {buf.label!r}", self) from None
        self.stats.writes += 1
        self.stats.bytes_written += raw.size

    def destroy_buffer(self, buf: Buffer) -> None:
        if not buf.destroyed:
            buf.destroyed = True
            try:
                buf.handle.destroy()
            except Exception:  # noqa: BLE001 -- freeing on a lost device is a no-op
                pass

    # ------------------------------------------------------------------ programs

    def _create_pipeline(self, name: str, source: str, constants: dict) -> Pipeline:
        self.check_alive(f"create pipeline {name}")
        try:
            module = self._device.create_shader_module(code=source, label=name)
        except Exception as e:  # noqa: BLE001
            if self.lost_reason is None and "lost" not in str(e).lower():
                raise ShaderCompileError(str(e), shader=name, step=f"compile shader {name}") from None
            raise _map_error(e, f"compile shader {name}", self) from None
        try:
            stage = {"module": module, "entry_point": "main"}
            if constants:
                stage["constants"] = dict(constants)
            h = self._device.create_compute_pipeline(layout="auto", compute=stage, label=name)
            layout = h.get_bind_group_layout(0)
        except Exception as e:  # noqa: BLE001
            if self.lost_reason is None and "lost" not in str(e).lower():
                raise ShaderCompileError(str(e), shader=name, step=f"create pipeline {name}") from None
            raise _map_error(e, f"create pipeline {name}", self) from None
        return Pipeline(h, name, layout)

    def bind_group(self, pipeline: Pipeline, bindings, label: str = "") -> BindGroup:
        self.check_alive("create bind group")
        entries = []
        items = bindings.items() if isinstance(bindings, dict) else enumerate(bindings)
        for i, b in items:
            if isinstance(b, Buffer):
                entries.append({"binding": i, "resource": {"buffer": b.handle, "offset": 0, "size": b.size}})
            else:
                buf, off, size = b
                entries.append({"binding": i, "resource": {"buffer": buf.handle, "offset": int(off), "size": int(size)}})
        try:
            h = self._device.create_bind_group(layout=pipeline.layout, entries=entries, label=label or pipeline.name)
        except Exception as e:  # noqa: BLE001
            raise _map_error(e, f"create bind group for {pipeline.name}", self) from None
        self.stats.bind_groups_created += 1
        return BindGroup(h, pipeline)

    def prepare(self, steps, label: str = "") -> Program:
        # Resolve handles once: ("d", pipeline, bind group, x, y, z) or ("c", src, so, dst, do, size)
        native = []
        for s in steps:
            if isinstance(s, Dispatch):
                native.append(("d", s.pipeline.handle, s.bind_group.handle, *s.counts))
            else:
                native.append(("c", s.src.handle, s.src_offset, s.dst.handle, s.dst_offset, s.size))
        return Program(list(steps), tuple(native), label)

    def _staging_buffer(self, nbytes: int) -> Buffer:
        if self._staging is None or self._staging.size < nbytes:
            if self._staging is not None:
                self.destroy_buffer(self._staging)
            size = max(align(nbytes, 4096), 4096)
            self._staging = self.create_buffer(size, BufferUsage.MAP_READ | BufferUsage.COPY_DST, "readback")
        return self._staging

    def run(self, programs: Sequence[Program], readback: Sequence[Readback] = ()) -> list[np.ndarray]:
        self.check_alive("submit")
        st = self.stats
        try:
            enc = self._device.create_command_encoder()
            cpass = None
            last_pipe = None
            n_calls = 0
            n_disp = 0
            for prog in programs:
                for op in prog.native:
                    if op[0] == "d":
                        if cpass is None:
                            cpass = enc.begin_compute_pass()
                            last_pipe = None
                        if op[1] is not last_pipe:
                            cpass.set_pipeline(op[1])
                            last_pipe = op[1]
                            n_calls += 1
                        cpass.set_bind_group(0, op[2])
                        cpass.dispatch_workgroups(op[3], op[4], op[5])
                        n_calls += 2
                        n_disp += 1
                    else:
                        if cpass is not None:
                            cpass.end()
                            cpass = None
                        enc.copy_buffer_to_buffer(op[1], op[2], op[3], op[4], op[5])
                        n_calls += 1
            if cpass is not None:
                cpass.end()
            staging = None
            spans = []
            if readback:
                total = sum(align(r.nbytes, COPY_ALIGN) for r in readback)
                staging = self._staging_buffer(total)
                at = 0
                for r in readback:
                    n = align(r.nbytes, COPY_ALIGN)
                    enc.copy_buffer_to_buffer(r.buffer.handle, r.offset, staging.handle, at, n)
                    spans.append((at, r.nbytes))
                    at += n
                    n_calls += 1
            self._queue.submit([enc.finish()])
            st.submits += 1
            st.runs += 1
            st.dispatches += n_disp
            st.encode_calls += n_calls
            if staging is None:
                return []
            total = spans[-1][0] + align(spans[-1][1], COPY_ALIGN)
            staging.handle.map_sync(self._wgpu.MapMode.READ, 0, total)
            try:
                mem = np.frombuffer(staging.handle.read_mapped(0, total), dtype=np.uint8)
            finally:
                staging.handle.unmap()
        except GPUError:
            raise
        except Exception as e:  # noqa: BLE001
            raise _map_error(e, "submit", self) from None
        st.reads += len(spans)
        st.bytes_read += sum(n for _, n in spans)
        return [mem[a : a + n].copy() for a, n in spans]

    def synchronize(self) -> None:
        # wgpu-py 0.32's on_submitted_work_done_sync fails in cffi; mapping a
        # buffer after a submit waits for all earlier work just the same.
        if self._sync_buf is None:
            self._sync_buf = self.create_buffer(4, BufferUsage.STORAGE | BufferUsage.COPY_SRC, "sync")
        self.run([], readback=[Readback(self._sync_buf, 0, 4)])

    def destroy(self) -> None:
        try:
            self._device.destroy()
        except Exception:  # noqa: BLE001
            pass
        if self.lost_reason is None:
            self.lost_reason = "destroyed"
