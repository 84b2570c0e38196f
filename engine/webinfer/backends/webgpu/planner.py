"""From a recorded graph to a plan: kernels chosen, ops fused, buffers assigned.

Done once per graph shape (a decode step, a prefill of T tokens); the result
is a :class:`Plan` whose dispatches, bind groups and parameter words never
change, so running it is one ``device.run`` call.

Fusions (each only where the pattern is exact, otherwise the plain kernels):

- Q, K, V projections of one token reading the same input: one matvec over
  the three matrices stacked in one buffer (stacked once, on first use);
- ``swiglu(linear(h, Wg), linear(h, Wu))`` of one token: one matvec with the
  GATE_UP epilogue (gate and up stacked the same way);
- ``add(x, linear(a, W))``: the RESIDUAL epilogue of matvec / matmul;
- ``attention(rope(q), rope(k), v)``: rope_store (rotate Q and K, write K
  and V into the cache) + split-K attention + combine.

That is 9 dispatches per layer in decode (norm, qkv, rope+store, attention,
combine, wo+residual, norm, gate/up, down+residual).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...devices.base import BINDING_OFFSET_ALIGN, Buffer, BufferUsage, Dispatch, Program
from .graph import Graph, GTensor, Node, Storage
from .kernels import kernel_name
from .weights import QuantMatrix

MAX_WORKGROUPS = 65535        # maxComputeWorkgroupsPerDimension guaranteed by every adapter
MATMUL_TILE = 64              # rows and tokens per matmul workgroup (_matmul.wgsl TILE)
ROWWISE_TOKENS = 8            # tokens per invocation in matmul's ROWWISE variant (_matmul.wgsl TB)


def fold(n: int) -> tuple[int, int, int]:
    """n workgroups as a grid that respects the per-dimension limit (kernels unfold x + y * nx)."""
    n = max(1, int(n))
    if n <= MAX_WORKGROUPS:
        return (n, 1, 1)
    return (MAX_WORKGROUPS, math.ceil(n / MAX_WORKGROUPS), 1)


def pack(*vals) -> np.ndarray:
    """Uniform words: ints as u32, floats as f32, tuples flattened; padded to 16 bytes."""
    flat: list = []
    for v in vals:
        if isinstance(v, (tuple, list)):
            flat.extend(v)
        else:
            flat.append(v)
    words = np.zeros(-(-len(flat) // 4) * 4, np.uint32)
    for i, v in enumerate(flat):
        if isinstance(v, float):
            words[i] = np.float32(v).view(np.uint32)
        else:
            words[i] = int(v)
    return words


@dataclass
class Call:
    """One dispatch before buffers exist: bindings are GTensors (activations) or Buffers."""

    kernel: str
    defines: dict
    bindings: list
    params: np.ndarray | None
    counts: tuple[int, int, int]
    writes: list[GTensor] = field(default_factory=list)
    label: str = ""
    binding_ids: list[int] | None = None     # binding numbers when they are not 0, 1, 2, ...
    extra_params: np.ndarray | None = None   # a second uniform (the second None in bindings)


@dataclass(eq=False)
class Plan:
    """A graph's dispatches, ready to run; owns its activation buffers and parameters."""

    program: Program
    n_tokens: int
    output: GTensor
    buffers: list[Buffer]
    label: str = ""
    samplers: dict = field(default_factory=dict)    # mode -> Program (sampling from this plan's logits)

    @property
    def n_dispatches(self) -> int:
        return self.program.n_dispatches

    def logits_region(self) -> tuple[Buffer, int, int]:
        """(buffer, byte offset, bytes) of the output rows; rows are contiguous (stride == cols)."""
        o = self.output
        assert o.rows == 1 or o.stride == o.cols
        return o.storage.buffer, o.offset * 4, o.rows * o.cols * 4


class Planner:
    """Builds one Plan; ``backend`` provides the device, pipelines, Step/IDS buffers and weight stacking."""

    def __init__(self, backend, graph: Graph, label: str = ""):
        self.be = backend
        self.g = graph
        self.label = label
        self.calls: list[Call] = []
        self.users = graph.consumers()
        self.absorbed: set[int] = set()      # node indices fused into a consumer

    # ------------------------------------------------------------------ helpers

    def sole_user(self, t: GTensor, node: Node) -> bool:
        return [u is node for u in self.users.get(id(t), [])] == [True]

    def new(self, rows: int, cols: int, label: str) -> GTensor:
        return GTensor(rows, cols, storage=Storage(rows * cols * 4, label=label))

    def emit(self, kernel: str, bindings: list, params, counts, writes, defines=None, label="", binding_ids=None):
        self.calls.append(Call(kernel, dict(defines or {}), bindings, params, counts, list(writes), label,
                               binding_ids))

    def _mv_input(self, x: GTensor, gate_up: bool = False):
        """How a one-token matvec reads x: (tensor to bind, defines, norm weight or None, eps).

        x staged in workgroup memory (XSHARED) when the profile asks for it or
        when x is an rmsnorm output fused into the matvec (NORM), if K floats
        fit in the device's workgroup memory next to the reduction arrays.
        """
        n = x.node
        fused_norm = n is not None and n.op == "rmsnorm" and n.index in self.absorbed
        if fused_norm:
            return n.inputs[0], {"XSHARED": 1, "XVEC": x.cols // 4, "NORM": 1}, n.inputs[1], float(n.attrs["eps"])
        if n is not None and n.op == "attention" and n.attrs.get("combine_in_matvec"):
            return n.attrs["part"], {"XSHARED": 1, "XVEC": x.cols // 4, "COMBINE": 1}, None, 0.0
        if self.be.matvec_xshared and self._x_fits(x.cols, gate_up):
            return x, {"XSHARED": 1, "XVEC": x.cols // 4}, None, 0.0
        return x, {}, None, 0.0

    def _x_fits(self, cols: int, gate_up: bool = True) -> bool:
        wg = self.be.matvec_defines["WG"]
        need = cols * 4 + wg * 4 * (2 if gate_up else 1)
        return need <= int(self.be.device.limits.get("maxComputeWorkgroupStorageSize", 16384))

    def _emit_matvec(self, fmt: str, wbuf, x: GTensor, out_tensors: list, params_fn, seg_rows: list[int],
                     defines: dict, label: str, residual: GTensor | None = None, gate_up: bool = False,
                     rope: tuple | None = None) -> None:
        """A matvec dispatch; ``params_fn(x_off, eps)`` builds its parameter words.

        ``seg_rows``: rows of each segment (TWO_ROWS needs them all even);
        ``rope``: (rope tables, cache, layer) for the Q/K/V epilogue (ROPE).
        """
        xin, xdef, g, eps = self._mv_input(x, gate_up)
        if "COMBINE" in xdef:       # x comes from the attention partials (bindings 11, 12)
            a = x.node.attrs
            binds = [wbuf, out_tensors[0], None, xin, None]
            ids = [0, 2, 3, 11, 12]
            combine_params = pack(a["args"].n_heads, a["args"].head_dim, a["splits"], 0)
        else:
            binds = [wbuf, xin, out_tensors[0], None]
            ids = [0, 1, 2, 3]
            combine_params = None
        if residual is not None:
            binds.append(residual)
            ids.append(4)
        if g is not None:
            binds.append(g)
            ids.append(5)
        defines = {**defines, **xdef, **self.be.matvec_defines}
        two = self.be.matvec_two_rows and all(r % 2 == 0 for r in seg_rows)
        if two:
            defines["TWO_ROWS"] = 1
        if rope is not None:
            assert two
            tables, cache, layer = rope
            hd = self._head_dim
            binds += [self.be.step_buffer, tables.table, cache.k[layer], cache.v[layer], None]
            ids += [6, 7, 8, 9, 10]
            defines["ROPE"] = 1
            extra = pack(hd, tables.n_rot, cache.capacity, tables.sin_off)
        else:
            extra = None
        per_wg = self.be.matvec_rows * (2 if two else 1)
        self.emit(kernel_name("matvec", fmt), binds, params_fn(0 if combine_params is not None else xin.offset // 4,
                                                               eps),
                  fold(math.ceil(sum(seg_rows) / per_wg)), out_tensors, defines, label, ids)
        if extra is not None or combine_params is not None:
            self.calls[-1].extra_params = extra if extra is not None else combine_params

    # ------------------------------------------------------------------ fusion analysis

    def _producer(self, t: Any, op: str) -> Node | None:
        return t.node if isinstance(t, GTensor) and t.node is not None and t.node.op == op else None

    def analyse(self) -> None:
        by_index = self.g.nodes
        for n in by_index:
            if n.op == "swiglu" and n.out.rows == 1:
                g, u = (self._producer(x, "linear") for x in n.inputs)
                if (g and u and g.inputs[0] is u.inputs[0] and g.inputs[2] is None and u.inputs[2] is None
                        and self.sole_user(g.out, n) and self.sole_user(u.out, n)
                        and self.be.stack_weights([g.inputs[1], u.inputs[1]])):
                    n.attrs["fused"] = (g, u)
                    self.absorbed |= {g.index, u.index}
            elif n.op == "add":
                lin = self._producer(n.inputs[1], "linear")
                if lin and lin.inputs[2] is None and self.sole_user(lin.out, n) and lin.index not in self.absorbed:
                    n.attrs["fused"] = lin
                    self.absorbed.add(lin.index)
            elif n.op == "attention":
                q, k = (self._producer(x, "rope") for x in n.inputs[:2])
                if q and k and self.sole_user(q.out, n) and self.sole_user(k.out, n):
                    n.attrs["fused"] = (q, k)
                    self.absorbed |= {q.index, k.index}
        # rmsnorm of one token read only by bias-free one-token linears: folded into their matvecs (NORM)
        for n in by_index:
            if n.op == "rmsnorm" and n.out.rows == 1 and self.be.fuse_norm and self._x_fits(n.out.cols):
                users = self.users.get(id(n.out), [])
                if users and all(u.op == "linear" and u.inputs[2] is None for u in users):
                    self.absorbed.add(n.index)
        # the split-K combine of one-token attention folded into the matvec that reads its output (COMBINE)
        for n in by_index:
            if n.op == "attention" and n.out.rows == 1 and self.be.fuse_combine and self._x_fits(n.out.cols):
                users = self.users.get(id(n.out), [])
                if len(users) == 1 and users[0].op == "linear" and users[0].inputs[2] is None:
                    n.attrs["combine_in_matvec"] = True
        # Q/K/V: linears of one token reading the same tensor, not fused otherwise
        groups: dict[int, list[Node]] = {}
        for n in by_index:
            if n.op == "linear" and n.index not in self.absorbed and n.out.rows == 1 and n.inputs[2] is None:
                groups.setdefault(id(n.inputs[0]), []).append(n)
        for nodes in groups.values():
            if 2 <= len(nodes) <= 3 and self.be.stack_weights([n.inputs[1] for n in nodes]):
                nodes[0].attrs["multi"] = nodes
                for n in nodes[1:]:
                    n.attrs["multi_member"] = True
        # RoPE + KV store in the Q/K/V matvec's epilogue: one token, "norm" rotation, the three
        # projections stacked in the order q, k, v, and read only by their rope nodes / the attention
        for n in by_index:
            fused = n.attrs.get("fused") if n.op == "attention" else None
            if fused is None or n.out.rows != 1 or not self.be.matvec_two_rows:
                continue
            (qn, kn), v = fused, n.inputs[2]
            lin = [x.node for x in (qn.inputs[0], kn.inputs[0], v)]
            if any(x is None or x.op != "linear" for x in lin) or lin[0].attrs.get("multi") != lin:
                continue
            if qn.inputs[1].style_id != 0 or not self.sole_user(v, n):
                continue
            if any(m.inputs[1].rows % 2 for m in lin) or self._head_dim % 2:
                continue
            lin[0].attrs["rope_into"] = n
            n.attrs["rope_done"] = True

    # ------------------------------------------------------------------ ops

    @property
    def _head_dim(self) -> int:
        for n in self.g.nodes:
            if n.op == "attention":
                return n.attrs["args"].head_dim
        return 0

    def run(self) -> Plan:
        self.analyse()
        for n in self.g.nodes:
            if n.index in self.absorbed or n.attrs.get("multi_member"):
                continue
            getattr(self, "op_" + n.op)(n)
        return self.finish()

    def op_embed(self, n: Node) -> None:
        table: QuantMatrix = n.inputs[0]
        t = n.out.rows
        out = n.out
        out.storage = Storage(t * table.cols * 4, label="embed")
        for part in table.parts:
            params = pack(table.wmat(part), t, part.row0, part.row0 + part.rows, 0)
            self.emit(kernel_name("embed", table.fmt), [part.buffer, self.be.ids_buffer, out, None], params,
                      fold(math.ceil(t * table.cols / 4 / 64)), [out], label="embed")

    def op_rmsnorm(self, n: Node) -> None:
        x, w = n.inputs
        out = n.out
        out.storage = Storage(out.rows * out.cols * 4, label="norm")
        params = pack(x.cols, x.offset, x.stride, 0, out.cols, float(n.attrs["eps"]), 0, 0)
        self.emit("rmsnorm_f32", [x, w, out, None], params, (x.rows, 1, 1), [out], label="rmsnorm")

    def _linear(self, x: GTensor, w: QuantMatrix, out: GTensor, residual: GTensor | None, label: str) -> None:
        t = x.rows
        defines = {"RESIDUAL": 1} if residual is not None else {}
        extra = [residual] if residual is not None else []
        for part in w.parts:
            if t == 1:
                rows = part.rows
                r_off = (residual.offset + part.row0) if residual is not None else 0
                y_off = out.offset + part.row0

                def params(x_off, eps, wm=w.wmat(part), rows=rows, r_off=r_off, y_off=y_off):
                    return pack(wm, (0, 0, 0, 0), (0, 0, 0, 0), (y_off, 0, 0, 0), (rows, rows, rows, 0), x_off,
                                r_off, rows, eps)

                self._emit_matvec(w.fmt, part.buffer, x, [out], params, [rows], defines, label, residual)
            else:
                r_off = (residual.offset + part.row0) if residual is not None else 0
                if residual is not None:
                    assert residual.stride == out.stride
                params = pack(w.wmat(part), part.rows, t, x.stride // 4, out.stride, out.offset + part.row0,
                              x.offset // 4, r_off, 0)
                if self.be.matmul_rowwise:
                    counts = fold(math.ceil(part.rows * math.ceil(t / ROWWISE_TOKENS) / 64))
                    defines = {**defines, "ROWWISE": 1}
                else:
                    counts = (math.ceil(part.rows / MATMUL_TILE), math.ceil(t / MATMUL_TILE), 1)
                self.emit(kernel_name("matmul", w.fmt), [part.buffer, x, out, None] + extra, params, counts, [out],
                          defines, label)

    def op_linear(self, n: Node) -> None:
        x, w, b = n.inputs
        multi = n.attrs.get("multi")
        if multi:
            return self._multi_linear(multi)
        out = n.out
        if b is None:
            out.storage = Storage(out.rows * out.cols * 4, label="linear")
            self._linear(x, w, out, None, w.name)
            return
        y = self.new(out.rows, out.cols, "linear")
        self._linear(x, w, y, None, w.name)
        out.storage = Storage(out.rows * out.cols * 4, label="linear+bias")
        self._add(y, b, out)

    def _multi_linear(self, nodes: list[Node]) -> None:
        """Q, K, V of one token in one dispatch: three segments of one stacked buffer."""
        x = nodes[0].inputs[0]
        mats: list[QuantMatrix] = [m.inputs[1] for m in nodes]
        total = sum(m.rows for m in mats)
        storage = Storage(total * 4, label="qkv")
        segs, y_off, row_end = [], [], []
        at = 0
        for m, node in zip(mats, nodes):
            node.out.storage, node.out.offset, node.out.stride = storage, at, total
            segs.append(m.wmat(m.parts[0]))
            y_off.append(at)
            at += m.rows
            row_end.append(at)
        while len(segs) < 3:
            segs.append((0, 0, 0, 0))
            y_off.append(0)
            row_end.append(total)
        outs = [node.out for node in nodes]

        def params(x_off, eps):
            return pack(*segs, (*y_off, 0), (*row_end, 0), x_off, 0, total, eps)

        att = nodes[0].attrs.get("rope_into")
        rope = None
        if att is not None:   # RoPE and the KV-cache write in the epilogue (see analyse)
            rope = (att.attrs["fused"][0].inputs[1], att.inputs[3], att.inputs[4])
        self._emit_matvec(mats[0].fmt, mats[0].parts[0].buffer, x, outs, params, [m.rows for m in mats], {},
                          "+".join(m.name for m in mats), rope=rope)

    def _add(self, a: GTensor, b, out: GTensor) -> None:
        """out = a + b; b is a GTensor of the same shape, or a bias vector (a Buffer) added to every row."""
        b_off, b_stride = (b.offset, b.stride) if isinstance(b, GTensor) else (0, 0)
        params = pack(out.cols, out.rows, a.offset, a.stride, b_off, b_stride, out.offset, out.stride)
        self.emit("add_f32", [a, b, out, None], params, fold(math.ceil(out.rows * out.cols / 256)), [out],
                  label="add")

    def op_add(self, n: Node) -> None:
        a, b = n.inputs
        out = n.out
        out.storage = Storage(out.rows * out.cols * 4, label="residual")
        lin = n.attrs.get("fused")
        if lin is not None:
            self._linear(lin.inputs[0], lin.inputs[1], out, a, lin.inputs[1].name + "+residual")
        else:
            self._add(a, b, out)

    def op_swiglu(self, n: Node) -> None:
        out = n.out
        out.storage = Storage(out.rows * out.cols * 4, label="ffn")
        fused = n.attrs.get("fused")
        if fused is not None:
            g, u = fused
            x = g.inputs[0]
            wg, wu = g.inputs[1], u.inputs[1]
            rows = wg.rows
            def params(x_off, eps):
                return pack(wg.wmat(wg.parts[0]), wu.wmat(wu.parts[0]), (0, 0, 0, 0), (out.offset, 0, 0, 0),
                            (rows, rows, rows, 0), x_off, 0, rows, eps)

            self._emit_matvec(wg.fmt, wg.parts[0].buffer, x, [out], params, [rows], {"GATE_UP": 1},
                              f"{wg.name}+{wu.name}", gate_up=True)
            return
        g, u = n.inputs
        params = pack(out.cols, out.rows, g.offset, g.stride, u.offset, u.stride, out.offset, out.stride)
        self.emit("swiglu_f32", [g, u, out, None], params, fold(math.ceil(out.rows * out.cols / 256)), [out],
                  label="swiglu")

    def op_rope(self, n: Node) -> None:
        x = n.inputs[0]
        rope = n.inputs[1]
        out = n.out
        out.storage = Storage(out.rows * out.cols * 4, label="rope")
        heads, hd = n.attrs["n_heads"], x.cols // n.attrs["n_heads"]
        d0, d1 = self.be.dummy_buffers()
        params = pack(x.rows, heads, 0, 0, hd, rope.n_rot, rope.style_id, 0, x.offset, x.stride, 0, 0, 0, 0,
                      rope.capacity, rope.sin_off)
        self.emit("rope_store_f32", [x, x, x, out, d0, d1, rope.table, self.be.step_buffer, None], params,
                  fold(math.ceil(x.rows * heads * hd / 64)), [out], label="rope")

    def op_attention(self, n: Node) -> None:
        q, k, v, cache, layer = n.inputs
        a = n.attrs["args"]
        t = q.rows
        hd, h, hkv = a.head_dim, a.n_heads, a.n_kv_heads
        fused = n.attrs.get("fused")
        kc, vc = cache.k[layer], cache.v[layer]
        if n.attrs.get("rope_done"):
            q = fused[0].inputs[0]           # rotated in place by the Q/K/V matvec; K, V already cached
        elif fused is not None:
            qn, kn = fused
            rope = qn.inputs[1]
            qsrc, ksrc = qn.inputs[0], kn.inputs[0]
            qrot = self.new(t, h * hd, "qrot")
            params = pack(t, h, hkv, hkv, hd, rope.n_rot, rope.style_id, 1, qsrc.offset, qsrc.stride,
                          ksrc.offset, ksrc.stride, v.offset, v.stride, cache.capacity, rope.sin_off)
            self.emit("rope_store_f32", [qsrc, ksrc, v, qrot, kc, vc, rope.table, self.be.step_buffer, None],
                      params, fold(math.ceil(t * (h + 2 * hkv) * hd / 64)), [qrot], label="rope+kv")
            q = qrot
        else:   # q and k arrive rotated (or need no rotation): store k and v as they are
            d0, d1 = self.be.dummy_buffers()
            params = pack(t, 0, hkv, hkv, hd, hd, 0, 0, 0, 0, k.offset, k.stride, v.offset, v.stride,
                          cache.capacity, 0)
            self.emit("rope_store_f32", [k, k, v, d0, kc, vc, d1, self.be.step_buffer, None], params,
                      fold(math.ceil(t * 2 * hkv * hd / 64)), [], label="kv store")
        splits = self.be.attn_splits if t == 1 else 1
        part = self.new(t * h * splits, hd + 2, "attn partials")
        params = pack(h, a.n_rep, hd, cache.capacity, float(1.0 / np.sqrt(hd)), q.stride, 0, 0)
        # q is read at offset 0: the rotated copy (fused) or a whole tensor (unfused)
        assert q.offset == 0
        self.emit("attention_f32", [q, kc, vc, part, self.be.step_buffer, None], params, (h, t, splits), [part],
                  label="attention")
        n.attrs["part"], n.attrs["splits"] = part, splits
        if n.attrs.get("combine_in_matvec"):
            return                           # the next matvec merges the partials itself
        out = n.out
        out.storage = Storage(out.rows * out.cols * 4, label="attn")
        params = pack(h, hd, splits, out.stride, out.offset, 0, 0, 0)
        self.emit("attention_combine_f32", [part, out, None], params, (h, t, 1), [out], label="combine")

    def op_last_rows(self, n: Node) -> None:
        x = n.inputs[0]
        k = n.attrs["n"]
        out = n.out
        out.storage, out.offset, out.stride = x.storage, x.offset + (x.rows - k) * x.stride, x.stride
        out.node = None

    # ------------------------------------------------------------------ buffers and bind groups

    def finish(self) -> Plan:
        be, dev = self.be, self.be.device
        # last call that touches each storage
        last: dict[int, int] = {}
        for i, c in enumerate(self.calls):
            for b in c.bindings:
                if isinstance(b, GTensor):
                    last[id(b.storage)] = i
        out_storage = self.g.output.storage
        last[id(out_storage)] = len(self.calls)   # the output lives to the end
        # parameters: one uniform buffer, a 256-byte slot per call
        n_param = sum((c.params is not None) + (c.extra_params is not None) for c in self.calls)
        uni = dev.create_buffer(max(1, n_param) * BINDING_OFFSET_ALIGN, BufferUsage.UNIFORM | BufferUsage.COPY_DST,
                                f"{self.label} params")
        blob = np.zeros(max(1, n_param) * BINDING_OFFSET_ALIGN // 4, np.uint32)
        owned: list[Buffer] = [uni]
        free: dict[int, list[Buffer]] = {}
        live: dict[int, Storage] = {}
        steps = []
        slot = 0
        for i, c in enumerate(self.calls):
            for t in c.writes:
                s = t.storage
                if s.buffer is None:
                    size = -(-s.nbytes // 256) * 256
                    pool = free.get(size)
                    if pool:
                        s.buffer = pool.pop()
                    else:
                        s.buffer = dev.create_buffer(size, label=f"{self.label} {s.label}")
                        owned.append(s.buffer)
                    live[id(s)] = s
            binds = []
            uniforms = [u for u in (c.params, c.extra_params) if u is not None]
            for b in c.bindings:
                if b is None:
                    words = uniforms.pop(0)
                    w0 = slot * BINDING_OFFSET_ALIGN // 4
                    blob[w0 : w0 + words.size] = words
                    binds.append((uni, slot * BINDING_OFFSET_ALIGN, words.size * 4))
                    slot += 1
                elif isinstance(b, GTensor):
                    if b.storage.buffer is None:
                        raise AssertionError(f"{c.label}: input {b.storage.label} was never written")
                    binds.append(b.storage.buffer)
                else:
                    binds.append(b)
            pipe = be.pipeline(c.kernel, c.defines)
            bg = dev.bind_group(pipe, dict(zip(c.binding_ids, binds)) if c.binding_ids else binds, label=c.label)
            steps.append(Dispatch(pipe, bg, c.counts, c.label))
            # storages whose last use was this call go back to the pool
            for sid, s in list(live.items()):
                if last.get(sid, -1) <= i:
                    free.setdefault(s.buffer.size, []).append(s.buffer)
                    del live[sid]
        dev.write_buffer(uni, blob)
        program = dev.prepare(steps, label=self.label)
        return Plan(program, self.g.n_tokens, self.g.output, owned, self.label)
