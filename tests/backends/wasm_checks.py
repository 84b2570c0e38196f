"""Checks of the WASM kernels against numpy references, run *inside Pyodide* (under Node).

``tests/backends/test_wasm_kernels.py`` runs ``main()`` once in Pyodide
(web/node/run_pyodide.mjs) and turns each check into a pytest test.  This
module is also imported in CPython, for the list of names only, so it
imports webinfer lazily.

Tolerances: kernels accumulate in float32 in another order than numpy, and
matmuls see activations quantized to int16 (relative step 2^-15 of each
32-block's largest value).  A matmul result must lie within 1e-4 of the
scale ``|W| @ |x|`` of the float64 product of the dequantized weights and
the *quantized* activations (the exact math the kernel does), and within
2e-4 of that scale from the product with the float activations.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback

MODEL = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"   # where the test mounts the model cache

# f16 fields (byte offsets) of each block type, overwritten with sane scales in random blocks
_F16_FIELDS = {"Q4_0": (0,), "Q4_1": (0, 2), "Q8_0": (0,), "Q4_K": (0, 2), "Q6_K": (208,)}
_BLOCK = {"Q4_0": (32, 18), "Q4_1": (32, 20), "Q8_0": (32, 34), "Q4_K": (256, 144), "Q6_K": (256, 210)}

CHECKS: dict = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


# ------------------------------------------------------------------ helpers


def _np():
    import numpy as np

    return np


def backend(debug=True):
    from webinfer.backends.wasm_backend import WasmBackend

    return WasmBackend(debug=debug)


def random_blocks(type_name: str, rows: int, cols: int, rng):
    """Random but valid GGUF blocks of ``type_name`` for a [rows, cols] matrix: uint8 [rows, row_bytes]."""
    np = _np()
    be, bb = _BLOCK[type_name]
    nb = rows * cols // be
    raw = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
    for off in _F16_FIELDS[type_name]:
        scale = (rng.standard_normal(nb) * 0.02).astype(np.float16)
        if off == 0 and nb > 2:
            scale[1] = np.float16(3e-6)   # a subnormal half: the f16 conversion must get it right
        raw[:, off : off + 2] = scale.view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, -1)


def tensor_info(name, type_name, rows, cols, nbytes):
    from webinfer.formats.ggml_types import GGMLType
    from webinfer.formats.gguf import TensorInfo

    return TensorInfo(name, (rows, cols), GGMLType[type_name], 0, nbytes)


def quantize_ref(x):
    """act_quant.c in numpy: int16 blocks of 32 (bit-exact: the same float32 operations)."""
    np = _np()
    t, k = x.shape
    xb = x.reshape(t, k // 32, 32)
    amax = np.abs(xb).max(-1)
    d = amax / np.float32(32767)
    inv = np.where(amax > 0, np.float32(32767) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    q = np.clip(np.rint(xb * inv[..., None]), -32768, 32767).astype(np.int16)
    return q.reshape(t, k), d.astype(np.float32)


def matmul_close(y, w_f, x, what):
    """y [T, rows] against dequantized w_f [rows, K] and activations x [T, K] (see the module docstring)."""
    np = _np()
    q, d = quantize_ref(x)
    xq = (q.reshape(x.shape[0], -1, 32).astype(np.float64) * d[..., None]).reshape(x.shape)
    w64 = w_f.astype(np.float64)
    scale = np.abs(x).astype(np.float64) @ np.abs(w64).T + 1e-30
    err_q = np.abs(y - xq @ w64.T) / scale
    err_f = np.abs(y - x.astype(np.float64) @ w64.T) / scale
    assert err_q.max() < 1e-4, f"{what}: error vs quantized-x reference {err_q.max():.2e}"
    assert err_f.max() < 2e-4, f"{what}: error vs float-x reference {err_f.max():.2e}"
    return f"max err {err_q.max():.1e} (quantized x), {err_f.max():.1e} (float x)"


# ------------------------------------------------------------------ kernels


@check
def quant_act_bit_exact():
    np = _np()
    from webinfer.backends.wasm_program import QBLOCK

    be = backend()
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5, 96)) * rng.uniform(0.01, 100, (5, 1))).astype(np.float32)
    x[2, 32:64] = 0.0            # an all-zero block: scale 0, quants 0
    x[3, 5] = 1e-30              # a tiny value beside normal ones
    xt = be.from_numpy(x)
    qx, dx, sx, isx = be._quantized(xt, 5, 96)
    be.flush()
    nb = 96 // QBLOCK
    got_q = be.heap.read(qx, 5 * 96 * 2).view(np.int16).reshape(5, 96)
    got_d = be.heap.read(dx, 5 * nb * 4).view(np.float32).reshape(5, nb)
    got_s = be.heap.read(sx, 5 * nb * 4).view(np.float32).reshape(5, nb)
    got_i = be.heap.read(isx, 5 * nb * 4).view(np.int32).reshape(5, nb)
    q, d = quantize_ref(x)
    np.testing.assert_array_equal(got_q, q)
    np.testing.assert_array_equal(got_d, d)
    np.testing.assert_array_equal(got_i, q.reshape(5, nb, 32).astype(np.int32).sum(-1))
    np.testing.assert_allclose(got_s, x.reshape(5, nb, 32).sum(-1), rtol=1e-5, atol=1e-5 * np.abs(x).max())


def _matmul_case(type_name, rows, cols, t, seed):
    np = _np()
    from webinfer.formats.quants import dequantize

    rng = np.random.default_rng(seed)
    raw = random_blocks(type_name, rows, cols, rng)
    info = tensor_info("w", type_name, rows, cols, raw.nbytes)
    be = backend()
    w = be.load_matrix(info, raw.reshape(-1))
    x = rng.standard_normal((t, cols)).astype(np.float32)
    y = be.to_numpy(be.linear(be.from_numpy(x), w))
    w_f = dequantize(raw.reshape(-1), info.ggml_type, (rows, cols))
    return matmul_close(y, w_f, x, f"{type_name} {rows}x{cols} T={t}")


# odd row counts, block counts that are not a multiple of 4 (the decode path's tail),
# and token counts around the prefill tile of 4
for _type, _shapes in {
    "Q4_0": [(37, 96), (64, 576)], "Q4_1": [(37, 96), (64, 576)], "Q8_0": [(37, 96), (64, 576)],
    "Q4_K": [(37, 256), (19, 768)], "Q6_K": [(37, 256), (19, 768)],
}.items():
    for _rows, _cols in _shapes:
        for _t in (1, 3, 4, 9):
            def _f(_type=_type, _rows=_rows, _cols=_cols, _t=_t):
                return _matmul_case(_type, _rows, _cols, _t, seed=_rows * 1000 + _t)
            _f.__name__ = f"matmul_{_type.lower()}_{_rows}x{_cols}_t{_t}"
            check(_f)


@check
def matmul_f32_odd_sizes():
    np = _np()
    from webinfer.formats.ggml_types import GGMLType
    from webinfer.formats.gguf import TensorInfo

    rng = np.random.default_rng(3)
    be = backend()
    for rows, cols, t in [(7, 13, 1), (33, 70, 5), (16, 64, 4)]:
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        m = be.load_matrix(TensorInfo("w", (rows, cols), GGMLType.F32, 0, w.nbytes), w.view(np.uint8).reshape(-1))
        x = rng.standard_normal((t, cols)).astype(np.float32)
        bias = rng.standard_normal(rows).astype(np.float32)
        b = be.load_vector(TensorInfo("b", (rows,), GGMLType.F32, 0, rows * 4), bias.view(np.uint8))
        y = be.to_numpy(be.linear(be.from_numpy(x), m, b))
        np.testing.assert_allclose(y, x @ w.T + bias, rtol=1e-5, atol=1e-5)


@check
def matmul_real_tensors():
    """The default model's own Q4_1 and Q8_0 matrices (attn_q, ffn_down, embedding rows)."""
    np = _np()
    from webinfer.formats.gguf import GGUFFile
    from webinfer.formats.quants import dequantize

    g = GGUFFile.open(MODEL)
    be = backend()
    rng = np.random.default_rng(4)
    out = []
    for name, rows in [("blk.3.attn_q.weight", None), ("blk.3.ffn_down.weight", None), ("token_embd.weight", 300)]:
        info = g.info(name)
        raw = g.raw(name)
        r, c = info.shape
        if rows:
            raw = raw[: rows * raw.size // r]
            r = rows
            info = tensor_info(name, info.type_name, r, c, raw.size)
        w = be.load_matrix(info, raw)
        x = (rng.standard_normal((2, c)) * 3).astype(np.float32)
        y = be.to_numpy(be.linear(be.from_numpy(x), w))
        out.append(f"{name}: " + matmul_close(y, dequantize(raw, info.ggml_type, (r, c)), x, name))
    return "; ".join(out)


@check
def rmsnorm_matches_numpy():
    np = _np()
    from webinfer.backends.numpy_backend import NumpyBackend

    rng = np.random.default_rng(5)
    be = backend()
    for t, d in [(1, 576), (3, 13), (2, 4)]:
        x = rng.standard_normal((t, d)).astype(np.float32) * 5
        w = rng.standard_normal(d).astype(np.float32)
        wv = be.vector(w)
        got = be.to_numpy(be.rmsnorm(be.from_numpy(x), wv, 1e-5))
        np.testing.assert_allclose(got, NumpyBackend().rmsnorm(x, w, 1e-5), rtol=2e-6, atol=1e-6)


@check
def rope_matches_numpy():
    np = _np()
    from webinfer.backends.numpy_backend import NumpyBackend
    from webinfer.model.args import ModelArgs, RopeConfig

    rng = np.random.default_rng(6)
    for style, n_dims, hd in [("norm", 64, 64), ("neox", 64, 64), ("norm", 10, 14), ("neox", 6, 10)]:
        args = ModelArgs(arch="llama", n_layers=1, dim=3 * hd, n_heads=3, n_kv_heads=1, ffn_dim=8, vocab_size=10,
                         context_length=64, norm_eps=1e-5, rope=RopeConfig(n_dims=n_dims, theta=10000.0, style=style),
                         head_dim=hd)
        be = backend()
        tabs = be.rope_tables(args, 40)
        ref_tabs = NumpyBackend().rope_tables(args, 40)
        for t, pos0 in [(1, 0), (1, 37), (5, 20)]:
            x = rng.standard_normal((t, 3 * hd)).astype(np.float32)
            got = be.to_numpy(be.rope(be.from_numpy(x), tabs, pos0, 3, style))
            want = NumpyBackend().rope(x.copy(), ref_tabs, pos0, 3, style)
            np.testing.assert_array_equal(got, want)   # the same float32 operations: bit-exact


@check
def attention_matches_numpy():
    np = _np()
    from webinfer.backends.numpy_backend import NumpyBackend
    from webinfer.model.args import ModelArgs, RopeConfig

    rng = np.random.default_rng(7)
    for h, hkv, hd in [(9, 3, 64), (4, 4, 20), (6, 1, 7)]:
        args = ModelArgs(arch="llama", n_layers=2, dim=h * hd, n_heads=h, n_kv_heads=hkv, ffn_dim=8, vocab_size=10,
                         context_length=512, norm_eps=1e-5, rope=RopeConfig(n_dims=hd - hd % 2), head_dim=hd)
        be, nb = backend(), NumpyBackend()
        wc, nc = be.new_kv_cache(args, 300), nb.new_kv_cache(args, 300)
        pos = 0
        for t in (5, 1, 1, 70, 1):   # prefill, decode, a chunk that makes the cache grow, decode
            q = rng.standard_normal((t, h, hd)).astype(np.float32)
            k = rng.standard_normal((t, hkv * hd)).astype(np.float32)
            v = rng.standard_normal((t, hkv * hd)).astype(np.float32)
            for layer in (0, 1):
                got = be.to_numpy(be.attention(be.from_numpy(q), be.from_numpy(k), be.from_numpy(v), wc, layer, pos, args))
                want = nb.attention(q, k, v, nc, layer, pos, args)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)
            pos += t


@check
def swiglu_and_exp():
    np = _np()
    from webinfer.backends.numpy_backend import NumpyBackend

    be = backend()
    g = np.concatenate([np.linspace(-120, 100, 997), [-1e30, 1e30, 0.0, -0.0, 88.7, -87.5, -103.9, -104.0]]).astype(np.float32)
    u = np.ones_like(g)
    got = be.to_numpy(be.swiglu(be.from_numpy(g[None]), be.from_numpy(u[None])))[0]
    want = NumpyBackend().swiglu(g, u)
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=1e-37)
    assert np.signbit(got[g < -100]).all(), "silu of very negative inputs must be -0.0 as in numpy"
    # exp's accuracy through silu: within a few float32 ulp of the float64 value where silu is well-conditioned
    xs = np.linspace(-80, 80, 20001).astype(np.float32)
    s = be.to_numpy(be.swiglu(be.from_numpy(xs[None]), be.from_numpy(np.ones((1, xs.size), np.float32))))[0]
    x64 = xs.astype(np.float64)
    ref = x64 / (1 + np.exp(-x64))
    rel = np.abs(s - ref) / np.maximum(np.abs(ref), 1e-30)
    assert rel.max() < 1e-6, f"silu relative error {rel.max():.1e}"
    return f"silu max relative error {rel.max():.1e}"


@check
def add_and_bias():
    np = _np()
    be = backend()
    rng = np.random.default_rng(8)
    a = rng.standard_normal((3, 37)).astype(np.float32)
    b = rng.standard_normal((3, 37)).astype(np.float32)
    np.testing.assert_array_equal(be.to_numpy(be.add(be.from_numpy(a), be.from_numpy(b))), a + b)


# ------------------------------------------------------------------ contract and safety


@check
def debug_mode_rejects_out_of_bounds():
    np = _np()
    from webinfer.errors import WasmKernelError

    be = backend(debug=True)
    x = be.from_numpy(np.ones((1, 8), np.float32))
    be._emit("add", x.addr, x.addr + (1 << 24), 1, 8)   # b points far past every allocation
    try:
        be.flush()
    except WasmKernelError as e:
        be.program.clear()
        return f"raised: {e}"
    raise AssertionError("an out-of-bounds command ran")


@check
def malformed_program_is_an_error():
    np = _np()
    from webinfer.errors import WasmKernelError

    be = backend(debug=False)
    be.program.words.extend([99, 2])   # an unknown opcode
    be.program.n_commands += 1
    try:
        be.flush()
    except WasmKernelError as e:
        assert e.command == 0
        return f"raised: {e}"
    raise AssertionError("an unknown opcode ran")


@check
def released_blocks_wait_for_the_flush():
    np = _np()
    be = backend()
    a = be.from_numpy(np.ones((1, 16), np.float32))
    b = be.from_numpy(np.full((1, 16), 2.0, np.float32))
    c = be.add(a, b)                    # pending: writes a's block
    addr = a.addr
    del a, c
    d = be._alloc((1, 16))              # must not get a's block: the add has not run yet
    assert d.addr != addr
    be.flush()
    e = be._alloc((1, 16))              # now it may
    assert e.addr == addr, (hex(e.addr), hex(addr))


@check
def kernels_own_no_memory():
    """The module asks the dynamic linker for no memory or table and has no data section."""
    from importlib import resources

    data = resources.files("webinfer").joinpath("wasm/kernels.wasm").read_bytes()
    assert data[:8] == b"\0asm\1\0\0\0"
    # custom section 0 named dylink.0 first, with memory size 0 and table size 0
    assert data[8] == 0 and data[10:19] == b"\x08dylink.0", data[:24]
    assert data[19:25] == b"\x01\x04\x00\x00\x00\x00", data[19:25]


# ------------------------------------------------------------------ whole model


@check
def greedy_matches_numpy_default_model():
    """32 greedy tokens on the wasm backend (planned decode) equal the numpy backend's, in this Pyodide."""
    np = _np()
    from webinfer.backends.numpy_backend import NumpyBackend
    from webinfer.backends.wasm_plan import load_wasm
    from webinfer.formats.gguf import GGUFFile
    from webinfer.model import load_model
    from webinfer.runtime.session import Session
    from webinfer.tokenizer import Tokenizer

    g = GGUFFile.open(MODEL)
    tok = Tokenizer.from_gguf_metadata(g.metadata)
    wasm = load_wasm(g)
    ids = tok.encode("The capital of France is", add_special=True)

    def greedy(model, n=32):
        s = Session(model, 128)
        logits = s.prefill(ids)
        out = []
        for _ in range(n):
            out.append(int(np.argmax(logits)))
            logits = s.evaluate([out[-1]])[-1]
        return out

    t0 = time.perf_counter()
    got = greedy(wasm)
    t_wasm = time.perf_counter() - t0
    ref = greedy(load_model(g, NumpyBackend()))
    assert got == ref, f"wasm {tok.decode(got)!r} != numpy {tok.decode(ref)!r}"
    return f"{tok.decode(got)!r}; wasm {32 / t_wasm:.1f} tok/s incl. prefill"


@check
def greedy_tokens_for_cpython_comparison():
    """Greedy tokens on the wasm backend for prompts the CPython side compares with its numpy backend."""
    np = _np()
    from webinfer.backends.wasm_plan import load_wasm
    from webinfer.formats.gguf import GGUFFile
    from webinfer.runtime.session import Session
    from webinfer.tokenizer import Tokenizer

    g = GGUFFile.open(MODEL)
    tok = Tokenizer.from_gguf_metadata(g.metadata)
    model = load_wasm(g)
    out = {}
    for prompt in PROMPTS:
        ids = tok.encode(prompt, add_special=True, parse_special=True)
        s = Session(model, 512)
        logits = s.prefill(ids)
        toks = []
        for _ in range(32):
            toks.append(int(np.argmax(logits)))
            logits = s.evaluate([toks[-1]])[-1]
        out[prompt] = toks
    return out


PROMPTS = [
    "Once upon a time",
    "def fibonacci(n):",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]


@check
def prefill_logits_for_cpython_comparison():
    """A 255-token prefill (matmul tiles, attention over many positions): logits saved for the CPython side.

    numpy in Pyodide has no BLAS (this prefill takes it ~40 s), so the numpy
    reference runs in CPython (test_wasm_kernels.py), on the saved ids.
    """
    np = _np()
    from webinfer.backends.wasm_plan import load_wasm
    from webinfer.formats.gguf import GGUFFile
    from webinfer.runtime.session import Session
    from webinfer.tokenizer import Tokenizer

    g = GGUFFile.open(MODEL)
    tok = Tokenizer.from_gguf_metadata(g.metadata)
    ids = tok.encode(PREFILL_TEXT, add_special=True)[:255]
    t0 = time.perf_counter()
    logits = Session(load_wasm(g), 512).evaluate(ids, n_logits=3)
    dt = time.perf_counter() - t0
    np.savez(OUT + "/prefill.npz", ids=np.asarray(ids), logits=logits)
    return f"{len(ids)} tokens in {dt:.2f} s"


PREFILL_TEXT = " ".join(f"item {i} is a {['cat', 'dog', 'bird'][i % 3]}." for i in range(60))
OUT = "/out"   # where the test mounts a folder for arrays


# ------------------------------------------------------------------ threads


@check
async def threads_match_single_thread():
    """2 worker threads on a shared memory give bit-identical results: kernels, prefill and greedy decode."""
    np = _np()
    from webinfer.backends import wasm_threads
    from webinfer.backends.wasm_backend import WasmBackend
    from webinfer.backends.wasm_plan import load_wasm
    from webinfer.formats.gguf import GGUFFile
    from webinfer.runtime.session import Session

    pool = await wasm_threads.start_threads(2)
    try:
        rng = np.random.default_rng(11)
        st, mt = WasmBackend(debug=True), WasmBackend(debug=True, threads=pool)
        for type_name, rows, cols in [("Q4_1", 37, 96), ("Q8_0", 64, 576), ("Q4_K", 19, 768), ("Q6_K", 37, 256)]:
            raw = random_blocks(type_name, rows, cols, rng)
            info = tensor_info("w", type_name, rows, cols, raw.nbytes)
            x = rng.standard_normal((5, cols)).astype(np.float32)
            ys = [be.to_numpy(be.linear(be.from_numpy(x), be.load_matrix(info, raw.reshape(-1)))) for be in (st, mt)]
            np.testing.assert_array_equal(ys[0], ys[1])
        g = GGUFFile.open(MODEL)
        models = [load_wasm(g, threads=None), load_wasm(g, threads=pool)]
        ids = list(range(400, 470))
        outs = []
        for m in models:
            s = Session(m, 256)
            logits = [s.evaluate(ids, n_logits=2)]
            toks = []
            for _ in range(24):
                toks.append(int(np.argmax(logits[-1][-1])))
                logits.append(s.evaluate([toks[-1]]))
            outs.append((toks, np.concatenate(logits)))
        assert outs[0][0] == outs[1][0], (outs[0][0], outs[1][0])
        np.testing.assert_array_equal(outs[0][1], outs[1][1])
        return f"2 threads: {models[1].be.memory()}"
    finally:
        wasm_threads.stop_threads()


# ------------------------------------------------------------------ runner


async def main(names=None) -> None:
    """Run the checks (all, or ``names``) and print one JSON line per check (await it: some checks are async)."""
    import inspect

    for name, fn in CHECKS.items():
        if names and name not in names:
            continue
        t0 = time.perf_counter()
        try:
            detail = fn()
            if inspect.isawaitable(detail):
                detail = await detail
            rec = {"name": name, "ok": True, "detail": detail}
        except Exception as e:  # noqa: BLE001 - reported to pytest
            rec = {"name": name, "ok": False, "detail": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        print("CHECK " + json.dumps(rec), flush=True)


if __name__ == "__main__":
    import asyncio

    asyncio.run(main(sys.argv[1:]))
