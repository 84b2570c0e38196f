"""Every WGSL kernel against a numpy reference, on lavapipe through wgpu-py.

Sizes are odd on purpose (rows not a multiple of the workgroup, an odd number
of f16 halves in a section, token counts that cross a tile).  Weights are
random bytes with sane f16 scales (``synthetic.random_tensor``), so every
quant type is covered without a quantizer; the reference dequantizes the same
bytes with ``formats.quants`` (bit-exact with gguf-py) and computes in float64.

Tolerance: float32 accumulation over K <= 512 terms in another order than
the reference: |got - ref| <= 2e-5 * (1 + |ref|) elementwise for the linear
kernels, 1e-5 relative for normalisation, rotation and attention.
"""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.backends.numpy_backend import NumpyBackend, NumpyKVCache
from webinfer.backends.rope import apply_rope, rope_tables
from webinfer.backends.webgpu.kernels import kernel_source, list_kernels, preprocess
from webinfer.backends.webgpu.planner import fold, pack
from webinfer.backends.webgpu.synthetic import random_tensor
from webinfer.backends.webgpu.weights import CHUNK, repack
from webinfer.devices.base import BufferUsage, Dispatch, Readback
from webinfer.errors import GPUUnavailableError
from webinfer.formats.ggml_types import GGMLType
from webinfer.formats.quants import dequantize
from webinfer.model.args import ModelArgs, RopeConfig

FORMATS = ["F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"]
AFTER_STOP = 0x80000000


@pytest.fixture(scope="module")
def dev():
    try:
        from webinfer.devices.wgpu_native import WgpuNativeDevice

        return WgpuNativeDevice()
    except GPUUnavailableError as e:
        pytest.skip(f"no WebGPU adapter: {e}")


class Runner:
    """Compile a kernel variant, bind buffers, run one or more dispatches, read results back."""

    def __init__(self, dev):
        self.dev = dev

    def buf(self, a: np.ndarray):
        return self.dev.buffer_from(np.ascontiguousarray(a))

    def zeros(self, nbytes: int):
        return self.dev.buffer_from(np.zeros(max(4, nbytes) // 4, np.uint32))

    def uniform(self, words: np.ndarray):
        u = self.dev.create_buffer(max(256, words.size * 4), BufferUsage.UNIFORM | BufferUsage.COPY_DST)
        self.dev.write_buffer(u, words)
        return (u, 0, words.size * 4)

    def run(self, kernel: str, defines: dict, bindings, counts, read, repeat: int = 1):
        pipe = self.dev.pipeline(kernel + repr(sorted(defines.items())), kernel_source(kernel, defines))
        bg = self.dev.bind_group(pipe, bindings)
        prog = self.dev.prepare([Dispatch(pipe, bg, tuple(counts))] * repeat)
        outs = self.dev.run([prog], readback=[Readback(b, 0, n * np.dtype(dt).itemsize) for b, dt, n in read])
        return [o.view(dt) for o, (_, dt, _) in zip(outs, read)]


@pytest.fixture(scope="module")
def k(dev):
    return Runner(dev)


def _weights(fmt: str, rows: int, cols: int, seed: int):
    rng = np.random.default_rng(seed)
    raw = random_tensor(fmt, (rows, cols), rng, scale=0.5)
    ref = dequantize(raw, GGMLType[fmt], (rows, cols)).astype(np.float64)
    return raw, ref


def _cols(fmt: str) -> int:
    return 512 if fmt.endswith("_K") else 96


def _close(got, ref, tol=2e-5):
    err = np.abs(got - ref) / (1.0 + np.abs(ref))
    assert np.all(np.isfinite(got)), "non-finite output"
    assert err.max() <= tol, f"max relative error {err.max():.3g} > {tol}"


# ------------------------------------------------------------------ sources


def test_every_kernel_has_a_header_comment_and_compiles(dev):
    names = list_kernels()
    assert {"matvec_q4_1", "matmul_q6_k", "embed_q8_0", "attention_f32", "sample_f32"} <= set(names)
    for name in names:
        first = preprocess(f"{name}.wgsl").lstrip()
        raw = kernel_source.__globals__["_read"](f"{name}.wgsl")
        assert raw.startswith(f"// {name}:"), f"{name}.wgsl must open with '// {name}: what it computes'"
        assert first
        dev.pipeline("compile " + name, kernel_source(name))


def test_preprocessor_variants_and_constants():
    src = kernel_source("matvec_q4_0", {"RESIDUAL": 1, "LANES": 1})
    assert "var<storage, read> R:" in src and "const LANES: u32 = 1u;" in src
    assert "var<storage, read> R:" not in kernel_source("matvec_q4_0")
    assert "part_up" in kernel_source("matvec_q4_0", {"GATE_UP": 1})


# ------------------------------------------------------------------ matvec


@pytest.mark.parametrize("lanes", [1, 32])
@pytest.mark.parametrize("fmt", FORMATS)
def test_matvec(k, fmt, lanes):
    rows, cols = 37, _cols(fmt)
    raw, ref_w = _weights(fmt, rows, cols, seed=len(fmt) + lanes)
    x = np.random.default_rng(1).standard_normal(cols).astype(np.float32)
    resid = np.random.default_rng(2).standard_normal(rows).astype(np.float32)
    w = k.buf(repack(raw, fmt, rows, cols))
    wmat = (0, rows, cols // CHUNK, 0)
    mv = {"WG": 256, "LANES": lanes}
    params = pack(wmat, (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (rows, rows, rows, 0), 0, 0, rows, 0)
    y = k.zeros(rows * 4)
    (got,) = k.run(f"matvec_{fmt.lower()}", mv, [w, k.buf(x), y, k.uniform(params)],
                   fold(-(-rows // (256 // lanes))), [(y, np.float32, rows)])
    ref = ref_w @ x.astype(np.float64)
    _close(got, ref)
    # the RESIDUAL epilogue: y = r + W x
    (got,) = k.run(f"matvec_{fmt.lower()}", {"RESIDUAL": 1, **mv}, [w, k.buf(x), y, k.uniform(params), k.buf(resid)],
                   fold(-(-rows // (256 // lanes))), [(y, np.float32, rows)])
    _close(got, ref + resid)


@pytest.mark.parametrize("lanes", [1, 32])
def test_matvec_three_segments_and_gate_up(k, lanes):
    """Q, K, V stacked in one buffer (rows concatenated, then repacked), and gate/up with the SwiGLU epilogue."""
    fmt, cols = "Q4_0", 64
    sizes = [24, 8, 8]
    raw, ref_w = _weights(fmt, sum(sizes), cols, seed=3)
    w = k.buf(repack(raw, fmt, sum(sizes), cols))
    x = np.random.default_rng(4).standard_normal(cols).astype(np.float32)
    total = sum(sizes)
    segs = [(0, total, cols // CHUNK, r0) for r0 in (0, 24, 32)]
    y_off = (100, 0, 50, 0)                        # scattered outputs: segment i lands at y_off[i]
    params = pack(*segs, y_off, (24, 32, 40, 0), 0, 0, total, 0)
    y = k.zeros(200 * 4)
    mv = {"WG": 256, "LANES": lanes}
    (got,) = k.run("matvec_q4_0", mv, [w, k.buf(x), y, k.uniform(params)], (5, 1, 1), [(y, np.float32, 200)])
    ref = ref_w @ x
    _close(got[100:124], ref[:24])
    _close(got[0:8], ref[24:32])
    _close(got[50:58], ref[32:40])
    # gate = rows 0..19, up = rows 20..39 of one buffer
    raw, ref_w = _weights(fmt, 40, cols, seed=5)
    w = k.buf(repack(raw, fmt, 40, cols))
    params = pack((0, 40, cols // CHUNK, 0), (0, 40, cols // CHUNK, 20), (0, 0, 0, 0), (0, 0, 0, 0),
                  (20, 20, 20, 0), 0, 0, 20, 0)
    (got,) = k.run("matvec_q4_0", {"GATE_UP": 1, **mv}, [w, k.buf(x), y, k.uniform(params)], (3, 1, 1),
                   [(y, np.float32, 20)])
    g, u = ref_w[:20] @ x, ref_w[20:] @ x
    _close(got, g / (1 + np.exp(-g)) * u)


# ------------------------------------------------------------------ matmul and embedding


@pytest.mark.parametrize("variant", ["tiled", "rowwise"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_matmul(k, fmt, variant):
    rows, cols = 70, _cols(fmt)
    t = 67 if fmt == "Q4_1" else 5                 # one case crosses the 64-token tile
    raw, ref_w = _weights(fmt, rows, cols, seed=7)
    x = np.random.default_rng(8).standard_normal((t, cols)).astype(np.float32)
    resid = np.random.default_rng(9).standard_normal((t, rows)).astype(np.float32)
    w = k.buf(repack(raw, fmt, rows, cols))
    params = pack((0, rows, cols // CHUNK, 0), rows, t, cols // 4, rows, 0, 0, 0, 0)
    if variant == "rowwise":
        defines, counts = {"ROWWISE": 1}, fold(-(-rows * -(-t // 8) // 64))
    else:
        defines, counts = {}, (-(-rows // 64), -(-t // 64), 1)
    y = k.zeros(t * rows * 4)
    (got,) = k.run(f"matmul_{fmt.lower()}", {**defines, "RESIDUAL": 1},
                   [w, k.buf(x), y, k.uniform(params), k.buf(resid)], counts, [(y, np.float32, t * rows)])
    _close(got.reshape(t, rows), x.astype(np.float64) @ ref_w.T + resid)


@pytest.mark.parametrize("fmt", FORMATS)
def test_embed_rows_of_a_split_table(k, fmt):
    rows, cols = 50, _cols(fmt)
    raw, ref_w = _weights(fmt, rows, cols, seed=11)
    row_bytes = raw.size // rows
    ids = np.array([3, 49, 0, 17, 30, 3, 21], np.uint32)
    y = k.zeros(len(ids) * cols * 4)
    # the table in two parts (rows 0..29 and 30..49): each dispatch writes its tokens only
    for lo, hi in ((0, 30), (30, 50)):
        part = raw[lo * row_bytes : hi * row_bytes]
        params = pack((0, hi - lo, cols // CHUNK, 0), len(ids), lo, hi, 0)
        (got,) = k.run(f"embed_{fmt.lower()}", {}, [k.buf(repack(part, fmt, hi - lo, cols)), k.buf(ids), y,
                                                     k.uniform(params)],
                       fold(-(-len(ids) * cols // 4 // 64)), [(y, np.float32, len(ids) * cols)])
        if lo == 0:  # fill y with the first part's rows only, then the second part adds its own
            first = got.reshape(len(ids), cols).copy()
            assert np.array_equal(first[ids >= 30], np.zeros_like(first[ids >= 30]))
    np.testing.assert_array_equal(got.reshape(len(ids), cols), ref_w[ids].astype(np.float32))


# ------------------------------------------------------------------ elementwise and normalisation


def test_rmsnorm(k):
    rows, n = 3, 300
    x = np.random.default_rng(12).standard_normal((rows, n)).astype(np.float32) * 3
    g = np.random.default_rng(13).standard_normal(n).astype(np.float32)
    y = k.zeros(rows * n * 4)
    (got,) = k.run("rmsnorm_f32", {}, [k.buf(x), k.buf(g), y, k.uniform(pack(n, 0, n, 0, n, 1e-5, 0, 0))],
                   (rows, 1, 1), [(y, np.float32, rows * n)])
    ref = NumpyBackend().rmsnorm(x, g, 1e-5)
    _close(got.reshape(rows, n), ref, 1e-5)


def test_softmax_swiglu_add(k):
    rng = np.random.default_rng(14)
    x = (rng.standard_normal((2, 1000)) * 5).astype(np.float32)
    y = k.zeros(x.size * 4)
    (got,) = k.run("softmax_f32", {}, [k.buf(x), y, k.uniform(pack(1000, 0, 1000, 0, 1000, 0, 0, 0))], (2, 1, 1),
                   [(y, np.float32, x.size)])
    e = np.exp(x - x.max(-1, keepdims=True))
    _close(got.reshape(x.shape), e / e.sum(-1, keepdims=True), 1e-5)
    g = (rng.standard_normal((3, 77)) * 4).astype(np.float32)
    g[0, 0] = -200.0                               # exp overflows: silu(-200) * u must be -0.0, not NaN
    u = rng.standard_normal((3, 77)).astype(np.float32)
    y = k.zeros(g.size * 4)
    (got,) = k.run("swiglu_f32", {}, [k.buf(g), k.buf(u), y, k.uniform(pack(77, 3, 0, 77, 0, 77, 0, 77))],
                   fold(-(-g.size // 256)), [(y, np.float32, g.size)])
    _close(got.reshape(g.shape), NumpyBackend().swiglu(g, u), 1e-5)
    bias = rng.standard_normal(77).astype(np.float32)
    (got,) = k.run("add_f32", {}, [k.buf(g), k.buf(bias), y, k.uniform(pack(77, 3, 0, 77, 0, 0, 0, 77))],
                   fold(-(-g.size // 256)), [(y, np.float32, g.size)])
    np.testing.assert_array_equal(got.reshape(g.shape), g + bias)


# ------------------------------------------------------------------ rotary embedding, KV cache, attention


def _args(h=4, hkv=2, hd=64, n_rot=None, style="norm") -> ModelArgs:
    return ModelArgs(arch="llama", n_layers=1, dim=h * hd, n_heads=h, n_kv_heads=hkv, ffn_dim=64, vocab_size=10,
                     context_length=128, norm_eps=1e-5, head_dim=hd,
                     rope=RopeConfig(n_dims=n_rot or hd, theta=10000.0, style=style))


def _step(pos0: int, t: int):
    return np.array([pos0, t, 0, 0], np.uint32)


@pytest.mark.parametrize("style,n_rot", [("norm", 64), ("neox", 64), ("norm", 32)])
def test_rope_store(k, style, n_rot):
    a = _args(n_rot=n_rot, style=style)
    t, pos0, cap = 3, 5, 16
    rng = np.random.default_rng(15)
    qkv = rng.standard_normal((t, (a.n_heads + 2 * a.n_kv_heads) * a.head_dim)).astype(np.float32)
    qd, kd = a.q_dim, a.kv_dim
    cos, sin = rope_tables(a.rope, cap)
    table = np.concatenate([cos.reshape(-1), sin.reshape(-1)])
    qo = k.zeros(t * qd * 4)
    kc = k.zeros(a.n_kv_heads * cap * a.head_dim * 4)
    vc = k.zeros(a.n_kv_heads * cap * a.head_dim * 4)
    src = k.buf(qkv)
    stride = qd + 2 * kd
    params = pack(t, a.n_heads, a.n_kv_heads, a.n_kv_heads, a.head_dim, n_rot, 0 if style == "norm" else 1, 1,
                  0, stride, qd, stride, qd + kd, stride, cap, cos.size)
    n = t * (a.n_heads + 2 * a.n_kv_heads) * a.head_dim
    q_got, k_got, v_got = k.run("rope_store_f32", {}, [src, src, src, qo, kc, vc, k.buf(table), k.buf(_step(pos0, t)),
                                                       k.uniform(params)], fold(-(-n // 64)),
                                [(qo, np.float32, t * qd), (kc, np.float32, kc.size // 4), (vc, np.float32, vc.size // 4)])
    pos = slice(pos0, pos0 + t)
    q_ref = apply_rope(qkv[:, :qd].reshape(t, a.n_heads, -1).copy(), cos[pos], sin[pos], style)
    k_ref = apply_rope(qkv[:, qd : qd + kd].reshape(t, a.n_kv_heads, -1).copy(), cos[pos], sin[pos], style)
    _close(q_got.reshape(t, a.n_heads, -1), q_ref, 1e-5)
    kc3 = k_got.reshape(a.n_kv_heads, cap, -1)
    _close(kc3[:, pos].transpose(1, 0, 2), k_ref, 1e-5)
    assert not kc3[:, :pos0].any() and not kc3[:, pos0 + t :].any()       # nothing else written
    np.testing.assert_array_equal(v_got.reshape(a.n_kv_heads, cap, -1)[:, pos].transpose(1, 0, 2),
                                  qkv[:, qd + kd :].reshape(t, a.n_kv_heads, -1))


@pytest.mark.parametrize("t,pos0,splits,hd", [(1, 36, 3, 64), (1, 0, 4, 64), (5, 7, 1, 64), (4, 70, 2, 128)])
def test_attention_split_k(k, t, pos0, splits, hd):
    """Causal GQA attention over a cache of pos0 + t keys, split S ways and combined, vs the numpy backend."""
    a = _args(h=4, hkv=2, hd=hd)
    cap = 96
    rng = np.random.default_rng(16 + t)
    # the numpy backend fills its cache from earlier tokens, then attends for t new ones
    npc = NumpyKVCache(a, cap)
    prev_k = rng.standard_normal((pos0, a.kv_dim)).astype(np.float32)
    prev_v = rng.standard_normal((pos0, a.kv_dim)).astype(np.float32)
    if pos0:
        npc.store(0, 0, prev_k.reshape(pos0, a.n_kv_heads, hd), prev_v.reshape(pos0, a.n_kv_heads, hd))
    q = (rng.standard_normal((t, a.q_dim)) * 2).astype(np.float32)
    kk = rng.standard_normal((t, a.kv_dim)).astype(np.float32)
    vv = rng.standard_normal((t, a.kv_dim)).astype(np.float32)
    ref = NumpyBackend().attention(q.reshape(t, a.n_heads, hd), kk, vv, npc, 0, pos0, a)
    # the GPU cache: [Hkv, cap, hd] with all pos0 + t keys already stored
    kc = np.zeros((a.n_kv_heads, cap, hd), np.float32)
    vc = np.zeros((a.n_kv_heads, cap, hd), np.float32)
    n = pos0 + t
    kc[:, :n] = np.concatenate([prev_k, kk]).reshape(n, a.n_kv_heads, hd).transpose(1, 0, 2)
    vc[:, :n] = np.concatenate([prev_v, vv]).reshape(n, a.n_kv_heads, hd).transpose(1, 0, 2)
    part = k.zeros(t * a.n_heads * splits * (hd + 2) * 4)
    step = k.buf(_step(pos0, t))
    params = pack(a.n_heads, a.n_rep, hd, cap, float(1 / np.sqrt(hd)), a.q_dim, 0, 0)
    k.run("attention_f32", {}, [k.buf(q), k.buf(kc), k.buf(vc), part, step, k.uniform(params)],
          (a.n_heads, t, splits), [])
    y = k.zeros(t * a.q_dim * 4)
    (got,) = k.run("attention_combine_f32", {}, [part, y, k.uniform(pack(a.n_heads, hd, splits, a.q_dim, 0, 0, 0, 0))],
                   (a.n_heads, t, 1), [(y, np.float32, t * a.q_dim)])
    _close(got.reshape(t, -1), ref, 1e-5)


# ------------------------------------------------------------------ sampling


def _sampling_buffers(k, logits):
    step = k.buf(np.array([10, 1, 0, 0], np.uint32))
    ids = k.zeros(64)
    out = k.zeros(1024 * 4)
    return k.buf(logits.astype(np.float32)), step, ids, out


def test_argmax_commits_the_token_and_advances_the_step(k):
    v = 1001
    logits = np.random.default_rng(17).standard_normal(v).astype(np.float32)
    logits[[700, 123, 900]] = 9.0                  # a three-way tie: numpy's argmax takes the lowest index
    lg, step, ids, out = _sampling_buffers(k, logits)
    params = pack(v, 0, 1024, 2, (5, 123, 0, 0), (0, 0, 0, 0))   # stop ids 5 and 123
    s, i, o = k.run("argmax_f32", {}, [lg, step, ids, out, k.uniform(params)], (1, 1, 1),
                    [(step, np.uint32, 4), (ids, np.uint32, 1), (out, np.uint32, 3)], repeat=3)
    assert int(np.argmax(logits)) == 123
    assert list(s) == [12 + 1, 1, 3, 1]           # pos0 10 -> 13 over three samples, 3 sampled, done (123 stops)
    assert i[0] == 123
    assert list(o) == [123, 123 | AFTER_STOP, 123 | AFTER_STOP]   # after the stop token: marked


def _sample_params(v, top_k=40, top_p=1.0, min_p=0.0, temp=1.0, seed=1234):
    return pack(v, 0, 1024, 0, (0, 0, 0, 0), (0, 0, 0, 0), top_k, float(top_p), float(min_p), float(1 / temp), seed,
                0, 0, 0)


def test_sample_top_k_distribution_and_seed(k):
    v = 3000
    logits = np.full(v, -5.0, np.float32)
    logits[[10, 2000, 77, 1500]] = [3.0, 2.5, 2.0, 1.0]
    n = 600
    lg, step, ids, out = _sampling_buffers(k, logits)
    (draws,) = k.run("sample_f32", {}, [lg, step, ids, out, k.uniform(_sample_params(v, top_k=3))], (1, 1, 1),
                     [(out, np.uint32, n)], repeat=n)
    counts = {t: int((draws == t).sum()) for t in (10, 2000, 77)}
    assert sum(counts.values()) == n               # top-3 only
    p = np.exp([3.0, 2.5, 2.0])
    p /= p.sum()
    for (tok, c), pi in zip(counts.items(), p):   # within 5 sigma of the binomial
        assert abs(c - n * pi) < 5 * np.sqrt(n * pi * (1 - pi)), counts
    # same seed, same draws; another seed, other draws
    lg, step, ids, out = _sampling_buffers(k, logits)
    (again,) = k.run("sample_f32", {}, [lg, step, ids, out, k.uniform(_sample_params(v, top_k=3))], (1, 1, 1),
                     [(out, np.uint32, 50)], repeat=50)
    np.testing.assert_array_equal(again, draws[:50])
    lg, step, ids, out = _sampling_buffers(k, logits)
    (other,) = k.run("sample_f32", {}, [lg, step, ids, out, k.uniform(_sample_params(v, top_k=3, seed=99))],
                     (1, 1, 1), [(out, np.uint32, 50)], repeat=50)
    assert not np.array_equal(other, draws[:50])


@pytest.mark.parametrize("top,kw,allowed", [
    ([3.0, 2.8, 2.0], {"top_k": 1}, {10}),                      # top-1 is greedy
    ([3.0, 2.0, 1.5], {"top_k": 40, "top_p": 0.5}, {10}),        # p(10) = 0.63 alone reaches top_p
    ([3.0, 2.8, 2.0], {"top_k": 40, "top_p": 0.5}, {10, 2000}),  # p(10) = 0.46: the next one is needed
    ([3.0, 2.8, 2.0], {"top_k": 40, "min_p": 0.7}, {10, 2000}),  # p(77) / p(10) = e^-1 < 0.7
    ([3.0, 2.8, 2.0], {"top_k": 256, "temp": 0.02}, {10}),       # cold: the top token
])
def test_sample_truncation(k, top, kw, allowed):
    v = 5000
    logits = np.random.default_rng(18).uniform(-9, -8, v).astype(np.float32)
    logits[[10, 2000, 77]] = top
    lg, step, ids, out = _sampling_buffers(k, logits)
    (draws,) = k.run("sample_f32", {}, [lg, step, ids, out, k.uniform(_sample_params(v, **kw))], (1, 1, 1),
                     [(out, np.uint32, 100)], repeat=100)
    assert set(draws.tolist()) <= allowed, set(draws.tolist())
    if len(allowed) > 1:
        assert set(draws.tolist()) == allowed


@pytest.mark.parametrize("defines", [{"TWO_ROWS": 1}, {"TWO_ROWS": 1, "UNROLL2": 1}, {"UNROLL2": 1},
                                     {"TWO_ROWS": 1, "UNROLL2": 1, "XSHARED": 1, "NORM": 1}])
@pytest.mark.parametrize("fmt", ["Q4_1", "Q4_K"])
def test_matvec_variants(k, fmt, defines):
    """Two rows per lane group, two chunks per iteration, x staged and RMS-normalised in workgroup memory."""
    rows, cols = 38, _cols(fmt) + (256 if fmt == "Q4_K" else 96)   # several chunks per lane
    raw, ref_w = _weights(fmt, rows, cols, seed=21)
    rng = np.random.default_rng(22)
    x = (rng.standard_normal(cols) * 2).astype(np.float32)
    g = rng.standard_normal(cols).astype(np.float32)
    w = k.buf(repack(raw, fmt, rows, cols))
    d = {"WG": 64, "LANES": 8, **defines}
    if "XSHARED" in d:
        d["XVEC"] = cols // 4
    params = pack((0, rows, cols // CHUNK, 0), (0,) * 4, (0,) * 4, (0,) * 4, (rows, rows, rows, 0), 0, 0, rows,
                  1e-5)
    y = k.zeros(rows * 4)
    binds = {0: w, 1: k.buf(x), 2: y, 3: k.uniform(params)}
    if "NORM" in d:
        binds[5] = k.buf(g)
    per_wg = 8 * (2 if "TWO_ROWS" in d else 1)
    (got,) = k.run(f"matvec_{fmt.lower()}", d, binds, fold(-(-rows // per_wg)), [(y, np.float32, rows)])
    xr = x.astype(np.float64)
    if "NORM" in d:
        xr = (x * np.float32(1 / np.sqrt(np.mean(x * x) + 1e-5)) * g).astype(np.float64)
    _close(got, ref_w @ xr, 1e-4 if "NORM" in d else 2e-5)
