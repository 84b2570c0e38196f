"""webinfer quantize / imatrix on a tiny model: files gguf-py reads, logits near the source, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.backends.numpy_backend import NumpyBackend
from webinfer.formats.ggml_types import GGMLType
from webinfer.formats.gguf import GGUFFile
from webinfer.formats.gguf_writer import GGUFWriter
from webinfer.formats.packing import PACKED_COUNTS_KEY, PACKED_TENSORS_KEY
from webinfer.formats.quantize import QuantizeError
from webinfer.model import load_model
from webinfer.quant.imatrix import Imatrix, ImatrixError, collect_imatrix
from webinfer.quant.pipeline import quantize_model
from webinfer.quant.recipes import get_recipe
from webinfer.runtime.session import Session

from .conftest import DIM, FFN, N_LAYERS, VOCAB

gguf = pytest.importorskip("gguf")

IDS = [3, 17, 99, 4, 56, 120, 7, 7, 31, 64, 2, 90]
# relative RMS logit error vs the F32 source (random weights are harder than real ones)
# (measured: 0.007, 0.024, 0.048, 0.098, 0.112, 0.105, 0.042, 0.21, 0.126; Q2_K is llama.cpp's mix, Q6_K head)
MAX_LOGIT_ERR = {"Q8_0": 0.012, "Q6_K": 0.04, "Q5_K": 0.08, "Q4_K": 0.16, "Q4_0": 0.18, "IQ4_NL": 0.17,
                 "Q4_K_M": 0.07, "Q3_K": 0.34, "Q2_K": 0.2}


def _logits(path) -> np.ndarray:
    with GGUFFile.open(path) as g:
        s = Session(load_model(g, NumpyBackend()), 64)
        return s.evaluate(IDS, n_logits=len(IDS))


@pytest.fixture(scope="module")
def source_logits(tiny_tied):
    return _logits(tiny_tied)


@pytest.mark.parametrize("spec", list(MAX_LOGIT_ERR))
def test_quantized_file_reads_in_gguf_py_and_webinfer(tiny_tied, source_logits, tmp_path, spec):
    out = tmp_path / f"{spec}.gguf"
    rep = quantize_model(tiny_tied, out, spec)
    assert rep.file_bytes == out.stat().st_size and rep.bpw < 32
    reader = gguf.GGUFReader(out)
    assert len(reader.tensors) == 2 + 9 * N_LAYERS
    with GGUFFile.open(out) as g:
        for t in reader.tensors:
            info = g.info(t.name)
            assert info.type_name == t.tensor_type.name
            # gguf-py sees the stored shape; dequantized and reshaped, its values are ours
            theirs = gguf.quants.dequantize(t.data, t.tensor_type).reshape(info.shape)
            np.testing.assert_array_equal(g.tensor(t.name), theirs)
            k = rep.packed.get(t.name, 1)
            assert info.packed_rows == k
            stored = tuple(int(d) for d in reversed(t.shape))
            assert stored == (info.shape if k == 1 else (info.shape[0] // k, info.shape[1] * k))
    got = _logits(out)
    err = np.sqrt(((got - source_logits) ** 2).mean() / (source_logits**2).mean())
    assert err < MAX_LOGIT_ERR[spec], err
    assert (got.argmax(1) == source_logits.argmax(1)).mean() >= 0.75


def test_packed_rows_metadata_and_no_pack(tiny_tied, tmp_path):
    rep = quantize_model(tiny_tied, tmp_path / "k.gguf", "Q4_K")
    # 64-wide rows: 4 rows per 256-block; ffn_down's 128-wide rows: 2
    assert rep.packed["blk.0.attn_q.weight"] == 4 and rep.packed["blk.0.ffn_down.weight"] == 2
    with GGUFFile.open(tmp_path / "k.gguf") as g:
        assert list(g.metadata[PACKED_TENSORS_KEY]) == list(rep.packed)
        assert list(g.metadata[PACKED_COUNTS_KEY]) == list(rep.packed.values())
        assert g.info("token_embd.weight").shape == (VOCAB, DIM)
    with pytest.raises(QuantizeError, match="not a multiple of the Q4_K block size 256 and packing is off"):
        quantize_model(tiny_tied, tmp_path / "n.gguf", "Q4_K", pack=False)
    rep = quantize_model(tiny_tied, tmp_path / "q40.gguf", "Q4_0", pack=False)  # 32-wide: nothing to pack
    assert not rep.packed
    with GGUFFile.open(tmp_path / "q40.gguf") as g:
        assert PACKED_TENSORS_KEY not in g.metadata


def test_requantizing_a_quantized_file(tiny_tied, tmp_path, source_logits):
    q8 = tmp_path / "q8.gguf"
    quantize_model(tiny_tied, q8, "Q8_0")
    again = tmp_path / "q8b.gguf"
    rep = quantize_model(q8, again, "Q8_0")                     # same type: bytes copied
    with GGUFFile.open(q8) as a, GGUFFile.open(again) as b:
        for name in a.tensors:
            np.testing.assert_array_equal(a.raw(name), b.raw(name))
    k = tmp_path / "k.gguf"
    quantize_model(q8, k, "Q4_K")                                # packed in, Q5_K out: re-packed
    quantize_model(k, tmp_path / "k5.gguf", "Q5_K")
    np.testing.assert_allclose(_logits(tmp_path / "k5.gguf"), source_logits, atol=0.2 * np.abs(source_logits).max())
    assert rep.type_counts() == {"F32": 1 + 2 * N_LAYERS, "Q8_0": 7 * N_LAYERS + 1}


def test_unreadable_source_type(tmp_path):
    w = GGUFWriter(tmp_path / "iq2.gguf")
    w.add_metadata("general.architecture", "llama")
    w.add_tensor("blk.0.attn_q.weight", np.zeros(66 * 2, np.uint8), GGMLType.IQ2_XXS, (2, 256))
    w.write()
    with pytest.raises(QuantizeError, match="cannot requantize 'blk.0.attn_q.weight'.*IQ2_XXS"):
        quantize_model(tmp_path / "iq2.gguf", tmp_path / "o.gguf", "Q4_0")


def test_recipes():
    r = get_recipe("q4_k_m")
    assert r.type_for("token_embd.weight", 30) == "Q6_K"
    assert r.type_for("blk.0.attn_v.weight", 30) == "Q6_K" and r.type_for("blk.4.attn_v.weight", 30) == "Q4_K"
    assert r.type_for("blk.4.ffn_up.weight", 30) == "Q4_K"
    r = get_recipe("Q3_K,token_embd=Q8_0,ffn_down@0-1=Q6_K")
    assert [r.type_for(f"blk.{i}.ffn_down.weight", 30) for i in range(3)] == ["Q6_K", "Q6_K", "Q3_K"]
    assert r.type_for("token_embd.weight", 30) == "Q8_0" and r.type_for("blk.0.attn_q.weight", 30) == "Q3_K"
    with pytest.raises(QuantizeError, match="unknown quantization type or recipe 'Q7'.*recipes: Q4_K_M"):
        get_recipe("Q7")
    with pytest.raises(QuantizeError, match="bad override 'attn=Q4_K'"):
        get_recipe("Q4_K,attn=Q4_K")


@pytest.fixture(scope="module")
def tiny_imatrix(tiny_tied):
    ids = np.random.default_rng(0).integers(0, VOCAB, 3 * 32).tolist()
    with GGUFFile.open(tiny_tied) as g:
        return collect_imatrix(g, ids, ctx=32, with_cov=True, dataset="random.txt")


def test_imatrix_file(tiny_imatrix, tmp_path):
    m = tiny_imatrix
    assert m.chunk_count == 3 and m.chunk_size == 32
    assert set(m.sum2) == {"token_embd.weight"} | {f"blk.{i}.{n}.weight" for i in range(N_LAYERS) for n in
                                                   ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
                                                    "ffn_up", "ffn_down")}
    assert m.counts["blk.0.attn_q.weight"] == 96 and m.importance("blk.1.ffn_down.weight").shape == (FFN,)
    assert set(m.cov) == {f"blk.{i}.{s}" for i in range(N_LAYERS) for s in
                          ("attn_qkv", "attn_output", "ffn_gate_up", "ffn_down")} | {"token_embd"}
    h = m.covariance("blk.0.attn_k.weight")
    np.testing.assert_allclose(np.diag(h), m.importance("blk.0.attn_v.weight"), rtol=1e-5)
    path = tmp_path / "imatrix.gguf"
    m.save(path)
    r = gguf.GGUFReader(path)                                # llama.cpp's layout, readable by gguf-py
    names = {t.name for t in r.tensors}
    assert "blk.0.attn_q.weight.in_sum2" in names and "blk.0.attn_q.weight.counts" in names
    back = Imatrix.load(path)
    np.testing.assert_allclose(back.importance("token_embd.weight"), m.importance("token_embd.weight"), rtol=1e-6)
    np.testing.assert_allclose(back.covariance("blk.1.ffn_up.weight"), m.covariance("blk.1.ffn_gate.weight"),
                               rtol=1e-5)

def test_imatrix_errors(tiny_tied, tmp_path):
    with pytest.raises(ImatrixError, match="not an importance matrix"):
        Imatrix.load(tiny_tied)
    with pytest.raises(ImatrixError, match="cannot read"):
        Imatrix.load(tmp_path / "missing.gguf")


@pytest.mark.parametrize("method", ["imatrix", "gptq"])
def test_weighted_methods(tiny_tied, tiny_imatrix, source_logits, tmp_path, method):
    rtn = quantize_model(tiny_tied, tmp_path / "rtn.gguf", "Q3_K")
    rep = quantize_model(tiny_tied, tmp_path / f"{method}.gguf", "Q3_K", imatrix=tiny_imatrix, method=method)
    assert rep.method == method and rep.n_bytes == rtn.n_bytes
    with GGUFFile.open(tmp_path / f"{method}.gguf") as g:
        assert g.metadata["webinfer.quantize.method"] == method
        assert g.metadata["quantize.imatrix.dataset"] == "random.txt"
    err = np.abs(_logits(tmp_path / f"{method}.gguf") - source_logits).mean()
    assert err < 1.5 * np.abs(_logits(tmp_path / "rtn.gguf") - source_logits).mean()


def test_method_errors(tiny_tied, tiny_imatrix, tmp_path):
    with pytest.raises(QuantizeError, match="'gptq' needs an importance matrix"):
        quantize_model(tiny_tied, tmp_path / "o.gguf", "Q4_K", method="gptq")
    with pytest.raises(QuantizeError, match="unknown method 'best'"):
        quantize_model(tiny_tied, tmp_path / "o.gguf", "Q4_K", imatrix=tiny_imatrix, method="best")


@pytest.mark.model
@pytest.mark.parametrize("name,budget", [("W4", 4.5), ("W3", 3.5), ("W2", 2.7)])
def test_own_mixes_meet_their_budgets_on_the_default_model(default_gguf, name, budget):
    from webinfer.formats.ggml_types import BLOCK_LAYOUTS

    r = get_recipe(name)
    n_bytes = n_weights = 0
    for t in default_gguf:
        typ = t.ggml_type if len(t.shape) < 2 else GGMLType[r.type_for(t.name, 30)]
        lay = BLOCK_LAYOUTS[typ]
        n_bytes += t.n_elements // lay.block_elems * lay.block_bytes
        n_weights += t.n_elements
    assert budget - 0.01 < 8 * n_bytes / n_weights <= budget
