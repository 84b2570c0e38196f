"""The WebGPU backend end to end on lavapipe: the model graph, plans, GPU sampling, limits and faults.

Tiny synthetic models (random quantized weights, every supported type, the
qwen2 variant with biases and NeoX RoPE) check the planned graph against the
numpy backend; the default model checks greedy generation token for token;
counters on the device prove one submit and no per-op Python work per token;
a destroyed device mid-generation must not change the text.
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from webinfer.backends.numpy_backend import NumpyBackend
from webinfer.backends.webgpu import BackendFallbackWarning, PlannedModel, WebGPUBackend, load_planned
from webinfer.backends.webgpu.synthetic import write_synthetic_llama
from webinfer.backends.webgpu.weights import repack
from webinfer.capability import get_profile
from webinfer.errors import GPUUnavailableError
from webinfer.formats.gguf import GGUFFile
from webinfer.model import load_model
from webinfer.runtime.engine import Engine
from webinfer.runtime.session import Session

PROMPT = "The capital of France is"
N_GREEDY = 32


@pytest.fixture(scope="module")
def device():
    try:
        from webinfer.devices.wgpu_native import WgpuNativeDevice

        return WgpuNativeDevice()
    except GPUUnavailableError as e:
        pytest.skip(f"no WebGPU adapter: {e}")


def _backend(device, profile="software-adapter", **kw):
    p = get_profile(profile)
    args = dict(attn_splits=p.attn_splits, matvec_lanes=p.matvec_lanes, matvec_wg=p.matvec_workgroup,
                matmul=p.matmul)
    args.update(kw)
    return WebGPUBackend(device, **args)


def _compare(g: GGUFFile, be: WebGPUBackend, steps: int = 3, tol: float = 2e-4):
    """Prefill 7 tokens then decode a few, both backends; logits must agree to ``tol`` of their scale."""
    mn, mg = load_model(g, NumpyBackend()), load_model(g, be)
    cn, rn = mn.new_cache(64)
    cg, rg = mg.new_cache(64)
    ids = [3, 17, 42, 5, 60, 23, 9]
    ln, lg = mn.forward(ids, 0, cn, rn), mg.forward(ids, 0, cg, rg)
    for i in range(steps + 1):
        scale = np.abs(ln).max()
        assert np.abs(ln - lg).max() <= tol * scale, f"step {i}: {np.abs(ln - lg).max()} vs scale {scale}"
        tok = int(np.argmax(ln))
        pos = len(ids) + i
        ln, lg = mn.forward([tok], pos, cn, rn), mg.forward([tok], pos, cg, rg)


@pytest.mark.parametrize("fmt", ["F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K"])
def test_tiny_model_matches_numpy(device, tmp_path, fmt):
    k = fmt.endswith("_K")
    path = write_synthetic_llama(tmp_path / "m.gguf", dim=256 if k else 96, n_layers=2, n_heads=4 if k else 3,
                                 n_kv_heads=2 if k else 1, ffn=512 if k else 160, vocab=200, fmt=fmt,
                                 embed_fmt="Q8_0" if k else fmt, context_length=64, seed=len(fmt))
    with GGUFFile.open(path) as g:
        _compare(g, _backend(device))


@pytest.mark.parametrize("profile", ["software-adapter", "native-gpu"])
def test_qwen2_biases_neox_and_both_kernel_shapes(device, tmp_path, profile):
    """Biases (unfused linears), NeoX RoPE, an untied head; the GPU profile's kernels (32 lanes, tiled) too."""
    path = write_synthetic_llama(tmp_path / "q.gguf", dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn=192,
                                 vocab=160, fmt="Q8_0", arch="qwen2", context_length=64)
    with GGUFFile.open(path) as g:
        _compare(g, _backend(device, profile))


def test_tensors_larger_than_a_binding_are_split(device, tmp_path):
    path = write_synthetic_llama(tmp_path / "s.gguf", dim=128, n_layers=1, n_heads=4, n_kv_heads=2, ffn=256,
                                 vocab=500, fmt="Q4_1", context_length=64)
    real = device.limits["maxStorageBufferBindingSize"]
    device.limits["maxStorageBufferBindingSize"] = 16 << 10     # 16 KiB: the 500-row tables split in 4
    try:
        be = _backend(device)
        with GGUFFile.open(path) as g:
            model = load_model(g, be)
            assert len(model.output.parts) >= 3 and len(model.layers[0].w_gate.parts) >= 2
            _compare(g, be, steps=1)
    finally:
        device.limits["maxStorageBufferBindingSize"] = real


def test_stacked_weights_are_the_rows_concatenated(device, tmp_path):
    path = write_synthetic_llama(tmp_path / "w.gguf", dim=96, n_layers=1, n_heads=3, n_kv_heads=1, ffn=128,
                                 vocab=64, fmt="Q5_0", context_length=64)
    be = _backend(device)
    with GGUFFile.open(path) as g:
        model = load_model(g, be)
        L = model.layers[0]
        assert be.stack_groups([[L.wq, L.wk, L.wv]]) == [True]
        raw = np.concatenate([g.raw(f"blk.0.attn_{x}.weight").reshape(-1) for x in "qkv"])
        want = repack(raw, "Q5_0", 96 + 32 + 32, 96)
        buf = L.wq.parts[0].buffer
        assert L.wk.parts[0].buffer is buf and L.wv.parts[0].buf_row0 == 128
        got = device.read_buffer(buf).view(np.uint32)
        np.testing.assert_array_equal(got[: want.size], want)


# ------------------------------------------------------------------ the default model


_NUMPY_TOKENS: dict = {}


def numpy_greedy_tokens(gguf, model, n: int = N_GREEDY) -> list[int]:
    """Greedy tokens of the numpy backend for PROMPT, computed once per test run (the browser test uses them too)."""
    key = (id(model), n)
    if key not in _NUMPY_TOKENS:
        from webinfer.runtime.generate import generate
        from webinfer.runtime.sampler import SamplingParams
        from webinfer.tokenizer import Tokenizer

        tok = Tokenizer.from_gguf_metadata(gguf.metadata)
        ids = tok.encode(PROMPT, add_special=True)
        _NUMPY_TOKENS[key] = [c.token_id for c in generate(Session(model, 256), tok, ids, max_tokens=n,
                                                           sampling=SamplingParams(temperature=0), ignore_eos=True)
                              if c.token_id is not None]
    return _NUMPY_TOKENS[key]


@pytest.fixture(scope="module")
def numpy_tokens(default_gguf, default_model):
    """Greedy tokens of the numpy backend (the model conftest loads once per run)."""
    return numpy_greedy_tokens(default_gguf, default_model)


@pytest.fixture(scope="module")
def gpu_engine(default_gguf, device):
    return Engine(default_gguf, backend="webgpu", n_ctx=256)


def _tokens(engine, prompt=PROMPT, n=N_GREEDY, **kw):
    return [c.token_id for c in engine.stream(prompt, max_tokens=n, temperature=0, ignore_eos=True, **kw)
            if c.token_id is not None]


@pytest.mark.model
def test_greedy_32_tokens_identical_to_numpy(gpu_engine, numpy_tokens):
    assert isinstance(gpu_engine.model, PlannedModel)
    t = time.perf_counter()
    got = _tokens(gpu_engine)
    dt = time.perf_counter() - t
    assert got == numpy_tokens, (got, numpy_tokens)
    text = gpu_engine.tokenizer.decode(got)
    assert text.startswith(" Paris")
    print(f"\n[lavapipe] {N_GREEDY} greedy tokens in {dt:.2f} s ({gpu_engine.last_stats.decode_tokens_per_s:.1f} "
          f"tok/s decode)")


@pytest.mark.model
def test_one_submit_and_no_python_graph_per_token(gpu_engine):
    """Steady-state decode: per token one run() (one submit; one JS crossing in the browser), one 4-byte read,
    no writes, and nothing created; the model's Python forward is not run either."""
    pm = gpu_engine.model
    calls = []
    orig = pm.model.forward
    pm.model.forward = lambda *a, **k: (calls.append(1), orig(*a, **k))[1]
    try:
        stream = gpu_engine.stream(PROMPT, max_tokens=12, temperature=0, ignore_eos=True)
        for _ in range(3):                         # prefill, first decode steps
            next(stream)
        before = pm.device.stats.snapshot()
        n = sum(1 for c in stream if c.token_id is not None)
        d = pm.device.stats - before
    finally:
        pm.model.forward = orig
    assert n == 9
    assert d.submits == n and d.runs == n, d
    assert d.reads == n and d.bytes_read == 4 * n, d
    assert d.writes == 0 and d.bytes_written == 0, d
    assert d.buffers_created == d.bind_groups_created == d.pipelines_created == 0, d
    plan = pm._plans[(1, 1, id(pm._cache))]
    assert d.dispatches == n * (plan.n_dispatches + 1)            # the step + the sampling kernel
    assert plan.n_dispatches <= 9 * pm.args.n_layers + 4           # fused: 9 per layer
    assert calls == []                                             # replayed, never re-recorded


@pytest.mark.model
def test_readback_batch_runs_ahead_with_the_same_tokens(gpu_engine, numpy_tokens):
    pm = gpu_engine.model
    pm.readback_batch = 4
    try:
        before = pm.device.stats.snapshot()
        got = _tokens(gpu_engine)
        d = pm.device.stats - before
    finally:
        pm.readback_batch = 1
    assert got == numpy_tokens
    assert d.submits <= N_GREEDY // 4 + 3, d                       # k steps per submit


@pytest.mark.model
def test_seeded_gpu_sampling_is_reproducible(gpu_engine):
    kw = dict(max_tokens=12, temperature=0.9, top_k=40, top_p=0.95, seed=7, ignore_eos=True)
    pm = gpu_engine.model
    before = pm.device.stats.snapshot()
    a = [c.token_id for c in gpu_engine.stream(PROMPT, **kw) if c.token_id is not None]
    assert (pm.device.stats - before).bytes_read == 4 * 12         # sampled on the GPU, 4 bytes a token
    b = [c.token_id for c in gpu_engine.stream(PROMPT, **kw) if c.token_id is not None]
    c = [c.token_id for c in gpu_engine.stream(PROMPT, **{**kw, "seed": 8}) if c.token_id is not None]
    assert a == b and a != c


@pytest.mark.model
def test_cpu_only_sampling_settings_read_the_logits(gpu_engine):
    """A repetition penalty (needs the history) or top_k=0 samples on the CPU from read-back logits."""
    pm = gpu_engine.model
    before = pm.device.stats.snapshot()
    out = [c.token_id for c in gpu_engine.stream(PROMPT, max_tokens=4, temperature=0, repetition_penalty=1.3)
           if c.token_id is not None]
    assert len(out) == 4
    assert (pm.device.stats - before).bytes_read >= 4 * 4 * pm.args.vocab_size


@pytest.mark.model
def test_device_lost_mid_generation_falls_back_to_numpy(default_gguf, device, numpy_tokens):
    engine = Engine(default_gguf, backend="webgpu", n_ctx=256)
    pm = engine.model
    got = []
    n = 20
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, c in enumerate(engine.stream(PROMPT, max_tokens=n, temperature=0, ignore_eos=True)):
            if c.token_id is not None:
                got.append(c.token_id)
            if i == 8:
                pm.device.simulate_loss("test: device destroyed")
    assert got == numpy_tokens[:n]                               # the text so far kept, the rest identical
    assert pm.fallback_reason and "lost" in pm.fallback_reason
    assert any(issubclass(w.category, BackendFallbackWarning) for w in caught)
    assert pm.backend_name.startswith("numpy")


def test_no_adapter_falls_back_at_load(tmp_path, monkeypatch):
    import webinfer.devices as devices

    def no_gpu(*a, **k):
        raise GPUUnavailableError("no adapter (test)")

    monkeypatch.setattr(devices, "open_device", no_gpu)
    path = write_synthetic_llama(tmp_path / "n.gguf", dim=64, n_layers=1, n_heads=2, n_kv_heads=1, ffn=64,
                                 vocab=50, fmt="Q8_0", context_length=32)
    with GGUFFile.open(path) as g, pytest.warns(BackendFallbackWarning, match="no adapter"):
        model = load_planned(g)
    assert not isinstance(model, PlannedModel) and "no adapter" in model.fallback_reason


def test_a_pipeline_that_does_not_build_falls_back_at_load(device, tmp_path, monkeypatch):
    from webinfer.backends.webgpu import backend as backend_mod
    from webinfer.devices.wgpu_native import WgpuNativeDevice

    fresh = WgpuNativeDevice()           # its pipeline cache has not seen the real attention kernel

    real = backend_mod.kernel_source

    def broken(kernel, defines=None):
        src = real(kernel, defines)
        return src + "\nfn broken( {\n" if kernel == "attention_f32" else src

    monkeypatch.setattr(backend_mod, "kernel_source", broken)
    path = write_synthetic_llama(tmp_path / "p.gguf", dim=64, n_layers=1, n_heads=2, n_kv_heads=1, ffn=64,
                                 vocab=50, fmt="Q8_0", context_length=32)
    with GGUFFile.open(path) as g, pytest.warns(BackendFallbackWarning, match="attention_f32"):
        model = load_planned(g, device=fresh)
    assert not isinstance(model, PlannedModel)


@pytest.mark.model
def test_cli_generate_on_webgpu_names_the_adapter(default_model_path, device):
    r = subprocess.run([sys.executable, "-m", "webinfer", "generate", PROMPT, "--temperature", "0", "--max-tokens",
                        "8", "--backend", "webgpu", "--model", str(default_model_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(" Paris")
    assert "webinfer: backend webgpu (" in r.stderr


@pytest.mark.model
def test_chunked_prefill_and_prefix_reuse_match_numpy(gpu_engine, default_gguf, default_model):
    """A 150-token prompt in chunks of 64 (several plans, Step writes between them), then a second
    prompt that reuses the cached prefix: both greedy continuations equal the numpy backend's."""
    from pathlib import Path

    from webinfer.runtime.generate import generate
    from webinfer.runtime.sampler import SamplingParams

    tok = gpu_engine.tokenizer
    text = (Path(__file__).resolve().parents[2] / "bench" / "prompt256.txt").read_text()
    ids = tok.encode(text, add_special=True)[:150]
    more = ids + tok.encode(" In short,", add_special=False)
    ref_sess = Session(default_model, 256, n_batch=64)
    gsess = gpu_engine.session
    gsess.n_batch = 64
    try:
        for prompt in (ids, more):
            got = [c.token_id for c in generate(gsess, tok, prompt, max_tokens=6, sampling=SamplingParams(temperature=0),
                                                ignore_eos=True) if c.token_id is not None]
            want = [c.token_id for c in generate(ref_sess, tok, prompt, max_tokens=6,
                                                 sampling=SamplingParams(temperature=0), ignore_eos=True)
                    if c.token_id is not None]
            assert got == want
        assert gsess.reused >= 150                   # the second prompt reused the first's cache
    finally:
        gsess.n_batch = 256
