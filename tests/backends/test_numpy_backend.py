"""numpy backend ops against direct, slow formulas."""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.backends.numpy_backend import NumpyBackend, NumpyKVCache
from webinfer.backends.rope import apply_rope, rope_tables
from webinfer.model.args import ModelArgs, RopeConfig

rng = np.random.default_rng(0)


def tiny_args(**kw) -> ModelArgs:
    base = dict(arch="llama", n_layers=1, dim=48, n_heads=6, n_kv_heads=2, ffn_dim=32, vocab_size=50,
                context_length=64, norm_eps=1e-5, rope=RopeConfig(n_dims=8, theta=10000.0))
    base.update(kw)
    return ModelArgs(**base)


@pytest.mark.parametrize("style", ["norm", "neox"])
def test_rope_matches_complex_rotation(style):
    cfg = RopeConfig(n_dims=8, theta=500.0, style=style)
    cos, sin = rope_tables(cfg, 16)
    x = rng.standard_normal((5, 3, 10)).astype(np.float32)   # head_dim 10, rotate the first 8
    pos = np.arange(7, 12)
    got = apply_rope(x.copy(), cos[pos], sin[pos], style)
    want = x.astype(np.float64).copy()
    for t, p in enumerate(pos):
        for i in range(4):
            theta = p * 500.0 ** (-2 * i / 8)
            a, b = (2 * i, 2 * i + 1) if style == "norm" else (i, i + 4)
            za = x[t, :, a] + 1j * x[t, :, b]
            r = za * np.exp(1j * theta)
            want[t, :, a], want[t, :, b] = r.real, r.imag
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(got[..., 8:], x[..., 8:])  # dims past n_dims untouched


def test_rope_linear_scaling_divides_positions():
    base = RopeConfig(n_dims=8)
    lin = RopeConfig(n_dims=8, scaling="linear", factor=4.0)
    c1, s1 = rope_tables(base, 64)
    c4, s4 = rope_tables(lin, 64)
    np.testing.assert_allclose(c4[8], c1[2], atol=1e-6)
    np.testing.assert_allclose(s4[40], s1[10], atol=1e-6)


def test_rope_yarn_factor_one_is_plain():
    plain = rope_tables(RopeConfig(n_dims=16, n_ctx_orig=64), 32)
    yarn = rope_tables(RopeConfig(n_dims=16, scaling="yarn", factor=1.0, n_ctx_orig=64), 32)
    np.testing.assert_allclose(yarn[0], plain[0], atol=1e-6)


def test_rope_freq_factors_divide_frequencies():
    ff = np.array([1.0, 2.0, 4.0, 8.0], dtype=np.float32)
    c, s = rope_tables(RopeConfig(n_dims=8), 20, ff)
    theta = 5 * 10000.0 ** (-2 * np.arange(4) / 8) / ff
    np.testing.assert_allclose(c[5], np.cos(theta), atol=1e-6)


def naive_attention(q, keys, vals, pos0, n_rep):
    # q [T, H, hd]; keys/vals [Hkv, n, hd]
    t, h, hd = q.shape
    out = np.zeros((t, h, hd))
    for i in range(t):
        for head in range(h):
            kv = head // n_rep
            n = pos0 + i + 1
            sc = keys[kv, :n] @ q[i, head] / np.sqrt(hd)
            p = np.exp(sc - sc.max())
            p /= p.sum()
            out[i, head] = p @ vals[kv, :n]
    return out.reshape(t, h * hd)


@pytest.mark.parametrize("pos0,t", [(0, 1), (0, 7), (5, 1), (5, 4)])
def test_attention_is_causal_gqa(pos0, t):
    args = tiny_args()
    be = NumpyBackend()
    cache = NumpyKVCache(args, 32)
    hd, hkv = args.head_dim, args.n_kv_heads
    if pos0:
        cache.store(0, 0, rng.standard_normal((pos0, hkv, hd)).astype(np.float32),
                    rng.standard_normal((pos0, hkv, hd)).astype(np.float32))
    q = rng.standard_normal((t, args.n_heads, hd)).astype(np.float32)
    k = rng.standard_normal((t, hkv * hd)).astype(np.float32)
    v = rng.standard_normal((t, hkv * hd)).astype(np.float32)
    got = be.attention(q, k, v, cache, 0, pos0, args)
    want = naive_attention(q, cache.k[0], cache.v[0], pos0, args.n_rep)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_kv_cache_grows_and_keeps_contents():
    args = tiny_args()
    cache = NumpyKVCache(args, 1000)
    k = rng.standard_normal((70, 2, 8)).astype(np.float32)
    cache.store(0, 0, k, k)
    cache.store(0, 70, k[:5], k[:5])
    assert cache.k[0].shape[1] >= 75
    np.testing.assert_array_equal(cache.k[0][:, :70], k.transpose(1, 0, 2))
    assert cache.nbytes() > 0


def test_rmsnorm_and_swiglu():
    be = NumpyBackend()
    x = rng.standard_normal((3, 16)).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32)
    want = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(be.rmsnorm(x, w, 1e-5), want, rtol=1e-5)
    g = np.array([-100.0, -1.0, 0.0, 2.0], dtype=np.float32)
    u = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    np.testing.assert_allclose(be.swiglu(g, u), g / (1 + np.exp(-g.astype(np.float64))) * u, rtol=1e-6, atol=1e-30)
