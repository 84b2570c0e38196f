"""The WebGPU backend: the Backend contract over a :class:`~webinfer.devices.base.Device`.

Weights are uploaded once, quantized (``weights.py`` says in which layout);
the KV cache and the rotary tables live on the device too.  The ops record a
graph instead of computing (``graph.py``); ``to_numpy`` plans it
(``planner.py``), runs it in one submit and reads the result back.  That
makes ``model.forward`` work unchanged (perplexity, tests), and
``decode.PlannedModel`` builds on the same recording to plan a decode step
once and replay it for every token with sampling on the GPU.

The same code runs on wgpu-py in CPython and on ``navigator.gpu`` in the
browser: only the Device differs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...devices.base import Buffer, BufferUsage, Readback
from ...errors import GPUOutOfMemoryError, InvalidArgumentError
from ...formats.gguf import TensorInfo
from ...model.args import ModelArgs
from ..rope import rope_tables
from .graph import Graph, GTensor, Node
from .kernels import kernel_source
from .planner import Plan, Planner
from .weights import (QuantMatrix, WeightPart, check_format, concat_plan, packed_nbytes, repack, row_split,
                      vector_f32)

MAX_TOKENS = 8192          # token ids one forward pass can take (the IDS buffer: 32 KiB)
OUT_RING = 1024            # sampled tokens kept on the GPU before the host must read them
STEP_BYTES = 16            # struct Step in _step.wgsl
DEFAULT_ATTN_SPLITS = 16   # split-K ranges per head in decode attention (the profile may change it)


class DeviceKVCache:
    """Keys and values per layer on the device: [n_kv_heads, capacity, head_dim] float32 each."""

    def __init__(self, device, args: ModelArgs, capacity: int):
        self.n_layers = args.n_layers
        self.capacity = capacity
        per = args.n_kv_heads * capacity * args.head_dim * 4
        if per > device.max_binding_size:
            raise GPUOutOfMemoryError(
                f"a KV cache of {capacity} positions needs {per >> 20} MiB per layer, more than this device "
                f"binds ({device.max_binding_size >> 20} MiB); use a smaller n_ctx")
        self.k = [device.create_buffer(per, label=f"k cache {i}") for i in range(args.n_layers)]
        self.v = [device.create_buffer(per, label=f"v cache {i}") for i in range(args.n_layers)]
        self._per = per

    def nbytes(self) -> int:
        return 2 * self.n_layers * self._per


class DeviceRope:
    """cos and sin tables [capacity, n_rot/2] in one buffer (cos first, sin at ``sin_off``)."""

    def __init__(self, device, args: ModelArgs, capacity: int, freq_factors):
        cos, sin = rope_tables(args.rope, capacity, freq_factors)
        self.n_rot = args.rope.n_dims
        self.style_id = 0 if args.rope.style == "norm" else 1
        self.capacity = capacity
        self.sin_off = cos.size
        self.table = device.buffer_from(np.concatenate([cos.reshape(-1), sin.reshape(-1)]), label="rope tables")


class WebGPUBackend:
    """Backend contract on a WebGPU device (see backends/base.py); ``device`` defaults to the best one here."""

    name = "webgpu"

    def __init__(self, device=None, *, attn_splits: int | None = None, matvec_lanes: int = 32,
                 matvec_wg: int = 256, matmul: str = "tiled", matvec_xshared: bool = False,
                 fuse_norm: bool = True, matvec_two_rows: bool = True, fuse_combine: bool = True,
                 matvec_unroll: int = 1):
        if device is None:
            from ...devices import open_device

            device = open_device()
        self.device = device
        self.attn_splits = attn_splits or DEFAULT_ATTN_SPLITS
        if matvec_lanes not in (1, 2, 4, 8, 16, 32) or matvec_wg % matvec_lanes or matvec_wg > 256:
            raise InvalidArgumentError(f"matvec lanes {matvec_lanes} / workgroup {matvec_wg}: lanes must be a "
                                       f"power of two <= 32 dividing a workgroup of at most 256")
        self.matvec_defines = {"WG": matvec_wg, "LANES": matvec_lanes, **({"UNROLL2": 1} if matvec_unroll == 2 else {})}
        self.matvec_rows = matvec_wg // matvec_lanes
        if matmul not in ("tiled", "rowwise"):
            raise InvalidArgumentError(f"matmul must be 'tiled' or 'rowwise', got {matmul!r}")
        self.matmul_rowwise = matmul == "rowwise"
        self.matvec_xshared = matvec_xshared   # stage x in workgroup memory in every matvec
        self.fuse_norm = fuse_norm             # fold a one-token rmsnorm into the matvecs that read it
        self.matvec_two_rows = matvec_two_rows # two rows per lane group (and RoPE in the Q/K/V epilogue)
        self.fuse_combine = fuse_combine       # merge decode attention's split-K partials in the wo matvec
        usage = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC
        self.step_buffer = device.create_buffer(STEP_BYTES, usage, "step")
        self.ids_buffer = device.create_buffer(MAX_TOKENS * 4, usage, "ids")
        self.out_buffer = device.create_buffer(OUT_RING * 4, usage, "sampled tokens")
        self._dummies: tuple[Buffer, Buffer] | None = None
        self._pipes: dict = {}
        self._stack_failed: set = set()
        self.record_only = False       # set by PlannedModel: to_numpy returns the Graph
        self._reset_recording()
        self.weight_bytes = 0

    # ------------------------------------------------------------------ services for the planner

    def pipeline(self, kernel: str, defines: dict | None = None):
        key = (kernel, tuple(sorted((defines or {}).items())))
        p = self._pipes.get(key)
        if p is None:
            label = kernel + "".join(f"+{k.lower()}" + ("" if v in (1, True) else f"={v}") for k, v in key[1])
            p = self._pipes[key] = self.device.pipeline(label, kernel_source(kernel, defines), None)
        return p

    def dummy_buffers(self) -> tuple[Buffer, Buffer]:
        """Two distinct small buffers for bindings a kernel variant does not use (writable ones may not alias)."""
        if self._dummies is None:
            self._dummies = (self.device.create_buffer(256, label="unused a"),
                             self.device.create_buffer(256, label="unused b"))
        return self._dummies

    def stack_weights(self, mats: list[QuantMatrix]) -> bool:
        """Make ``mats`` (same format and width) rows of one buffer, in order; False if they cannot be."""
        return self.stack_groups([mats])[0]

    def stack_groups(self, groups: list[list[QuantMatrix]]) -> list[bool]:
        """:meth:`stack_weights` for many groups: one GPU copy each, one wait at the end.

        Each group's new buffer holds the matrices' sections back to back
        (``weights.concat_plan``); the old buffers are destroyed right after
        the copy is submitted (WebGPU lets submitted work finish), so at most
        one group's weights exist twice at a time.
        """
        from ...devices.base import Copy

        dev = self.device
        done = []
        copied = False
        for mats in groups:
            parts = [m.parts[0] for m in mats if len(m.parts) == 1]
            if len(parts) == len(mats):
                buf, at = parts[0].buffer, parts[0].buf_row0
                if all(p.buffer is buf and p.buf_row0 == at + sum(q.rows for q in parts[:i])
                       for i, p in enumerate(parts)):
                    done.append(True)                         # stacked already
                    continue
            key = tuple(id(m) for m in mats)
            copies = concat_plan(mats) if key not in self._stack_failed else None
            total_rows = sum(m.rows for m in mats)
            nbytes = packed_nbytes(mats[0].fmt, total_rows, mats[0].cols)
            if copies is None or nbytes > dev.max_binding_size:
                self._stack_failed.add(key)
                done.append(False)
                continue
            dst = dev.create_buffer(nbytes, label="+".join(m.name for m in mats))
            steps = [Copy(mats[i].parts[0].buffer, src, dst, at, n) for i, src, at, n in copies]
            dev.run([dev.prepare(steps, "stack weights")])
            copied = True
            row = 0
            for m in mats:
                dev.destroy_buffer(m.parts[0].buffer)
                m.parts = [WeightPart(dst, m.rows, 0, total_rows, row)]
                row += m.rows
            done.append(True)
        if copied:
            dev.synchronize()
        return done

    # ------------------------------------------------------------------ weights

    def load_matrix(self, info: TensorInfo, raw: np.ndarray) -> QuantMatrix:
        if len(info.shape) != 2:
            raise InvalidArgumentError(f"{info.name}: expected a matrix, got shape {info.shape}")
        rows, cols = info.shape
        fmt = info.type_name
        check_format(fmt, cols, info.name)
        raw = np.ascontiguousarray(raw).reshape(rows, -1)
        m = QuantMatrix(info.name, fmt, rows, cols)
        for a, b in row_split(fmt, rows, cols, self.device.max_binding_size):
            words = repack(raw[a:b], fmt, b - a, cols)
            buf = self.device.buffer_from(words, label=f"{info.name}[{a}:{b}]")
            self.weight_bytes += buf.size
            m.parts.append(WeightPart(buf, b - a, a, b - a, 0))
        return m

    def load_vector(self, info: TensorInfo, raw: np.ndarray) -> Buffer:
        buf = self.device.buffer_from(vector_f32(raw, info), label=info.name)
        self.weight_bytes += buf.size
        return buf

    def load_embedding(self, info: TensorInfo, raw: np.ndarray, *, also_output: bool) -> QuantMatrix:
        return self.load_matrix(info, raw)

    # ------------------------------------------------------------------ state

    def new_kv_cache(self, args: ModelArgs, n_ctx: int) -> DeviceKVCache:
        return DeviceKVCache(self.device, args, n_ctx)

    def rope_tables(self, args: ModelArgs, n_ctx: int, freq_factors=None) -> DeviceRope:
        return DeviceRope(self.device, args, n_ctx, freq_factors)

    # ------------------------------------------------------------------ ops (recorded)

    def _reset_recording(self) -> None:
        self._nodes: list[Node] = []
        self._pos0 = 0
        self._ids: list[int] = []

    def _node(self, op: str, inputs: list, rows: int, cols: int, **attrs) -> GTensor:
        out = GTensor(rows, cols)
        n = Node(op, inputs, attrs, out, len(self._nodes))
        out.node = n
        self._nodes.append(n)
        return out

    def embed(self, table: QuantMatrix, ids: Sequence[int]) -> GTensor:
        self._reset_recording()       # a forward pass starts with its embedding
        ids = [int(i) for i in ids]
        if len(ids) > MAX_TOKENS:
            raise InvalidArgumentError(f"at most {MAX_TOKENS} tokens per forward pass on the WebGPU backend")
        self._ids = ids
        return self._node("embed", [table], len(ids), table.cols)

    def rmsnorm(self, x: GTensor, w: Buffer, eps: float) -> GTensor:
        return self._node("rmsnorm", [x, w], x.rows, x.cols, eps=eps)

    def linear(self, x: GTensor, w: QuantMatrix, b: Buffer | None = None) -> GTensor:
        if x.cols != w.cols:
            raise InvalidArgumentError(f"{w.name}: input width {x.cols} != matrix width {w.cols}")
        return self._node("linear", [x, w, b], x.rows, w.rows)

    def rope(self, x: GTensor, tables: DeviceRope, pos0: int, n_heads: int, style: str) -> GTensor:
        self._pos0 = pos0
        return self._node("rope", [x, tables], x.rows, x.cols, n_heads=n_heads)

    def attention(self, q, k, v, cache: DeviceKVCache, layer: int, pos0: int, args: ModelArgs) -> GTensor:
        self._pos0 = pos0
        return self._node("attention", [q, k, v, cache, layer], q.rows, args.n_heads * args.head_dim, args=args)

    def swiglu(self, gate: GTensor, up: GTensor) -> GTensor:
        return self._node("swiglu", [gate, up], gate.rows, gate.cols)

    def add(self, a: GTensor, b: GTensor) -> GTensor:
        return self._node("add", [a, b], a.rows, a.cols)

    def last_rows(self, x: GTensor, n: int) -> GTensor:
        return self._node("last_rows", [x], n, x.cols, n=n)

    def to_numpy(self, x: GTensor):
        """End the recording: plan the graph, run it, return x as numpy (or the Graph in record mode)."""
        graph = Graph(self._nodes, x, len(self._ids), self._pos0, self._ids)
        self._reset_recording()
        if self.record_only:
            return graph
        plan = self.plan(graph, "forward")
        try:
            return self.execute(plan, graph.pos0, graph.ids)
        finally:
            self.free_plan(plan)

    # ------------------------------------------------------------------ plans

    def plan(self, graph: Graph, label: str = "") -> Plan:
        return Planner(self, graph, label).run()

    def free_plan(self, plan: Plan) -> None:
        for b in plan.buffers:
            self.device.destroy_buffer(b)

    def write_step(self, pos0: int, n_tokens: int, ids: Sequence[int] | None = None, *, reset: bool = False) -> None:
        """Set the Step (pos0, n_tokens[, n_out = done = 0]) and the input ids before a run."""
        words = np.array([pos0, n_tokens, 0, 0], np.uint32)
        self.device.write_buffer(self.step_buffer, words if reset else words[:2])
        if ids is not None:
            self.device.write_buffer(self.ids_buffer, np.asarray(ids, np.uint32))

    def execute(self, plan: Plan, pos0: int, ids: Sequence[int]) -> np.ndarray:
        """Run ``plan`` for ``ids`` at ``pos0`` and read its output: [rows, cols] float32."""
        self.write_step(pos0, len(ids), ids)
        buf, off, n = plan.logits_region()
        (raw,) = self.device.run([plan.program], readback=[Readback(buf, off, n)])
        return raw.view(np.float32).reshape(plan.output.rows, plan.output.cols)
