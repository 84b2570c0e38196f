"""Quantized weights on the device: the aligned layout they are repacked into.

A WGSL storage buffer is an array of 32-bit words, and ggml blocks of 18, 20,
22, 34 or 210 bytes do not line up with words.  Reading them in place would
cost shifts and two loads per field, so at upload each matrix is rearranged
(same bytes, same size: nothing is dequantized) into sections of aligned
words.  ``_quant_<type>.wgsl`` reads exactly these layouts; R rows, C = K/32
chunks per row, B = K/256 super-blocks per row:

=======  ==========================================================  ======
type     sections, in order                                          size
=======  ==========================================================  ======
F32      the floats, row-major                                       = GGUF
F16      the halves, row-major                                       = GGUF
Q4_0     QS R*C*16 bytes | D R*C halves                              = GGUF
Q4_1     QS R*C*16 bytes | DM R*C words (d | m << 16)                = GGUF
Q5_0     QS R*C*16 bytes | QH R*C words | D R*C halves               = GGUF
Q8_0     QS R*C*32 bytes | D R*C halves                              = GGUF
Q4_K     the 144-byte blocks as they are (already word-aligned)      = GGUF
Q6_K     each 210-byte block + 2 zero bytes (212 = 53 words)         +1%
=======  ==========================================================  ======

Rows of one matrix (or of several stacked, see :func:`concat_sections`) are
contiguous inside each section, so a row range of a matrix is addressed by
(first row, rows stored) and matrices that read the same input can share a
buffer (fused Q/K/V and gate/up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import UnsupportedTensorTypeError
from ...formats.ggml_types import BLOCK_LAYOUTS, GGMLType
from ...formats.quants import dequantize
from ..base import Tensor  # noqa: F401  (documentation: a QuantMatrix is the backend's Tensor for weights)
from .kernels import WEIGHT_FORMATS

CHUNK = 32  # elements per chunk: the unit every matvec/matmul/embed kernel works in


def _u16(blocks: np.ndarray, a: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[:, a : a + 2]).view("<u2").reshape(-1)


def _u32(blocks: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.ascontiguousarray(blocks[:, a:b]).view("<u4").reshape(-1)


def _halves(h: np.ndarray) -> np.ndarray:
    """uint16 values packed two per word (a zero half pads an odd count)."""
    if h.size % 2:
        h = np.concatenate([h, np.zeros(1, np.uint16)])
    return h.view("<u4")


def section_bytes(fmt: str, rows: int, cols: int) -> list[int]:
    """Byte sizes of the sections of a ``rows x cols`` matrix of ``fmt`` (before padding to a word)."""
    c = cols // CHUNK
    n = rows * c
    return {
        "F32": lambda: [rows * cols * 4],
        "F16": lambda: [rows * cols * 2],
        "Q4_0": lambda: [n * 16, n * 2],
        "Q4_1": lambda: [n * 16, n * 4],
        "Q5_0": lambda: [n * 16, n * 4, n * 2],
        "Q8_0": lambda: [n * 32, n * 2],
        "Q4_K": lambda: [rows * (cols // 256) * 144],
        "Q6_K": lambda: [rows * (cols // 256) * 212],
    }[fmt]()


def check_format(fmt: str, cols: int, name: str) -> None:
    if fmt not in WEIGHT_FORMATS:
        raise UnsupportedTensorTypeError(name, fmt, list(WEIGHT_FORMATS))
    need = 256 if fmt.endswith("_K") else CHUNK
    if cols % need:
        raise UnsupportedTensorTypeError(name, f"{fmt} with rows of {cols} (not a multiple of {need})",
                                         list(WEIGHT_FORMATS))


def repack(raw: np.ndarray, fmt: str, rows: int, cols: int) -> np.ndarray:
    """GGUF bytes of a ``rows x cols`` matrix -> the words of our layout (uint32)."""
    raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    t = GGMLType[fmt]
    bb = BLOCK_LAYOUTS[t].block_bytes
    if fmt in ("F32", "F16"):
        return raw.view("<u4").copy()
    blocks = raw.reshape(-1, bb)
    if fmt == "Q4_0":
        parts = [_u32(blocks, 2, 18), _halves(_u16(blocks, 0))]
    elif fmt == "Q4_1":
        parts = [_u32(blocks, 4, 20), _u32(blocks, 0, 4)]
    elif fmt == "Q5_0":
        parts = [_u32(blocks, 6, 22), _u32(blocks, 2, 6), _halves(_u16(blocks, 0))]
    elif fmt == "Q8_0":
        parts = [_u32(blocks, 2, 34), _halves(_u16(blocks, 0))]
    elif fmt == "Q4_K":
        parts = [blocks.view("<u4").reshape(-1)]
    elif fmt == "Q6_K":
        padded = np.zeros((blocks.shape[0], 212), np.uint8)
        padded[:, :210] = blocks
        parts = [padded.view("<u4").reshape(-1)]
    else:  # pragma: no cover -- check_format rejects it first
        raise UnsupportedTensorTypeError("<matrix>", fmt, list(WEIGHT_FORMATS))
    return np.concatenate(parts)


@dataclass
class WeightPart:
    """Rows ``row0 .. row0 + rows`` of a matrix, stored in ``buffer`` starting at its row ``buf_row0``."""

    buffer: object          # devices.base.Buffer
    rows: int               # rows of this part
    row0: int               # first row of the matrix that this part holds
    buf_rows: int           # rows stored in the buffer (sizes its sections)
    buf_row0: int = 0       # where this part's rows start in the buffer


@dataclass(eq=False)
class QuantMatrix:
    """A weight matrix resident on the device, in its quantized format.

    ``shape`` is (rows, cols) in numpy order, as the GGUF tensor; ``parts``
    split it by rows when it exceeds the device's storage binding size.
    """

    name: str
    fmt: str
    rows: int
    cols: int
    parts: list[WeightPart] = field(default_factory=list)

    @property
    def chunks(self) -> int:
        return self.cols // CHUNK

    @property
    def nbytes(self) -> int:
        return sum(sum(section_bytes(self.fmt, p.rows, self.cols)) for p in self.parts)

    def wmat(self, part: WeightPart) -> tuple[int, int, int, int]:
        """The WGSL ``WMat`` of a part: (base word, rows stored, chunks per row, first row)."""
        return (0, part.buf_rows, self.chunks, part.buf_row0)


def row_split(fmt: str, rows: int, cols: int, max_bytes: int) -> list[tuple[int, int]]:
    """Row ranges [(start, stop)] whose packed size each fits in ``max_bytes``."""
    per_row = sum(section_bytes(fmt, 1, cols)) + 8   # + rounding of half sections
    step = max(1, max_bytes // per_row)
    if step >= rows:
        return [(0, rows)]
    step = max(2, step - step % 2)                    # even rows keep half sections word-aligned
    return [(a, min(rows, a + step)) for a in range(0, rows, step)]


def vector_f32(raw: np.ndarray, info) -> np.ndarray:
    """A 1-D tensor (norm weight, bias) as float32."""
    return dequantize(raw, info.ggml_type, info.shape, name=info.name).reshape(-1).astype(np.float32)


def concat_plan(mats: list[QuantMatrix]) -> list[tuple[int, int, int]] | None:
    """Copies [(src section offset, dst offset, nbytes)] per matrix that stack ``mats`` row-wise
    in one buffer, or None when they cannot share one (other format or width, split,
    or a half-word section boundary).  Returns a flat list in order of ``mats``."""
    fmt, cols = mats[0].fmt, mats[0].cols
    if any(m.fmt != fmt or m.cols != cols or len(m.parts) != 1 for m in mats):
        return None
    rows = [m.rows for m in mats]
    total_sections = section_bytes(fmt, sum(rows), cols)
    copies = []
    dst_base = 0
    for s_i, s_total in enumerate(total_sections):
        at = dst_base
        for m in mats:
            secs = section_bytes(fmt, m.rows, cols)
            src_off = sum(_word_align(x) for x in secs[:s_i])
            n = secs[s_i]
            if n % 4 or at % 4:
                return None
            copies.append((mats.index(m), src_off, at, n))
            at += n
        dst_base += _word_align(s_total)
    return copies


def _word_align(n: int) -> int:
    return (n + 3) // 4 * 4


def packed_nbytes(fmt: str, rows: int, cols: int) -> int:
    """Bytes of the repacked buffer (each section padded to a word)."""
    return sum(_word_align(x) for x in section_bytes(fmt, rows, cols))
