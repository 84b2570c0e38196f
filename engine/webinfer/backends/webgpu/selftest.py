"""A quick check of the kernels on the device at hand against numpy (``webinfer doctor --selftest``).

Drivers and browsers compile WGSL differently (naga in wgpu-native, Tint in
Chromium, others elsewhere), so the kernels that decode weights and sample
are run on small random inputs and compared with numpy.  The same function
runs in CPython (wgpu-py) and in the browser (SwiftShader in the tests).
Takes about a second on a software adapter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ...devices.base import BufferUsage, Dispatch, Readback
from ...formats.ggml_types import GGMLType
from ...formats.quants import dequantize
from .kernels import WEIGHT_FORMATS, kernel_source
from .planner import fold, pack
from .synthetic import random_tensor
from .weights import CHUNK, repack

TOLERANCE = 2e-5    # |got - ref| / (1 + |ref|): float32 sums in another order than float64


@dataclass
class Check:
    name: str
    error: float
    ok: bool

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:<28} max rel. error {self.error:.2e}"


def _err(got, ref) -> float:
    got = np.asarray(got, np.float64)
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float((np.abs(got - ref) / (1.0 + np.abs(ref))).max())


class _Runner:
    def __init__(self, dev):
        self.dev = dev
        self.bufs = []

    def buf(self, a):
        b = self.dev.buffer_from(np.ascontiguousarray(a))
        self.bufs.append(b)
        return b

    def out(self, n_floats):
        return self.buf(np.zeros(max(1, n_floats), np.float32))

    def uni(self, words):
        u = self.dev.create_buffer(256, BufferUsage.UNIFORM | BufferUsage.COPY_DST, "selftest params")
        self.bufs.append(u)
        self.dev.write_buffer(u, words)
        return (u, 0, words.size * 4)

    def run(self, kernel, defines, bindings, counts, out, n, dtype=np.float32):
        pipe = self.dev.pipeline("selftest " + kernel + repr(sorted(defines.items())), kernel_source(kernel, defines))
        prog = self.dev.prepare([Dispatch(pipe, self.dev.bind_group(pipe, bindings), tuple(counts))])
        (raw,) = self.dev.run([prog], readback=[Readback(out, 0, n * 4)])
        return raw.view(dtype)

    def close(self):
        for b in self.bufs:
            self.dev.destroy_buffer(b)


def run_selftest(device, *, matvec_lanes: int = 32, matmul: str = "tiled", seed: int = 0) -> list[Check]:
    """Run the kernel checks on ``device``; one :class:`Check` per kernel variant."""
    rng = np.random.default_rng(seed)
    k = _Runner(device)
    checks: list[Check] = []
    try:
        for fmt in WEIGHT_FORMATS:
            rows, cols = 37, (512 if fmt.endswith("_K") else 96)
            raw = random_tensor(fmt, (rows, cols), rng, 0.5)
            w_ref = dequantize(raw, GGMLType[fmt], (rows, cols)).astype(np.float64)
            w = k.buf(repack(raw, fmt, rows, cols))
            f = fmt.lower()
            # matvec, one token
            x = rng.standard_normal(cols).astype(np.float32)
            y = k.out(rows)
            p = pack((0, rows, cols // CHUNK, 0), (0,) * 4, (0,) * 4, (0,) * 4, (rows, rows, rows, 0), 0, 0, rows, 0)
            got = k.run(f"matvec_{f}", {"WG": 256, "LANES": matvec_lanes}, [w, k.buf(x), y, k.uni(p)],
                        fold(-(-rows // (256 // matvec_lanes))), y, rows)
            e = _err(got, w_ref @ x)
            checks.append(Check(f"matvec_{f}", e, e <= TOLERANCE))
            # matmul, 5 tokens
            t = 5
            xs = rng.standard_normal((t, cols)).astype(np.float32)
            y = k.out(t * rows)
            p = pack((0, rows, cols // CHUNK, 0), rows, t, cols // 4, rows, 0, 0, 0, 0)
            if matmul == "rowwise":
                d, counts = {"ROWWISE": 1}, fold(-(-rows * -(-t // 8) // 64))
            else:
                d, counts = {}, (-(-rows // 64), 1, 1)
            got = k.run(f"matmul_{f}", d, [w, k.buf(xs), y, k.uni(p)], counts, y, t * rows).reshape(t, rows)
            e = _err(got, xs.astype(np.float64) @ w_ref.T)
            checks.append(Check(f"matmul_{f}", e, e <= TOLERANCE))
            # embedding rows
            ids = np.array([5, 0, 36], np.uint32)
            y = k.out(3 * cols)
            p = pack((0, rows, cols // CHUNK, 0), 3, 0, rows, 0)
            got = k.run(f"embed_{f}", {}, [w, k.buf(ids), y, k.uni(p)], fold(-(-3 * cols // 256)), y, 3 * cols)
            e = _err(got.reshape(3, cols), w_ref[ids])
            checks.append(Check(f"embed_{f}", e, e == 0.0))
        # rmsnorm
        x = (rng.standard_normal((2, 300)) * 3).astype(np.float32)
        g = rng.standard_normal(300).astype(np.float32)
        y = k.out(600)
        got = k.run("rmsnorm_f32", {}, [k.buf(x), k.buf(g), y, k.uni(pack(300, 0, 300, 0, 300, 1e-5, 0, 0))],
                    (2, 1, 1), y, 600).reshape(2, 300)
        x64 = x.astype(np.float64)
        ref = x64 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + 1e-5) * g
        e = _err(got, ref)
        checks.append(Check("rmsnorm_f32", e, e <= TOLERANCE))
        # attention over 40 cached keys, 3 splits, one query per head (GQA 4 -> 2)
        h, hkv, hd, n, cap, splits = 4, 2, 64, 40, 48, 3
        q = rng.standard_normal((h, hd)).astype(np.float32)
        kc = rng.standard_normal((hkv, cap, hd)).astype(np.float32)
        vc = rng.standard_normal((hkv, cap, hd)).astype(np.float32)
        part = k.out(h * splits * (hd + 2))
        step = k.buf(np.array([n - 1, 1, 0, 0], np.uint32))
        k.run("attention_f32", {}, [k.buf(q), k.buf(kc), k.buf(vc), part, step,
                                    k.uni(pack(h, h // hkv, hd, cap, float(hd ** -0.5), h * hd, 0, 0))],
              (h, 1, splits), part, 1)
        y = k.out(h * hd)
        got = k.run("attention_combine_f32", {}, [part, y, k.uni(pack(h, hd, splits, h * hd, 0, 0, 0, 0))],
                    (h, 1, 1), y, h * hd).reshape(h, hd)
        ref = np.empty((h, hd))
        for i in range(h):
            s = kc[i // 2, :n].astype(np.float64) @ q[i] * hd ** -0.5
            p_ = np.exp(s - s.max())
            ref[i] = p_ @ vc[i // 2, :n] / p_.sum()
        e = _err(got, ref)
        checks.append(Check("attention_f32 (split-K)", e, e <= TOLERANCE))
        # greedy and top-k sampling
        v = 1000
        logits = rng.standard_normal(v).astype(np.float32)
        logits[[321, 654]] = 7.0                          # a tie: the lower index wins
        for kernel, extra in (("argmax_f32", ()), ("sample_f32", (1, 1.0, 0.0, 1.0, 42, 0, 0, 0))):
            out = k.buf(np.zeros(8, np.uint32))
            p = pack(v, 0, 8, 0, (0,) * 4, (0,) * 4, *extra)
            tok = k.run(kernel, {}, [k.buf(logits), k.buf(np.array([0, 1, 0, 0], np.uint32)),
                                     k.buf(np.zeros(4, np.uint32)), out, k.uni(p)], (1, 1, 1), out, 1, np.uint32)
            checks.append(Check(kernel + (" (top_k=1)" if extra else ""), float(tok[0] != 321), int(tok[0]) == 321))
    finally:
        k.close()
    return checks


def selftest_report(device, **kw) -> tuple[bool, str]:
    """(all passed, a printable report)."""
    t = time.perf_counter()
    checks = run_selftest(device, **kw)
    lines = [str(c) for c in checks]
    ok = all(c.ok for c in checks)
    lines.append(f"{sum(c.ok for c in checks)}/{len(checks)} kernel checks passed in {time.perf_counter() - t:.1f} s "
                 f"on {device.info.describe()}")
    return ok, "\n".join(lines)
