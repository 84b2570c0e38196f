"""The wasm backend: quantized weights and WASM SIMD kernels (docs/wasm.md).

Where it runs: inside Pyodide (browser worker or Node).  The kernels
(wasm_fallback/, shipped as ``webinfer/wasm/kernels.wasm``) are loaded by
Pyodide's dynamic linker into Pyodide's linear memory, so they read numpy
arrays in place; with worker threads (wasm_threads.py) everything lives in
a shared memory instead (wasm_memory.SharedHeap).  In CPython, creating
this backend raises :class:`WasmUnavailableError`; the numpy backend is
the portable path.

How it runs: ops are not executed when the model calls them.  Each call
records a command into a :class:`~.wasm_program.Program` and returns a
handle (:class:`WasmTensor`) to memory that will hold the result;
``to_numpy`` (once per forward pass, for the logits) runs the whole program
with one call into WASM.  A decode step is therefore one Python->WASM
crossing, not one per op (wasm_plan.py also skips re-recording it).

Weights: matrices in a format with a kernel (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K)
stay exactly as the GGUF file stores them, so the model takes about its file
size in memory (the numpy backend's float32 copy is 5-8x that).  Other
matrices are dequantized to float32 once and use the float32 kernel.
Activations are quantized to int16 per block of 32 before a quantized
matmul (act_quant.c says why int16: greedy output must match numpy's).

Memory rules (zero-copy by address; ``debug=True`` checks them on every command):
- Alignment: activation buffers are 64-byte aligned (arena chunks);
  weights are the GGUF bytes where they were read, norms, rope tables and
  the KV cache numpy arrays or heap buffers.  Kernels never require more
  than 1-byte alignment (WASM v128 loads and stores are unaligned-safe);
  alignment is for speed.
- Bounds: every pointer in a command must lie, with all the bytes the
  command touches, inside a live allocation: an arena block, a weight, a
  rope table or a KV-cache layer.  The debug mode checks each command
  against the registered regions before running the program.
- Lifetime: a handle's arena block is returned when the handle dies, but
  only becomes reusable after the next flush (the program may still read or
  write it).  Blocks handed out before a flush are therefore never touched
  by a pending command, so ``embed`` may write into a fresh block at once.
  KV-cache growth flushes first; a dropped cache's buffers are freed after
  the next flush.  Weights live as long as the model.  Both memories only
  grow, so addresses stay valid.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Sequence

import numpy as np

from .. import _js
from ..errors import InvalidArgumentError, WasmKernelError, WasmUnavailableError
from ..formats.gguf import TensorInfo
from ..formats.quants import dequantize, dequantize_rows, row_nbytes
from ..model.args import ModelArgs
from .rope import rope_tables
from .wasm_memory import Arena, LocalHeap, address
from .wasm_program import NO_BARRIER, OPS, POS_WORD, QBLOCK, TOKEN_SPLIT, Program, f32_bits

# ggml type name -> the type id matmul_q.c dispatches on (ggml's own ids)
QUANT_KERNELS = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14}

FLUSH_BYTES = 8 << 20        # run the pending program once it has allocated this much (bounds prefill memory)
KV_MIN_POSITIONS = 64        # the KV cache grows by doubling from this many positions

_kernels = None              # the loaded module's exports, one per Pyodide instance


def load_kernels():
    """The kernels' exports (loaded once); raises WasmUnavailableError outside Pyodide."""
    global _kernels
    if _kernels is None:
        if not _js.IN_PYODIDE:
            raise WasmUnavailableError("the wasm backend runs only inside Pyodide (a browser or Node); "
                                       "use backend='numpy' in CPython")
        data = resources.files("webinfer").joinpath("wasm/kernels.wasm").read_bytes()
        try:
            _kernels = _js.load_wasm_side_module(data, "webinfer_kernels.so")
        except Exception as e:  # noqa: BLE001 - a JS CompileError: no SIMD, or an incompatible Pyodide
            raise WasmUnavailableError(f"could not load the WASM SIMD kernels: {e}") from None
    return _kernels


class WasmTensor:
    """A float32 activation [shape] at ``addr``; owns its arena block unless it is a view of ``base``."""

    __slots__ = ("addr", "shape", "_n", "_arena", "base", "quant")

    def __init__(self, addr: int, shape: tuple, n: int = 0, arena: Arena | None = None, base=None):
        self.addr = addr
        self.shape = shape
        self._n = n              # block size when this handle owns the block, else 0
        self._arena = arena
        self.base = base         # the owning handle of a view (kept alive by the view)
        self.quant = None        # (qx, dx, sx, isx) addresses of this tensor quantized, while valid

    def __del__(self):
        if self._n:
            self._arena.release(self.addr, self._n)

    @property
    def root(self) -> "WasmTensor":
        return self.base if self.base is not None else self

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        return f"WasmTensor(shape={self.shape}, addr=0x{self.addr:x})"


@dataclass
class QuantMatrix:
    """A matrix kept in its GGUF blocks at ``addr``: [rows, row_bytes] bytes."""

    info: TensorInfo
    type_id: int
    addr: int
    rows: int
    cols: int
    row_bytes: int


@dataclass
class FloatMatrix:
    """A matrix dequantized to float32 [rows, cols] at ``addr`` (no quantized kernel for its type)."""

    addr: int
    rows: int
    cols: int


@dataclass
class FloatVector:
    addr: int
    n: int


@dataclass
class RopeTables:
    cos_addr: int        # [n_ctx, half] float32
    sin_addr: int
    half: int


@dataclass
class Recording:
    """What one recorded forward pass did (see wasm_plan.py): its programs, and what a replay must change."""

    programs: list = field(default_factory=list)   # the words of each flush, in order
    tensors: list = field(default_factory=list)    # every activation it allocated (kept alive by the plan)
    pos_words: list = field(default_factory=list)  # word indices holding the position
    inputs: list = field(default_factory=list)     # (tensor, table) of each embed
    outputs: list = field(default_factory=list)    # tensors read back


class WasmKVCache:
    """Keys and values per layer: [n_kv_heads, allocated, head_dim] float32, grown by doubling.

    Same layout as the numpy backend's cache; growth copies the old positions
    (after flushing, so no pending command still writes the old buffers).
    """

    def __init__(self, args: ModelArgs, capacity: int, backend: "WasmBackend"):
        self.n_layers = args.n_layers
        self.capacity = capacity
        self._be = backend
        self._hkv, self._hd = args.n_kv_heads, args.head_dim
        self._alloc = [0] * args.n_layers        # positions allocated per layer
        self.k_addr = [0] * args.n_layers
        self.v_addr = [0] * args.n_layers
        self.version = 0          # bumped on every growth (recorded steps hold the old addresses)

    def reserve(self, layer: int, n: int) -> None:
        have = self._alloc[layer]
        if n <= have:
            return
        be = self._be
        be.flush()
        self.version += 1
        new = min(self.capacity, max(n, 2 * have, KV_MIN_POSITIONS))
        row = self._hd * 4
        for addrs in (self.k_addr, self.v_addr):
            old = addrs[layer]
            addr = be.heap.alloc(self._hkv * new * row)
            for g in range(self._hkv if have else 0):   # head g's positions move from g * have to g * new
                be.heap.copy(addr + g * new * row, old + g * have * row, have * row)
            if old:
                be.heap.free(old)
            addrs[layer] = addr
            be._register(addr, self._hkv * new * row)
        self._alloc[layer] = new

    def allocated(self, layer: int) -> int:
        return self._alloc[layer]

    def __del__(self):
        # freed after the next flush: a pending command may still write them
        self._be._free_after_flush.extend(a for a in self.k_addr + self.v_addr if a)

    def nbytes(self) -> int:
        return 2 * sum(self._alloc) * self._hkv * self._hd * 4


# ------------------------------------------------------------------ backend


class WasmBackend:
    """The Backend contract (backends/base.py) on WASM SIMD kernels.  See the module docstring."""

    name = "wasm"

    def __init__(self, *, debug: bool = False, kernels: Any = None, threads: Any = None):
        """``threads``: a started pool (wasm_threads.start_threads) to run on its shared memory; else
        single-threaded on Pyodide's own memory (zero-copy)."""
        if threads is not None:
            from .wasm_threads import shared_heap

            self.heap = shared_heap(threads)
            self._run = threads.run
            self.n_threads = int(threads.nth)
        else:
            self.kernels = kernels if kernels is not None else load_kernels()
            self.heap = LocalHeap()
            self._run = self.kernels.run
            self.n_threads = 1
        self.arena = Arena(self.heap)
        self.program = Program()
        self.debug = debug
        self._regions: list[tuple[int, int]] = []   # (start, end) of every registered allocation (debug)
        self._region_set: set[tuple[int, int]] = set()
        self.flushes = 0
        self.recording: Recording | None = None     # set by wasm_plan while it records a step
        self._rope_cache: dict = {}
        self._free_after_flush: list[int] = []      # heap buffers released while commands were pending
        self._prev: int | None = None               # threads: first word of the last command
        self._group: list = []                      # threads: (spans, token split) of the commands since the last barrier

    # ------------------------------------------------------------ running

    def flush(self) -> None:
        """Run every recorded command (one call into WASM)."""
        p = self.program
        if not p.n_commands:
            return
        if self.debug:
            self._check_program()
        if self.recording is not None:
            self.recording.programs.append(p.words.tobytes())
        rc = self._run(self.heap.program_words(p.words), len(p.words))
        cmds = list(p.commands()) if rc else []
        p.clear()
        self._prev, self._group = None, []
        if rc:
            raise WasmKernelError(f"the kernels rejected command {rc - 1}: {cmds[rc - 1] if rc <= len(cmds) else '?'}",
                                  command=rc - 1)
        self.arena.flushed()
        self.flushes += 1
        while self._free_after_flush:
            self.heap.free(self._free_after_flush.pop())

    def _alloc(self, shape: tuple, itemsize: int = 4) -> WasmTensor:
        nbytes = math.prod(shape) * itemsize
        if self.arena.since_flush + nbytes > FLUSH_BYTES and self.program.n_commands:
            self.flush()
        addr, n = self.arena.alloc(nbytes)
        if self.debug:
            self._register(addr, n)
        t = WasmTensor(addr, shape, n, self.arena)
        if self.recording is not None:
            self.recording.tensors.append(t)
        return t

    def _emit(self, op: str, *args: int) -> None:
        start = self.program.emit(op, *args)
        if self.recording is not None and op in POS_WORD:
            self.recording.pos_words.append(start + POS_WORD[op])
        if self.n_threads > 1:
            # threads meet after a command only when the next one touches what it (or the
            # commands since the last meeting) wrote, or writes what they read
            a = dict(zip(OPS[op][1], args))
            cmd = (_spans(op, a), a["T"] if op in TOKEN_SPLIT else None)
            if self._prev is not None and not any(_conflict(g, cmd) for g in self._group):
                self.program.words[self._prev] |= NO_BARRIER
                self._group.append(cmd)
            else:
                self._group = [cmd]
            self._prev = start

    # ------------------------------------------------------------ debug checks

    def _register(self, addr: int, nbytes: int) -> None:
        if self.debug and (addr, addr + nbytes) not in self._region_set:
            self._region_set.add((addr, addr + nbytes))
            bisect.insort(self._regions, (addr, addr + nbytes))

    def _inside(self, addr: int, nbytes: int) -> bool:
        # the allocations that start at or before addr, nearest first
        for i in range(bisect.bisect_right(self._regions, (addr, float("inf"))) - 1, -1, -1):
            start, end = self._regions[i]
            if addr + nbytes <= end:
                return True
        return False

    def _check_program(self) -> None:
        """Debug: every pointer of every pending command inside a registered allocation, big enough."""
        for idx, (op, a) in enumerate(self.program.commands()):
            if op in ("kv_store", "attention") and a["pos0"] + a["T"] > a["cap"]:
                raise WasmKernelError(f"command {idx} ({op}): positions up to {a['pos0'] + a['T']} "
                                      f"in a cache of {a['cap']}", command=idx)
            for ptr, nbytes, align, _ in _spans(op, a):
                if not nbytes:
                    continue
                if ptr % align:
                    raise WasmKernelError(f"command {idx} ({op}): address 0x{ptr:x} not {align}-byte aligned",
                                          command=idx)
                if not self._inside(ptr, nbytes):
                    raise WasmKernelError(f"command {idx} ({op}): {nbytes} bytes at 0x{ptr:x} are outside "
                                          "every live allocation", command=idx)

    # ------------------------------------------------------------ weights

    def load_matrix(self, info: TensorInfo, raw: np.ndarray):
        rows, cols = info.shape
        type_id = QUANT_KERNELS.get(info.type_name)
        if type_id is not None and getattr(info, "packed_rows", 1) == 1:
            raw = np.ascontiguousarray(raw)
            addr = self.heap.pin(raw)
            self._register(addr, raw.nbytes)
            return QuantMatrix(info, type_id, addr, rows, cols, row_nbytes(info.ggml_type, cols))
        kw = {"packed_rows": info.packed_rows} if getattr(info, "packed_rows", 1) != 1 else {}
        data = np.ascontiguousarray(dequantize(raw, info.ggml_type, info.shape, name=info.name, **kw), np.float32)
        addr = self.heap.pin(data)
        self._register(addr, data.nbytes)
        return FloatMatrix(addr, rows, cols)

    def load_vector(self, info: TensorInfo, raw: np.ndarray) -> FloatVector:
        return self.vector(dequantize(raw, info.ggml_type, info.shape, name=info.name))

    def vector(self, v: np.ndarray) -> FloatVector:
        """A float32 vector in the kernels' memory (norm weights, biases)."""
        data = np.ascontiguousarray(v, np.float32).reshape(-1)
        addr = self.heap.pin(data)
        self._register(addr, data.nbytes)
        return FloatVector(addr, data.size)

    def load_embedding(self, info: TensorInfo, raw: np.ndarray, *, also_output: bool):
        # A quantized table stays quantized for both uses: rows are dequantized on
        # lookup (numpy, exactly as the numpy backend does) and, tied, it is the
        # output matrix of a quantized matmul.
        return self.load_matrix(info, raw)

    # ------------------------------------------------------------ state

    def new_kv_cache(self, args: ModelArgs, n_ctx: int, kv_dtype: str = "f32") -> WasmKVCache:
        if kv_dtype != "f32":
            raise InvalidArgumentError(f"the wasm backend keeps its KV cache in f32; kv_dtype {kv_dtype!r} "
                                       "is a numpy-backend option")
        return WasmKVCache(args, n_ctx, self)

    def rope_tables(self, args: ModelArgs, n_ctx: int, freq_factors=None) -> RopeTables:
        # one pair of tables per context length and model, shared by every session (they are
        # read-only), so sessions neither pile up copies nor invalidate recorded decode steps
        key = (n_ctx, args.rope, None if freq_factors is None else np.asarray(freq_factors).tobytes())
        if key not in self._rope_cache:
            cos, sin = (np.ascontiguousarray(t, np.float32) for t in rope_tables(args.rope, n_ctx, freq_factors))
            addrs = []
            for t in (cos, sin):
                addrs.append(self.heap.pin(t))
                self._register(addrs[-1], t.nbytes)
            self._rope_cache[key] = RopeTables(addrs[0], addrs[1], cos.shape[1])
        return self._rope_cache[key]

    # ------------------------------------------------------------ moving data in and out

    def from_numpy(self, a: np.ndarray) -> WasmTensor:
        """A new activation holding a copy of ``a`` (float32); for tests and callers outside the model."""
        a = np.ascontiguousarray(a, np.float32)
        t = self._alloc(a.shape)
        self.heap.write(t.addr, a)
        return t

    def to_numpy(self, x) -> np.ndarray:
        if isinstance(x, np.ndarray):
            return x
        if self.recording is not None:
            self.recording.outputs.append(x)
        self.flush()
        return self.read(x)

    def read(self, x: WasmTensor) -> np.ndarray:
        """A copy of ``x``'s values (no flush)."""
        return self.heap.read(x.addr, x.size * 4).view(np.float32).reshape(x.shape)

    def _in(self, x) -> WasmTensor:
        return x if isinstance(x, WasmTensor) else self.from_numpy(x)

    # ------------------------------------------------------------ ops

    def embed_rows(self, table, ids: Sequence[int]) -> np.ndarray:
        """The embedding rows of ``ids`` as float32 [T, D] (dequantized exactly as the numpy backend does)."""
        if isinstance(table, QuantMatrix):
            raw = np.stack([self.heap.read(table.addr + int(i) * table.row_bytes, table.row_bytes) for i in ids])
            return dequantize_rows(raw, table.info.ggml_type, table.cols)
        return np.stack([self.heap.read(table.addr + int(i) * table.cols * 4, table.cols * 4).view(np.float32)
                         for i in ids])

    def embed(self, table, ids: Sequence[int]) -> WasmTensor:
        x = self.from_numpy(self.embed_rows(table, ids))
        if self.recording is not None:
            self.recording.inputs.append((x, table))
        return x

    def rmsnorm(self, x, w: FloatVector, eps: float) -> WasmTensor:
        x = self._in(x)
        t, d = x.shape[0], x.size // x.shape[0]
        out = self._alloc((t, d))
        self._emit("rmsnorm", x.addr, w.addr, out.addr, t, d, f32_bits(eps))
        return out

    def _quantized(self, x: WasmTensor, t: int, k: int) -> tuple[int, int, int, int]:
        """x's int16 blocks (qx, dx, sx, isx addresses), recorded once per value of x."""
        root = x.root
        if root.quant is not None and root.quant[0] == x.addr:
            return root.quant[1]
        nb = k // QBLOCK
        q = self._alloc((t * k * 2 + 3 * t * nb * 4,), 1)
        qx = q.addr
        dx = qx + t * k * 2
        sx = dx + t * nb * 4
        isx = sx + t * nb * 4
        self._emit("quant", x.addr, t, k, qx, dx, sx, isx)
        root.quant = (x.addr, (qx, dx, sx, isx), q)  # q keeps the block alive with the cache
        return qx, dx, sx, isx

    def linear(self, x, w, b: FloatVector | None = None) -> WasmTensor:
        x = self._in(x)
        t = x.shape[0]
        k = x.size // t
        if k != w.cols:
            raise ValueError(f"linear: x has {k} columns, the matrix {w.cols}")
        y = self._alloc((t, w.rows))
        if isinstance(w, QuantMatrix):
            qx, dx, sx, isx = self._quantized(x, t, k)
            self._emit("matmul_q", w.type_id, w.addr, w.rows, k, t, qx, dx, sx, isx, y.addr, w.rows)
        else:
            self._emit("matmul_f32", w.addr, w.rows, k, x.addr, t, y.addr, w.rows)
        if b is not None:
            self._emit("add_rows", y.addr, b.addr, t, w.rows)
        return y

    def rope(self, x, tables: RopeTables, pos0: int, n_heads: int, style: str) -> WasmTensor:
        x = self._in(x)
        t = x.shape[0]
        hd = x.size // (t * n_heads)
        self._emit("rope", x.addr, t, n_heads, hd, tables.half, tables.cos_addr, tables.sin_addr, pos0,
                   int(style == "neox"))
        x.root.quant = None
        return WasmTensor(x.addr, (t, n_heads, hd), base=x.root)

    def attention(self, q, k, v, cache: WasmKVCache, layer: int, pos0: int, args: ModelArgs) -> WasmTensor:
        q, k, v = self._in(q), self._in(k), self._in(v)
        t = q.shape[0]
        h, hkv, hd = args.n_heads, args.n_kv_heads, args.head_dim
        n = pos0 + t
        cache.reserve(layer, n)
        cap = cache.allocated(layer)
        kc, vc = cache.k_addr[layer], cache.v_addr[layer]
        self._emit("kv_store", k.addr, v.addr, kc, vc, cap, t, pos0, hkv, hd)
        out = self._alloc((t, h * hd))
        stride = max(n, cap if self.recording is not None else 0)  # a replayed step may attend to up to cap
        scratch = self._alloc((self.n_threads * stride,))          # one row per thread
        self._emit("attention", q.addr, kc, vc, cap, t, pos0, h, hkv, hd, f32_bits(float(np.float32(1.0 / np.sqrt(hd)))),
                   out.addr, scratch.addr, stride)
        return out

    def swiglu(self, gate, up) -> WasmTensor:
        gate, up = self._in(gate), self._in(up)
        out = self._alloc(gate.shape)
        t = gate.shape[0]
        self._emit("swiglu", gate.addr, up.addr, out.addr, t, gate.size // t)
        return out

    def add(self, a, b) -> WasmTensor:
        a, b = self._in(a), self._in(b)
        t = a.shape[0]
        self._emit("add", a.addr, b.addr, t, a.size // t)
        a.root.quant = None
        return a

    def last_rows(self, x, n: int) -> WasmTensor:
        x = self._in(x)
        t = x.shape[0]
        row = x.size // t
        return WasmTensor(x.addr + (t - n) * row * 4, (n,) + tuple(x.shape[1:]), base=x.root)

    # ------------------------------------------------------------ accounting

    def memory(self) -> dict:
        """Bytes this backend holds in the WASM heap, by kind (weights are counted by the model)."""
        return {"arena": self.arena.chunk_bytes, "heap": self.heap.nbytes, "threads": self.n_threads,
                "flushes": self.flushes}


def _spans(op: str, a: dict) -> list[tuple[int, int, int, bool]]:
    """(address, bytes touched, alignment required, written?) of every pointer argument of a command.

    Used by the debug checks (bounds, alignment) and, with threads, to let
    independent neighbouring commands run without a barrier between them.
    """
    if op == "rmsnorm":
        n = a["T"] * a["D"] * 4
        return [(a["x"], n, 4, False), (a["w"], a["D"] * 4, 4, False), (a["out"], n, 4, True)]
    if op == "quant":
        t, k = a["T"], a["K"]
        nb = k // QBLOCK
        return [(a["x"], t * k * 4, 4, False), (a["qx"], t * k * 2, 2, True), (a["dx"], t * nb * 4, 4, True),
                (a["sx"], t * nb * 4, 4, True), (a["isx"], t * nb * 4, 4, True)]
    if op == "matmul_q":
        t, k, rows = a["T"], a["K"], a["rows"]
        nb = k // QBLOCK
        wbytes = rows * {2: 18, 3: 20, 8: 34, 12: 144, 14: 210}[a["type"]] * k // (256 if a["type"] in (12, 14) else 32)
        return [(a["w"], wbytes, 1, False), (a["qx"], t * k * 2, 2, False), (a["dx"], t * nb * 4, 4, False),
                (a["sx"], t * nb * 4, 4, False), (a["isx"], t * nb * 4, 4, False),
                (a["y"], ((t - 1) * a["ldy"] + rows) * 4, 4, True)]
    if op == "matmul_f32":
        t, k, rows = a["T"], a["K"], a["rows"]
        return [(a["w"], rows * k * 4, 4, False), (a["x"], t * k * 4, 4, False),
                (a["y"], ((t - 1) * a["ldy"] + rows) * 4, 4, True)]
    if op == "rope":
        t, half = a["T"], a["half"]
        tab = (a["pos0"] + t) * half * 4
        return [(a["x"], t * a["H"] * a["hd"] * 4, 4, True), (a["cos"], tab, 4, False), (a["sin"], tab, 4, False)]
    if op == "kv_store":
        t, hkv, hd = a["T"], a["Hkv"], a["hd"]
        c = hkv * a["cap"] * hd * 4
        return [(a["k"], t * hkv * hd * 4, 4, False), (a["v"], t * hkv * hd * 4, 4, False), (a["kc"], c, 4, True),
                (a["vc"], c, 4, True)]
    if op == "attention":
        t, h, hkv, hd = a["T"], a["H"], a["Hkv"], a["hd"]
        c = hkv * a["cap"] * hd * 4
        return [(a["q"], t * h * hd * 4, 4, False), (a["kc"], c, 4, False), (a["vc"], c, 4, False),
                (a["out"], t * h * hd * 4, 4, True), (a["scratch"], (a["pos0"] + t) * 4, 4, True),
                (a["scratch"], a["scratch_stride"] * 4, 4, True)]
    if op == "swiglu":
        n = a["T"] * a["n"] * 4
        return [(a["g"], n, 4, False), (a["u"], n, 4, False), (a["out"], n, 4, True)]
    if op == "add":
        n = a["T"] * a["n"] * 4
        return [(a["a"], n, 4, True), (a["b"], n, 4, False)]
    if op == "add_rows":
        return [(a["y"], a["T"] * a["n"] * 4, 4, True), (a["b"], a["n"] * 4, 4, False)]
    raise AssertionError(op)


def _conflict(c1: tuple, c2: tuple) -> bool:
    """Whether two commands (spans, token split) may not run at once on different threads.

    They may when they touch disjoint memory or only read the same, and also
    when both split the same T tokens: then each thread works on the same
    tokens in both, so it only meets its own rows.
    """
    (s1, t1), (s2, t2) = c1, c2
    if t1 is not None and t1 == t2:
        return False
    for a0, an, _, aw in s1:
        for b0, bn, _, bw in s2:
            if (aw or bw) and a0 < b0 + bn and b0 < a0 + an:
                return True
    return False
