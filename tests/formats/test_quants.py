"""Dequantization must be bit-identical to gguf-py's ``gguf.quants.dequantize``.

gguf-py is an independent implementation (the one llama.cpp's own Python
tools use), so it is the oracle: random blocks of every supported type, and
every tensor of the default model, must give the same float32 bits.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from webinfer.errors import GGUFError, UnsupportedTensorTypeError
from webinfer.formats.ggml_types import BLOCK_LAYOUTS, GGMLType
from webinfer.formats.quants import SUPPORTED_TYPES, dequantize, dequantize_rows, row_nbytes

gguf = pytest.importorskip("gguf")

QUANTIZED = [
    GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
    GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.IQ4_NL,
]  # fmt: skip
FLOATS = [GGMLType.F32, GGMLType.F16, GGMLType.BF16]

# Byte offsets of the f16 scale fields (d, m / dmin) in one block, from ggml's
# block_* structs.  Random bytes there could be NaN/inf, so they are patched.
F16_FIELDS = {
    GGMLType.Q4_0: (0,),
    GGMLType.IQ4_NL: (0,),
    GGMLType.Q4_1: (0, 2),
    GGMLType.Q5_0: (0,),
    GGMLType.Q5_1: (0, 2),
    GGMLType.Q8_0: (0,),
    GGMLType.Q2_K: (80, 82),
    GGMLType.Q3_K: (108,),
    GGMLType.Q4_K: (0, 2),
    GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,),
}

# Shapes in blocks per row: (leading dims..., blocks per row).
BLOCK_SHAPES = [(1,), (1, 1), (3, 2), (2, 3, 1), (7, 4), (2, 2, 3), (40, 3)]
FLOAT_SHAPES = [(1,), (5,), (3, 7), (2, 3, 4), (64, 33)]


def _oracle(raw: np.ndarray, ggml_type: GGMLType, shape: tuple[int, ...]) -> np.ndarray:
    """gguf-py's dequantization of ``raw`` (bytes of a tensor of numpy ``shape``)."""
    n_rows = int(np.prod(shape[:-1], dtype=np.int64))
    data = raw.reshape(n_rows, -1)
    ref = gguf.quants.dequantize(data, gguf.GGMLQuantizationType(int(ggml_type)))
    return np.ascontiguousarray(ref, dtype=np.float32).reshape(shape)


def _assert_bits_equal(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape
    # compare bit patterns: stricter than ==, which ignores the sign of zero
    assert np.array_equal(ours.view(np.uint32), ref.view(np.uint32))


def _random_blocks(rng: np.random.Generator, ggml_type: GGMLType, n_blocks: int) -> np.ndarray:
    """Random bytes of ``n_blocks`` blocks, with finite moderate f16 scales."""
    layout = BLOCK_LAYOUTS[ggml_type]
    blocks = rng.integers(0, 256, (n_blocks, layout.block_bytes), dtype=np.uint8)
    for off in F16_FIELDS[ggml_type]:
        # include negative and tiny (subnormal) scales, never NaN/inf
        scale = rng.uniform(-4.0, 4.0, n_blocks) * 10.0 ** rng.integers(-7, 1, n_blocks)
        blocks[:, off : off + 2] = scale.astype("<f2").view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(-1)


def _random_floats(rng: np.random.Generator, ggml_type: GGMLType, n: int) -> np.ndarray:
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype("<f4")
    x[: min(n, 2)] = [0.0, -0.0][: min(n, 2)]
    if ggml_type == GGMLType.F32:
        return x.view(np.uint8)
    if ggml_type == GGMLType.F16:
        return x.astype("<f2").view(np.uint8)
    return (x.view("<u4") >> 16).astype("<u2").view(np.uint8)  # BF16: high half


# ----------------------------------------------------------------- synthetic


def test_supported_types():
    assert set(SUPPORTED_TYPES) == set(QUANTIZED) | set(FLOATS)
    assert all(isinstance(t, GGMLType) for t in SUPPORTED_TYPES)


@pytest.mark.parametrize("ggml_type", QUANTIZED, ids=lambda t: t.name)
@pytest.mark.parametrize("block_shape", BLOCK_SHAPES, ids=str)
def test_quantized_matches_gguf_py(ggml_type, block_shape):
    rng = np.random.default_rng([int(ggml_type), *block_shape])
    layout = BLOCK_LAYOUTS[ggml_type]
    shape = (*block_shape[:-1], block_shape[-1] * layout.block_elems)
    raw = _random_blocks(rng, ggml_type, int(np.prod(block_shape)))
    ours = dequantize(raw, ggml_type, shape)
    _assert_bits_equal(ours, _oracle(raw, ggml_type, shape))
    assert np.isfinite(ours).all()


@pytest.mark.parametrize("ggml_type", QUANTIZED, ids=lambda t: t.name)
def test_quantized_many_blocks(ggml_type):
    """Enough blocks to span several internal chunks, with an odd remainder."""
    rng = np.random.default_rng(int(ggml_type) + 1000)
    layout = BLOCK_LAYOUTS[ggml_type]
    n_blocks = (1 << 18) // layout.block_elems * 2 + 13
    shape = (n_blocks, layout.block_elems)
    raw = _random_blocks(rng, ggml_type, n_blocks)
    _assert_bits_equal(dequantize(raw, ggml_type, shape), _oracle(raw, ggml_type, shape))


@pytest.mark.parametrize("ggml_type", FLOATS, ids=lambda t: t.name)
@pytest.mark.parametrize("shape", FLOAT_SHAPES, ids=str)
def test_floats_match_gguf_py(ggml_type, shape):
    rng = np.random.default_rng([int(ggml_type), *shape])
    raw = _random_floats(rng, ggml_type, int(np.prod(shape)))
    ours = dequantize(raw, ggml_type, shape)
    _assert_bits_equal(ours, _oracle(raw, ggml_type, shape))


def test_result_is_a_fresh_writable_array():
    raw = np.frombuffer(np.arange(6, dtype="<f4").tobytes(), dtype=np.uint8)  # read-only
    out = dequantize(raw, GGMLType.F32, (2, 3))
    assert out.flags.writeable and not np.shares_memory(out, raw)
    out[0, 0] = 42.0
    assert np.array_equal(out[1], [3.0, 4.0, 5.0])


def test_accepts_bytes_and_int_type_ids():
    raw = _random_blocks(np.random.default_rng(7), GGMLType.Q8_0, 2)
    expected = dequantize(raw, GGMLType.Q8_0, (64,))
    _assert_bits_equal(dequantize(raw.tobytes(), int(GGMLType.Q8_0), (64,)), expected)


def test_empty_tensor():
    out = dequantize(np.zeros(0, np.uint8), GGMLType.Q4_1, (0, 32))
    assert out.shape == (0, 32) and out.dtype == np.float32


# ------------------------------------------------------------------ rows


@pytest.mark.parametrize("ggml_type", QUANTIZED + FLOATS, ids=lambda t: t.name)
def test_dequantize_rows_matches_dequantize(ggml_type):
    rng = np.random.default_rng(int(ggml_type) + 2000)
    layout = BLOCK_LAYOUTS[ggml_type]
    n_rows, row_len = 9, 3 * max(layout.block_elems, 32)
    n_blocks = n_rows * row_len // layout.block_elems
    if ggml_type in FLOATS:
        raw = _random_floats(rng, ggml_type, n_rows * row_len)
    else:
        raw = _random_blocks(rng, ggml_type, n_blocks)
    table = raw.reshape(n_rows, -1)
    assert table.shape[1] == row_nbytes(ggml_type, row_len)
    full = dequantize(raw, ggml_type, (n_rows, row_len))

    ids = np.array([4, 0, 8, 4])
    _assert_bits_equal(dequantize_rows(table[ids], ggml_type, row_len), full[ids])
    _assert_bits_equal(dequantize_rows(table[5], ggml_type, row_len), full[5])  # one 1-D row
    assert dequantize_rows(table[:0], ggml_type, row_len).shape == (0, row_len)


def test_row_nbytes():
    assert row_nbytes(GGMLType.Q4_1, 576) == 18 * 20
    assert row_nbytes(GGMLType.Q8_0, 576) == 18 * 34
    assert row_nbytes(GGMLType.Q6_K, 512) == 2 * 210
    assert row_nbytes(GGMLType.F32, 5) == 20
    assert row_nbytes(GGMLType.BF16, 5) == 10
    assert row_nbytes(GGMLType.IQ2_XXS, 256) == 66  # sizes are known even if unsupported
    with pytest.raises(GGUFError, match="multiple of the Q4_K block size 256"):
        row_nbytes(GGMLType.Q4_K, 100)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("delta", [-1, 1, -20])
def test_wrong_byte_count(delta):
    raw = np.zeros(3 * 20 + delta, np.uint8)
    with pytest.raises(GGUFError, match=r"'blk\.0\.w'.*takes 60 bytes.*but %d bytes" % (60 + delta)):
        dequantize(raw, GGMLType.Q4_1, (3, 32), name="blk.0.w")


def test_row_length_not_a_whole_block():
    with pytest.raises(GGUFError, match="not a multiple of the Q4_0 block size 32"):
        dequantize(np.zeros(18, np.uint8), GGMLType.Q4_0, (1, 16))


def test_unsupported_type():
    with pytest.raises(UnsupportedTensorTypeError, match="'blk.3.x'.*IQ2_XXS.*supported types: F32") as e:
        dequantize(np.zeros(66, np.uint8), GGMLType.IQ2_XXS, (256,), name="blk.3.x")
    assert e.value.tensor == "blk.3.x" and e.value.type_name == "IQ2_XXS"
    assert isinstance(e.value, GGUFError)
    with pytest.raises(UnsupportedTensorTypeError, match="type#99"):
        dequantize(np.zeros(4, np.uint8), 99, (1,))
    with pytest.raises(UnsupportedTensorTypeError):
        dequantize_rows(np.zeros((1, 66), np.uint8), GGMLType.IQ2_XXS, 256)


def test_dequantize_rows_wrong_width():
    with pytest.raises(GGUFError, match=r"take 40 bytes each.*\(2, 39\)"):
        dequantize_rows(np.zeros((2, 39), np.uint8), GGMLType.Q4_1, 64)


def test_non_uint8_input_rejected():
    with pytest.raises(TypeError, match="uint8"):
        dequantize(np.zeros(4, np.float32), GGMLType.F32, (4,))


# ------------------------------------------------------------ default model


def _model_path() -> Path:
    cache = Path(os.environ.get("WEBINFER_CACHE", "~/.cache/webinfer")).expanduser()
    return cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def model_path() -> Path:
    path = _model_path()
    if not path.is_file():
        pytest.skip(f"default model not found at {path} (run scripts/setup.sh, or set WEBINFER_CACHE)")
    return path


@pytest.mark.model
def test_every_model_tensor_matches_gguf_py(model_path):
    from webinfer.formats.gguf import GGUFFile

    reader = gguf.GGUFReader(model_path)
    with GGUFFile.open(model_path) as g:
        assert sorted(g.tensors) == sorted(t.name for t in reader.tensors)
        for ref_t in reader.tensors:
            info = g.tensors[ref_t.name]
            assert int(info.ggml_type) == int(ref_t.tensor_type), ref_t.name
            ours = dequantize(g.raw(ref_t.name), info.ggml_type, info.shape, name=ref_t.name)
            ref = gguf.quants.dequantize(ref_t.data, ref_t.tensor_type)
            ref = np.ascontiguousarray(ref, dtype=np.float32).reshape(info.shape)
            assert ours.shape == info.shape
            assert np.array_equal(ours.view(np.uint32), ref.view(np.uint32)), ref_t.name


@pytest.mark.model
def test_model_embedding_rows(model_path):
    from webinfer.formats.gguf import GGUFFile

    with GGUFFile.open(model_path) as g:
        info = g.tensors["token_embd.weight"]
        n_vocab, dim = info.shape
        table = g.raw("token_embd.weight").reshape(n_vocab, -1)
        ids = np.array([0, 1, 2, 1000, n_vocab - 1, 1])
        rows = dequantize_rows(table[ids], info.ggml_type, dim)
        full = dequantize(g.raw("token_embd.weight"), info.ggml_type, info.shape)
        _assert_bits_equal(rows, full[ids])
