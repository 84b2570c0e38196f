"""ggml tensor types: ids, block sizes and names.

The names are the same strings everywhere (GGUF, our Python, shader file
names): ``Q4_1`` here is ``matvec_q4_1.wgsl`` there.  Ids follow ggml's
``enum ggml_type``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class GGMLType(enum.IntEnum):
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35


@dataclass(frozen=True)
class BlockLayout:
    """How many elements one block holds and how many bytes it takes."""

    block_elems: int
    block_bytes: int


# Layouts of every type a GGUF file may name, so that sizes can be checked
# even for tensors we cannot dequantize.
BLOCK_LAYOUTS: dict[GGMLType, BlockLayout] = {
    GGMLType.F32: BlockLayout(1, 4),
    GGMLType.F16: BlockLayout(1, 2),
    GGMLType.BF16: BlockLayout(1, 2),
    GGMLType.F64: BlockLayout(1, 8),
    GGMLType.I8: BlockLayout(1, 1),
    GGMLType.I16: BlockLayout(1, 2),
    GGMLType.I32: BlockLayout(1, 4),
    GGMLType.I64: BlockLayout(1, 8),
    GGMLType.Q4_0: BlockLayout(32, 2 + 16),
    GGMLType.Q4_1: BlockLayout(32, 2 + 2 + 16),
    GGMLType.Q5_0: BlockLayout(32, 2 + 4 + 16),
    GGMLType.Q5_1: BlockLayout(32, 2 + 2 + 4 + 16),
    GGMLType.Q8_0: BlockLayout(32, 2 + 32),
    GGMLType.Q8_1: BlockLayout(32, 4 + 4 + 32),
    GGMLType.Q2_K: BlockLayout(256, 2 + 2 + 16 + 64),
    GGMLType.Q3_K: BlockLayout(256, 2 + 12 + 32 + 64),
    GGMLType.Q4_K: BlockLayout(256, 2 + 2 + 12 + 128),
    GGMLType.Q5_K: BlockLayout(256, 2 + 2 + 12 + 32 + 128),
    GGMLType.Q6_K: BlockLayout(256, 2 + 16 + 128 + 64),
    GGMLType.Q8_K: BlockLayout(256, 4 + 256 + 32),
    GGMLType.IQ2_XXS: BlockLayout(256, 2 + 64),
    GGMLType.IQ2_XS: BlockLayout(256, 2 + 64 + 8),
    GGMLType.IQ3_XXS: BlockLayout(256, 2 + 96),
    GGMLType.IQ1_S: BlockLayout(256, 2 + 32 + 16),
    GGMLType.IQ4_NL: BlockLayout(32, 2 + 16),
    GGMLType.IQ3_S: BlockLayout(256, 2 + 64 + 32 + 8 + 4),
    GGMLType.IQ2_S: BlockLayout(256, 2 + 64 + 16),
    GGMLType.IQ4_XS: BlockLayout(256, 2 + 2 + 4 + 128),
    GGMLType.IQ1_M: BlockLayout(256, 32 + 16 + 8),
    GGMLType.TQ1_0: BlockLayout(256, 2 + 48 + 4),
    GGMLType.TQ2_0: BlockLayout(256, 2 + 64),
}


def type_name(type_id: int) -> str:
    """The ggml name of a type id, or ``type#N`` for ids ggml never defined."""
    try:
        return GGMLType(type_id).name
    except ValueError:
        return f"type#{type_id}"


def tensor_nbytes(ggml_type: GGMLType, n_elements: int) -> int:
    """Bytes taken by ``n_elements`` of ``ggml_type`` (a multiple of its block)."""
    layout = BLOCK_LAYOUTS[ggml_type]
    return n_elements // layout.block_elems * layout.block_bytes
