"""Compressed KV cache on the numpy backend: f16, int8, int4."""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.backends.numpy_backend import KV_DTYPES, NumpyBackend, NumpyKVCache, kv_bytes_per_token
from webinfer.errors import InvalidArgumentError
from webinfer.formats.gguf import GGUFFile
from webinfer.model import load_model
from webinfer.model.args import ModelArgs, RopeConfig
from webinfer.quant.perplexity import perplexity
from webinfer.runtime.session import Session

# relative squared error of what comes back, per storage type
# (synthetic vectors with a 20x outlier channel; measured: 0, 1e-7, 2.8e-4, 1.2e-2)
MAX_REL_ERR = {"f32": 0.0, "f16": 1e-6, "int8": 5e-4, "int4": 2.5e-2}


def _args(head_dim=64, n_kv=3, n_heads=9, n_layers=2) -> ModelArgs:
    return ModelArgs(arch="llama", n_layers=n_layers, dim=n_heads * head_dim, n_heads=n_heads, n_kv_heads=n_kv,
                     ffn_dim=8, vocab_size=8, context_length=4096, norm_eps=1e-5, rope=RopeConfig(head_dim))


def _kv(rng, t, args, outlier=20.0):
    x = rng.standard_normal((t, args.n_kv_heads, args.head_dim)).astype(np.float32)
    x[:, :, 5] *= outlier                                # an outlier channel, as RoPE'd keys have
    return x


@pytest.mark.parametrize("kv_dtype", KV_DTYPES)
def test_store_and_read(kv_dtype):
    args = _args()
    rng = np.random.default_rng(0)
    cache = NumpyKVCache(args, 300, kv_dtype)
    ks, vs = [], []
    for pos0, t in [(0, 70), (70, 1), (71, 1), (72, 100)]:     # prefill, two decode steps, a long chunk
        k, v = _kv(rng, t, args), _kv(rng, t, args)
        cache.store(1, pos0, k, v)
        ks.append(k)
        vs.append(v)
    want_k = np.concatenate(ks).transpose(1, 0, 2)
    want_v = np.concatenate(vs).transpose(1, 0, 2)
    keys, kscale, vals, vscale = cache.read(1, 172)
    keys = keys.astype(np.float32) * (1 if kscale is None else kscale[..., None])
    vals = vals.astype(np.float32) * (1 if vscale is None else vscale[..., None])
    for got, want in ((keys, want_k), (vals, want_v)):
        assert got.shape == want.shape
        assert ((got - want) ** 2).sum() / (want**2).sum() <= MAX_REL_ERR[kv_dtype]
    assert cache.nbytes() >= 172 * kv_bytes_per_token(args, kv_dtype) // args.n_layers


def test_bytes_per_token_and_context_in_a_budget():
    args = _args(n_layers=30)                                    # the default model's cache shape
    per = {d: kv_bytes_per_token(args, d) for d in KV_DTYPES}
    assert per == {"f32": 46080, "f16": 23040, "int8": 11880, "int4": 7200}
    budget = 64 << 20
    ctx = {d: budget // per[d] for d in KV_DTYPES}
    assert ctx["int8"] / ctx["f32"] > 3.85 and ctx["int4"] / ctx["f32"] > 6.3
    full = NumpyKVCache(args, 128, "int8")
    for layer in range(30):
        full.store(layer, 0, np.zeros((128, 3, 64), np.float32), np.zeros((128, 3, 64), np.float32))
    assert full.nbytes() == 128 * per["int8"]


@pytest.mark.parametrize("kv_dtype", ["f16", "int8", "int4"])
def test_attention_matches_f32(kv_dtype):
    args = _args(n_layers=1)
    rng = np.random.default_rng(1)
    be = NumpyBackend()
    outs = {}
    for d in ("f32", kv_dtype):
        cache = NumpyKVCache(args, 64, d)
        r = np.random.default_rng(2)
        k0, v0 = _kv(r, 40, args, 3.0), _kv(r, 40, args, 3.0)
        q = r.standard_normal((40, args.n_heads, args.head_dim)).astype(np.float32) * 0.3
        be.attention(q, k0.reshape(40, -1), v0.reshape(40, -1), cache, 0, 0, args)      # prefill
        q1 = r.standard_normal((1, args.n_heads, args.head_dim)).astype(np.float32) * 0.3
        k1, v1 = _kv(r, 1, args, 3.0), _kv(r, 1, args, 3.0)
        outs[d] = be.attention(q1, k1.reshape(1, -1), v1.reshape(1, -1), cache, 0, 40, args)  # one decode step
    tol = {"f16": 5e-3, "int8": 5e-2, "int4": 0.3}[kv_dtype]
    np.testing.assert_allclose(outs[kv_dtype], outs["f32"], atol=tol * np.abs(outs["f32"]).max())
    del rng


def test_bad_kv_dtype():
    with pytest.raises(InvalidArgumentError, match="unknown KV cache type 'int3'.*f32, f16, int8, int4"):
        NumpyKVCache(_args(), 8, "int3")
    with pytest.raises(InvalidArgumentError, match="head_dim divisible by 32"):
        NumpyKVCache(_args(head_dim=48), 8, "int4")
    assert NumpyKVCache(_args(), 8, np.float16).kv_dtype == "f16"


def test_session_and_perplexity_with_a_compressed_cache(tiny_tied):
    with GGUFFile.open(tiny_tied) as g:
        model = load_model(g, NumpyBackend())
    ids = np.random.default_rng(3).integers(0, 128, 4 * 48).tolist()
    ref = Session(model, 64).evaluate(ids[:40], n_logits=40)
    results = {}
    for d in KV_DTYPES:
        s = Session(model, 64, kv_dtype=d)
        assert s.cache.kv_dtype == d
        got = s.evaluate(ids[:40], n_logits=40)
        np.testing.assert_allclose(got, ref, atol={"f32": 0, "f16": 1e-2, "int8": 5e-2, "int4": 1.0}[d])
        results[d] = perplexity(model, ids, ctx=48, kv_dtype=d).ppl
    assert abs(results["int8"] / results["f32"] - 1) < 0.01
    assert abs(results["int4"] / results["f32"] - 1) < 0.05


@pytest.mark.parametrize("spec", ["Q4_K", "Q8_0", "IQ4_NL"])
def test_quantized_resident_weights(tiny_tied, tmp_path, spec, monkeypatch):
    """weights="quantized": same logits as float32 weights, matrices never expanded whole."""
    import webinfer.backends.numpy_backend as nb
    from webinfer.quant.pipeline import quantize_model

    path = tmp_path / f"{spec}.gguf"
    quantize_model(tiny_tied, path, spec)
    monkeypatch.setattr(nb, "QUANTIZED_CHUNK_ELEMS", 1000)        # several chunks even for tiny matrices
    ids = [5, 9, 77, 3, 120, 64]
    with GGUFFile.open(path) as g:
        full = Session(load_model(g, NumpyBackend()), 16).evaluate(ids, n_logits=6)
        model = load_model(g, NumpyBackend(weights="quantized"))
    assert isinstance(model.layers[0].wq, nb.QuantizedTable) and isinstance(model.output, nb.QuantizedTable)
    np.testing.assert_allclose(Session(model, 16).evaluate(ids, n_logits=6), full, rtol=1e-5, atol=1e-4)
    with pytest.raises(InvalidArgumentError, match="weights must be"):
        NumpyBackend(weights="int3")
