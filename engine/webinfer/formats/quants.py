"""Dequantization of ggml tensor data to float32, in vectorized numpy.

Every supported type has one small function ``_dq_<type>(blocks, out)`` that
turns ``blocks`` (a ``(n_blocks, block_bytes)`` uint8 array) into ``out`` (a
``(n_blocks, block_elems)`` float32 array), with the block's byte layout in a
comment above it.  There is no Python loop over blocks: the byte fields are
column slices of ``blocks`` and every step is a numpy operation over all
blocks at once.  Large tensors are processed in chunks of 256 Ki elements,
which bounds the size of the temporaries (this matters in the browser).

The results are bit-identical to gguf-py's ``gguf.quants.dequantize`` (the
test suite checks this).  Scales are f16 values widened to float32, and the
float32 operations follow gguf-py, e.g. Q4_K computes
``(d * sc) * q - (dmin * m)``.  Every product in these formulas is exact in
float32 (an f16 has an 11-bit significand, the integer factors at most 8
bits, and the product of significands never exceeds float32's 24 bits), so
the only rounding is the final ``+ m`` / ``- dmin * m``, done once in float32
here as there; this is why the results match bit for bit, and would still
match with the factors multiplied in another order.

All multi-byte fields are little-endian, as in every GGUF file.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import GGUFError, UnsupportedTensorTypeError
from .ggml_types import BLOCK_LAYOUTS, GGMLType, type_name

__all__ = ["SUPPORTED_TYPES", "dequantize", "dequantize_rows", "row_nbytes"]

_F16 = np.dtype("<f2")
_F32 = np.dtype("<f4")
_U16 = np.dtype("<u2")

# Elements dequantized per chunk: 256 Ki float32 = 1 MiB of output.  Chunks
# bound the size of the temporaries (a few bytes per element) without paying
# numpy's per-call overhead too often.
_CHUNK_ELEMS = 1 << 18


# ------------------------------------------------------------------- helpers


def _f16(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The f16 field at byte ``offset`` of every block, as float32 ``(n, 1)``."""
    # blocks rows are C-contiguous, so the 2-byte column views as one f16 per row
    return blocks[:, offset : offset + 2].view(_F16).astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """``(n, k)`` packed bytes -> ``(n, 2k)``: all low nibbles, then all high nibbles.

    This is the order of every ggml 4-bit layout: byte ``j`` holds element
    ``j`` in its low nibble and element ``j + k`` in its high nibble.
    """
    n, k = qs.shape
    q = np.empty((n, 2 * k), dtype=np.uint8)
    np.bitwise_and(qs, 0x0F, out=q[:, :k])
    np.right_shift(qs, 4, out=q[:, k:])
    return q


def _bit_planes(qh: np.ndarray, bits: int) -> np.ndarray:
    """``(n, k)`` bytes -> ``(n, 8 // bits, k)``: field ``s`` of byte ``j`` at ``[:, s, j]``.

    Field ``s`` of a byte is ``(byte >> (bits * s)) & mask``.  K-quants store
    32 consecutive elements in one field of 32 consecutive bytes, so
    ``_bit_planes(x, b).reshape(n, -1)`` lists the elements in order.
    """
    shifts = np.arange(0, 8, bits, dtype=np.uint8).reshape(1, -1, 1)
    mask = np.uint8((1 << bits) - 1)
    return (qh[:, None, :] >> shifts) & mask


def _k_scale_min(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 12 bytes -> eight 6-bit scales and eight 6-bit mins, ``(n, 8)`` each.

    Bytes 0..3 = a (scales 0..3 in bits 0..5), 4..7 = b (mins 0..3 in bits
    0..5), 8..11 = c.  Scale 4+i = (c[i] & 0xF) | (a[i] >> 6) << 4; min 4+i =
    (c[i] >> 4) | (b[i] >> 6) << 4.
    """
    a, b, c = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = np.concatenate([a & 0x3F, (c & 0x0F) | ((a >> 2) & 0x30)], axis=1)
    mn = np.concatenate([b & 0x3F, (c >> 4) | ((b >> 2) & 0x30)], axis=1)
    return sc, mn


# ------------------------------------------------------ unquantized (1 elem)


# f32: 4 bytes little-endian
def _dq_f32(blocks: np.ndarray, out: np.ndarray) -> None:
    out[:] = np.ascontiguousarray(blocks).view(_F32)


# f16: 2 bytes little-endian IEEE half
def _dq_f16(blocks: np.ndarray, out: np.ndarray) -> None:
    out[:] = np.ascontiguousarray(blocks).view(_F16)


# bf16: 2 bytes little-endian, the high half of a float32
def _dq_bf16(blocks: np.ndarray, out: np.ndarray) -> None:
    bits = np.ascontiguousarray(blocks).view(_U16).astype(np.uint32)
    out.view(np.uint32)[:] = bits << 16


# ---------------------------------------------------- 32-element block types


# Q4_0 (18 bytes) | d: f16 | qs: 16 bytes, low nibbles = elems 0..15, high = 16..31
# x = d * (q - 8)
def _dq_q4_0(blocks: np.ndarray, out: np.ndarray) -> None:
    d = _f16(blocks, 0)
    q = _nibbles(blocks[:, 2:18])
    np.subtract(q, 8, out=out, dtype=np.float32)
    out *= d


# Q4_1 (20 bytes) | d: f16 | m: f16 | qs: 16 bytes, low nibbles = elems 0..15, high = 16..31
# x = d * q + m
def _dq_q4_1(blocks: np.ndarray, out: np.ndarray) -> None:
    d = _f16(blocks, 0)
    m = _f16(blocks, 2)
    q = _nibbles(blocks[:, 4:20])
    np.multiply(q, d, out=out)
    out += m


def _q5(qh: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Q5_0/Q5_1 5-bit quants: qh (4 bytes = u32, bit i = bit 4 of elem i) + 4-bit nibbles."""
    q = _nibbles(qs)
    hi = np.unpackbits(qh, axis=1, bitorder="little")  # (n, 32): bit i of the u32
    q |= hi << 4
    return q


# Q5_0 (22 bytes) | d: f16 | qh: u32, bit i = 5th bit of elem i | qs: 16 bytes, low nibbles = elems 0..15, high = 16..31
# x = d * (q - 16)
def _dq_q5_0(blocks: np.ndarray, out: np.ndarray) -> None:
    d = _f16(blocks, 0)
    q = _q5(blocks[:, 2:6], blocks[:, 6:22])
    np.subtract(q, 16, out=out, dtype=np.float32)
    out *= d


# Q5_1 (24 bytes) | d: f16 | m: f16 | qh: u32, bit i = 5th bit of elem i | qs: 16 bytes, low nibbles = elems 0..15, high = 16..31
# x = d * q + m
def _dq_q5_1(blocks: np.ndarray, out: np.ndarray) -> None:
    d = _f16(blocks, 0)
    m = _f16(blocks, 2)
    q = _q5(blocks[:, 4:8], blocks[:, 8:24])
    np.multiply(q, d, out=out)
    out += m


# Q8_0 (34 bytes) | d: f16 | qs: 32 x int8, elem i = qs[i]
# x = q * d
def _dq_q8_0(blocks: np.ndarray, out: np.ndarray) -> None:
    d = _f16(blocks, 0)
    np.multiply(blocks[:, 2:34].view(np.int8), d, out=out)


# IQ4_NL (18 bytes) | d: f16 | qs: 16 bytes of indices into KVALUES_IQ4NL, low nibbles = elems 0..15,
#   high = 16..31
# x = d * KVALUES_IQ4NL[q]   (a non-uniform 4-bit grid, denser near zero)
KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)


def _dq_iq4_nl(blocks: np.ndarray, out: np.ndarray) -> None:
    d = _f16(blocks, 0)
    np.multiply(KVALUES_IQ4NL[_nibbles(blocks[:, 2:18])], d, out=out)


# ----------------------------------------------- 256-element K-quant types
#
# A K-quant block (a "super-block") holds 256 elements in sub-blocks of 16 or
# 32 elements, each with its own small integer scale (and min), which are
# multiplied by the block's f16 d (and dmin).


# Q2_K (84 bytes) | scales: 16 bytes, byte g = scale (low nibble) and min (high nibble) of elems 16g..16g+15
#   | qs: 64 bytes, 2-bit quants: elem 128h + 32s + l = bits 2s..2s+1 of qs[32h + l]
#   | d: f16 | dmin: f16
# x = (d * scale) * q - (dmin * min)
def _dq_q2_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = blocks.shape[0]
    scales = blocks[:, 0:16]
    d = _f16(blocks, 80)
    dmin = _f16(blocks, 82)
    dl = d * (scales & 0x0F)  # (n, 16) float32
    ml = dmin * (scales >> 4)
    q = _bit_planes(blocks[:, 16:80].reshape(n * 2, 32), 2)  # (2n, 4, 32)
    o = out.reshape(n, 16, 16)
    np.multiply(q.reshape(n, 16, 16), dl[:, :, None], out=o)
    o -= ml[:, :, None]


# Q3_K (110 bytes) | hmask: 32 bytes, elem 32b + l: bit b of hmask[l] (1 = no offset, 0 = subtract 4)
#   | qs: 64 bytes, low 2 bits: elem 128h + 32s + l = bits 2s..2s+1 of qs[32h + l]
#   | scales: 12 bytes, sixteen 6-bit scales (offset 32) for elems 16g..16g+15:
#       low 4 bits of scale g: nibble (g // 8) of byte g % 8;
#       high 2 bits: bits 2(g // 4)..+1 of byte 8 + g % 4
#   | d: f16
# x = (d * (scale - 32)) * (q_low + 4 * hbit - 4)
def _dq_q3_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = blocks.shape[0]
    hmask = blocks[:, 0:32]
    qs = blocks[:, 32:96]
    sb = blocks[:, 96:108]
    d = _f16(blocks, 108)

    lo = _nibbles(sb[:, 0:8])  # (n, 16)
    hi = _bit_planes(sb[:, 8:12], 2).reshape(n, 16)
    scale = (lo | (hi << 4)).view(np.int8) - np.int8(32)
    dl = d * scale  # (n, 16) float32

    q = _bit_planes(qs.reshape(n * 2, 32), 2).reshape(n, 256)
    q |= _bit_planes(hmask, 1).reshape(n, 256) << 2
    q = q.view(np.int8) - np.int8(4)  # -4..3
    o = out.reshape(n, 16, 16)
    np.multiply(q.reshape(n, 16, 16), dl[:, :, None], out=o)


# Q4_K (144 bytes) | d: f16 | dmin: f16 | scales: 12 bytes, eight 6-bit scales + mins (see _k_scale_min)
#   | qs: 128 bytes, elem 64c + l = low nibble of qs[32c + l], elem 64c + 32 + l = high nibble
#     (sub-block j of 32 elems has scale/min j)
# x = (d * scale) * q - (dmin * min)
def _dq_q4_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = blocks.shape[0]
    d = _f16(blocks, 0)
    dmin = _f16(blocks, 2)
    sc, mn = _k_scale_min(blocks[:, 4:16])
    dl = d * sc  # (n, 8) float32
    ml = dmin * mn
    q = _nibbles(blocks[:, 16:144].reshape(n * 4, 32))  # (4n, 64)
    o = out.reshape(n, 8, 32)
    np.multiply(q.reshape(n, 8, 32), dl[:, :, None], out=o)
    o -= ml[:, :, None]


# Q5_K (176 bytes) | d: f16 | dmin: f16 | scales: 12 bytes, as Q4_K
#   | qh: 32 bytes, elem 32b + l: bit b of qh[l] is bit 4 of the quant
#   | qs: 128 bytes, low 4 bits as Q4_K
# x = (d * scale) * q - (dmin * min)
def _dq_q5_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = blocks.shape[0]
    d = _f16(blocks, 0)
    dmin = _f16(blocks, 2)
    sc, mn = _k_scale_min(blocks[:, 4:16])
    dl = d * sc  # (n, 8) float32
    ml = dmin * mn
    q = _nibbles(blocks[:, 48:176].reshape(n * 4, 32)).reshape(n, 256)
    q |= _bit_planes(blocks[:, 16:48], 1).reshape(n, 256) << 4
    o = out.reshape(n, 8, 32)
    np.multiply(q.reshape(n, 8, 32), dl[:, :, None], out=o)
    o -= ml[:, :, None]


# Q6_K (210 bytes) | ql: 128 bytes, low 4 bits: elem 128h + 64k + l (l < 64) = nibble k of ql[64h + l]
#   | qh: 64 bytes, high 2 bits: elem 128h + 32s + l = bits 2s..2s+1 of qh[32h + l]
#   | scales: 16 x int8, scale of elems 16g..16g+15 | d: f16
# x = (d * scale) * (q - 32)
def _dq_q6_k(blocks: np.ndarray, out: np.ndarray) -> None:
    n = blocks.shape[0]
    scales = blocks[:, 192:208].view(np.int8)
    d = _f16(blocks, 208)
    dl = d * scales  # (n, 16) float32
    q = _nibbles(blocks[:, 0:128].reshape(n * 2, 64)).reshape(n, 256)
    q |= _bit_planes(blocks[:, 128:192].reshape(n * 2, 32), 2).reshape(n, 256) << 4
    q = q.view(np.int8) - np.int8(32)
    o = out.reshape(n, 16, 16)
    np.multiply(q.reshape(n, 16, 16), dl[:, :, None], out=o)


# ------------------------------------------------------------------ dispatch

_DEQUANTIZERS: dict[GGMLType, Callable[[np.ndarray, np.ndarray], None]] = {
    GGMLType.F32: _dq_f32,
    GGMLType.F16: _dq_f16,
    GGMLType.BF16: _dq_bf16,
    GGMLType.Q4_0: _dq_q4_0,
    GGMLType.Q4_1: _dq_q4_1,
    GGMLType.Q5_0: _dq_q5_0,
    GGMLType.Q5_1: _dq_q5_1,
    GGMLType.Q8_0: _dq_q8_0,
    GGMLType.IQ4_NL: _dq_iq4_nl,
    GGMLType.Q2_K: _dq_q2_k,
    GGMLType.Q3_K: _dq_q3_k,
    GGMLType.Q4_K: _dq_q4_k,
    GGMLType.Q5_K: _dq_q5_k,
    GGMLType.Q6_K: _dq_q6_k,
}

SUPPORTED_TYPES: tuple[GGMLType, ...] = tuple(_DEQUANTIZERS)


def _supported(ggml_type: GGMLType | int, name: str) -> GGMLType:
    """``ggml_type`` as a GGMLType we can dequantize, or UnsupportedTensorTypeError."""
    try:
        t = GGMLType(ggml_type)
    except ValueError:
        t = None
    if t is None or t not in _DEQUANTIZERS:
        raise UnsupportedTensorTypeError(
            name, type_name(int(ggml_type)), [s.name for s in SUPPORTED_TYPES]
        )
    return t


def _as_bytes(raw, what: str) -> np.ndarray:
    """``raw`` as a uint8 numpy array (bytes-like objects are wrapped, not copied)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return np.frombuffer(raw, dtype=np.uint8)
    raw = np.asarray(raw)
    if raw.dtype != np.uint8:
        raise TypeError(f"{what} must be a uint8 array of raw tensor bytes, not {raw.dtype}")
    return raw


def row_nbytes(ggml_type: GGMLType | int, row_len: int) -> int:
    """Bytes of one row of ``row_len`` elements of ``ggml_type``.

    Works for every type with a known block layout (not only the supported
    ones); raises GGUFError if ``row_len`` is not a whole number of blocks.
    """
    try:
        t = GGMLType(ggml_type)
        layout = BLOCK_LAYOUTS[t]
    except (ValueError, KeyError):
        raise GGUFError(f"unknown ggml type {type_name(int(ggml_type))}: its block size is not known") from None
    row_len = int(row_len)
    if row_len < 0 or row_len % layout.block_elems:
        raise GGUFError(
            f"row length {row_len} is not a multiple of the {t.name} block size {layout.block_elems}"
        )
    return row_len // layout.block_elems * layout.block_bytes


def _dequantize_blocks(blocks: np.ndarray, t: GGMLType) -> np.ndarray:
    """``(n_blocks, block_bytes)`` uint8 -> ``(n_blocks, block_elems)`` float32, chunk by chunk."""
    fn = _DEQUANTIZERS[t]
    blocks = np.ascontiguousarray(blocks)  # no copy for the usual C-order input
    n_blocks, _ = blocks.shape
    block_elems = BLOCK_LAYOUTS[t].block_elems
    out = np.empty((n_blocks, block_elems), dtype=np.float32)
    step = max(1, _CHUNK_ELEMS // block_elems)
    for i in range(0, n_blocks, step):
        fn(blocks[i : i + step], out[i : i + step])
    return out


def dequantize(
    raw: np.ndarray, ggml_type: GGMLType, shape: tuple[int, ...], *, name: str = "<tensor>", packed_rows: int = 1
) -> np.ndarray:
    """Dequantize a whole tensor.

    ``raw`` is a uint8 array of the tensor's bytes (any shape; it is read in
    C order); ``shape`` is in numpy order, so its last dimension is ggml's
    ``ne[0]`` and must be a multiple of the type's block size.  Returns a new
    float32 array of ``shape`` (never a view of ``raw``).  ``name`` is only
    used in error messages.  ``packed_rows`` > 1 (``TensorInfo.packed_rows``)
    means the blocks run across rows, that many rows per stored row
    (formats/packing.py); ``shape`` is still the true shape.

    Raises UnsupportedTensorTypeError for a type not in SUPPORTED_TYPES and
    GGUFError when ``raw`` has the wrong number of bytes for ``shape``.
    """
    t = _supported(ggml_type, name)
    raw = _as_bytes(raw, "raw")
    shape = tuple(int(s) for s in shape)
    if packed_rows != 1:
        if len(shape) < 2 or shape[-2] % packed_rows:
            raise GGUFError(f"tensor {name!r}: shape {shape} cannot be packed {packed_rows} rows at a time")
        stored = (*shape[:-2], shape[-2] // packed_rows, shape[-1] * packed_rows)
        return dequantize(raw, t, stored, name=name).reshape(shape)
    if any(s < 0 for s in shape):
        raise GGUFError(f"tensor {name!r}: negative dimension in shape {shape}")
    layout = BLOCK_LAYOUTS[t]
    row_len = shape[-1] if shape else 1
    if row_len % layout.block_elems:
        raise GGUFError(
            f"tensor {name!r}: row length {row_len} (last dimension of shape {shape}) is not a "
            f"multiple of the {t.name} block size {layout.block_elems}"
        )
    n_elems = 1
    for s in shape:
        n_elems *= s
    n_blocks = n_elems // layout.block_elems
    expected = n_blocks * layout.block_bytes
    if raw.size != expected:
        raise GGUFError(
            f"tensor {name!r}: {t.name} data of shape {shape} takes {expected} bytes "
            f"({n_blocks} blocks of {layout.block_bytes}), but {raw.size} bytes were given"
        )
    blocks = raw.reshape(n_blocks, layout.block_bytes)
    return _dequantize_blocks(blocks, t).reshape(shape)


def dequantize_rows(raw_rows: np.ndarray, ggml_type: GGMLType, row_len: int) -> np.ndarray:
    """Dequantize some rows of a tensor, e.g. the embedding rows of a few tokens.

    ``raw_rows`` is uint8 ``(n_rows, row_nbytes(ggml_type, row_len))`` (for
    instance ``table_bytes.reshape(n_vocab, -1)[token_ids]``); returns float32
    ``(n_rows, row_len)``.  A 1-D ``raw_rows`` is one row and gives a 1-D result.
    """
    t = _supported(ggml_type, "<rows>")
    raw_rows = _as_bytes(raw_rows, "raw_rows")
    nbytes = row_nbytes(t, row_len)
    one_row = raw_rows.ndim == 1
    if raw_rows.ndim not in (1, 2) or raw_rows.shape[-1] != nbytes:
        raise GGUFError(
            f"rows of {row_len} {t.name} elements take {nbytes} bytes each; expected raw_rows of "
            f"shape (n_rows, {nbytes}), got {raw_rows.shape}"
        )
    layout = BLOCK_LAYOUTS[t]
    n_rows = 1 if one_row else raw_rows.shape[0]
    blocks = raw_rows.reshape(n_rows * (row_len // layout.block_elems), layout.block_bytes)
    out = _dequantize_blocks(blocks, t).reshape(n_rows, row_len)
    return out[0] if one_row else out
