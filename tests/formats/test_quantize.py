"""Quantizers (formats/quantize.py) against gguf-py, the dequantizers, and their own error bounds."""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.formats.ggml_types import BLOCK_LAYOUTS, GGMLType
from webinfer.formats.quantize import QuantizeError, encode_codes, fit_grid, quantize
from webinfer.formats.quants import dequantize

gq = pytest.importorskip("gguf.quants")
GQT = pytest.importorskip("gguf.constants").GGMLQuantizationType

EXACT_32 = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]   # llama.cpp's reference quantizers, bit for bit
ALL = EXACT_32 + ["IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# relative squared error bound on Gaussian rows, per type (measured values are ~2-3x lower)
MAX_REL_ERR = {"Q8_0": 1e-4, "Q6_K": 1e-3, "Q5_0": 5e-3, "Q5_1": 5e-3, "Q5_K": 4e-3, "Q4_0": 2e-2, "Q4_1": 2e-2,
               "IQ4_NL": 2e-2, "Q4_K": 1.5e-2, "Q3_K": 6e-2, "Q2_K": 0.2}


def _rows(seed: int, n_rows: int = 24, n_cols: int = 512) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_rows, n_cols)) * rng.uniform(0.01, 2.0, (n_rows, 1))
    x[0, :64] = 0.0                       # an all-zero block
    if n_rows >= 4:
        x[1, :256] = 0.25                 # a constant block
        x[2, 7] = 40.0                    # an outlier
        x[3] = np.abs(x[3])               # all positive (a min above zero)
    return x.astype(np.float32)


def _dq(raw: np.ndarray, t: str, shape) -> np.ndarray:
    return dequantize(raw, GGMLType[t], shape)


def _rel(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None) -> float:
    w = np.ones_like(b) if w is None else np.broadcast_to(w, b.shape)
    return float((w * (a - b) ** 2).sum() / (w * b**2).sum())


@pytest.mark.parametrize("t", EXACT_32)
def test_reference_quantizers_match_gguf_py(t):
    x = _rows(1)
    x[4, :32] = np.arange(32) * 0.5 - 8      # exact ties for round-half-away-from-zero
    ours = quantize(x, t).reshape(x.shape[0], -1)
    np.testing.assert_array_equal(ours, gq.quantize(x, GQT[t]))


@pytest.mark.parametrize("t", ALL)
@pytest.mark.parametrize("weighted", [False, True], ids=["rtn", "imatrix"])
def test_round_trip_and_layout(t, weighted):
    x = _rows(2)
    imp = np.random.default_rng(3).uniform(0.05, 3.0, x.shape[1]).astype(np.float32) if weighted else None
    raw = quantize(x, t, importance=imp)
    assert raw.dtype == np.uint8 and raw.size == x.size // BLOCK_LAYOUTS[GGMLType[t]].block_elems * \
        BLOCK_LAYOUTS[GGMLType[t]].block_bytes
    y = _dq(raw, t, x.shape)
    # the bytes mean the same to gguf-py: the block layout is ggml's
    np.testing.assert_array_equal(y, gq.dequantize(raw.reshape(x.shape[0], -1), GQT[t]).reshape(x.shape))
    assert _rel(y, x) < MAX_REL_ERR[t]
    np.testing.assert_array_equal(y[0, :64], 0.0)


@pytest.mark.parametrize("t", ["Q4_0", "Q4_1", "Q5_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL"])
def test_importance_lowers_the_weighted_error(t):
    x = _rows(4, n_rows=32)
    imp = np.ones(x.shape[1], np.float32)
    imp[::7] = 50.0                                     # a few columns matter a lot
    rtn = _dq(quantize(x, t), t, x.shape)
    weighted = _dq(quantize(x, t, importance=imp), t, x.shape)
    assert _rel(weighted, x, imp) < _rel(rtn, x, imp)


@pytest.mark.parametrize("t", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q4_1", "Q5_0", "Q8_0", "IQ4_NL"])
def test_grid_codes_reproduce_quantize(t):
    """fit_grid + nearest codes + encode_codes is the same quantization (the path GPTQ takes)."""
    x = _rows(5)
    imp = np.random.default_rng(6).uniform(0.5, 2.0, x.shape[1]).astype(np.float32)
    grid = fit_grid(x, t, importance=imp)
    raw = encode_codes(grid, grid.codes(x.reshape(-1, grid.sub)))
    direct = _dq(quantize(x, t, importance=imp), t, x.shape)
    if t.endswith("_K"):
        np.testing.assert_array_equal(_dq(raw, t, x.shape), direct)
    else:  # nearest codes on the stored (f16) scale: never worse than the reference rounding
        assert _rel(_dq(raw, t, x.shape), x) <= _rel(direct, x) * (1 + 1e-6)


def test_packed_rows_are_one_block_stream():
    """A 576-wide tensor in a 256-wide type is its element stream in blocks, whatever the row shape."""
    x = _rows(7, n_rows=8, n_cols=576)
    raw = quantize(x, "Q4_K")
    np.testing.assert_array_equal(raw, quantize(x.reshape(2, 2304), "Q4_K"))
    np.testing.assert_array_equal(dequantize(raw, GGMLType.Q4_K, x.shape, packed_rows=4),
                                  dequantize(raw, GGMLType.Q4_K, (2, 2304)).reshape(x.shape))


def test_errors():
    x = np.ones((4, 64), np.float32)
    with pytest.raises(QuantizeError, match="cannot quantize to 'Q9_9'.*quantizable types: F32"):
        quantize(x, "Q9_9")
    with pytest.raises(QuantizeError, match="cannot quantize to 'IQ2_XXS'"):
        quantize(x, GGMLType.IQ2_XXS)
    with pytest.raises(QuantizeError, match="192 elements.*not a whole number of Q4_K blocks of 256") as e:
        quantize(x[:3], "Q4_K", name="w")
    assert isinstance(e.value, ValueError)
    with pytest.raises(QuantizeError, match="'w': 60 elements"):
        quantize(np.ones((2, 30), np.float32), "Q8_0", name="w")
    with pytest.raises(QuantizeError, match="NaN or infinite"):
        quantize(np.full((1, 32), np.nan, np.float32), "Q8_0")
    with pytest.raises(QuantizeError, match="importance of shape \\(3,\\)"):
        quantize(x, "Q4_0", importance=np.ones(3))
    with pytest.raises(QuantizeError, match="finite and >= 0"):
        quantize(x, "Q4_0", importance=-np.ones(64))
    with pytest.raises(QuantizeError, match="float data"):
        quantize(np.ones((1, 32), np.int32), "Q8_0")


def test_float_types():
    x = _rows(8, n_rows=2, n_cols=64)
    np.testing.assert_array_equal(quantize(x, "F32").view(np.float32).reshape(x.shape), x)
    np.testing.assert_array_equal(quantize(x, "F16").view(np.float16).reshape(x.shape), x.astype(np.float16))
