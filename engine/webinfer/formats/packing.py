"""Packed rows: 256-wide block types on tensors whose rows are not a multiple of 256.

The k-quants (Q2_K..Q6_K) code 256 elements per block, so ggml cannot store a
tensor with rows of 576 (SmolLM2's width) in them; llama.cpp falls back to
32-wide types for such tensors.  webinfer stores the tensor's elements, in
row-major order, as one stream of blocks, and writes it to the GGUF file
under the shape ``(rows / k, cols * k)`` where ``k`` is the smallest number
of rows whose elements fill whole blocks (``k = 4`` for 576-wide rows and
256-element blocks).  Two metadata arrays name the packed tensors::

    webinfer.packed_rows.tensors  [string]  tensor names
    webinfer.packed_rows.counts   [uint32]  k for each of them

The bytes are standard blocks of a standard type, so gguf-py lists and
dequantizes such a file (it sees the stored shape); llama.cpp refuses it
with a shape error, as it should.  Since every such width is a multiple of
the type's sub-block (16 or 32 elements), a sub-block never spans two rows:
a kernel reads row ``r`` as sub-blocks ``r * cols / sub`` and on, wherever
their 256-block starts.  :class:`~webinfer.formats.gguf.GGUFFile` presents
these tensors with their true shape and ``TensorInfo.packed_rows == k``.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import GGUFMetadataError

PACKED_TENSORS_KEY = "webinfer.packed_rows.tensors"
PACKED_COUNTS_KEY = "webinfer.packed_rows.counts"


def rows_per_pack(shape: tuple[int, ...], block_elems: int) -> int:
    """The smallest k such that k rows hold whole blocks; 0 if the row count is not a multiple of it."""
    cols = shape[-1]
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    k = block_elems // math.gcd(cols, block_elems)
    return k if rows % k == 0 else 0


def stored_shape(shape: tuple[int, ...], k: int) -> tuple[int, ...]:
    """The shape a tensor of true ``shape`` is written with when ``k`` rows are packed (numpy order)."""
    if k == 1:
        return tuple(shape)
    return (*shape[:-2], shape[-2] // k, shape[-1] * k)


def packed_entries(metadata: dict[str, Any]) -> dict[str, int]:
    """``{tensor name: k}`` from a file's metadata (empty when it packs nothing)."""
    names = metadata.get(PACKED_TENSORS_KEY)
    counts = metadata.get(PACKED_COUNTS_KEY)
    if names is None and counts is None:
        return {}
    if names is None or counts is None or len(names) != len(counts):
        raise GGUFMetadataError(f"{PACKED_TENSORS_KEY} and {PACKED_COUNTS_KEY} must both be present, of equal length")
    out = {}
    for name, k in zip(names, counts):
        k = int(k)
        if not isinstance(name, str) or not 1 <= k <= 1024:
            raise GGUFMetadataError(f"bad packed-rows entry {name!r}: {k}")
        out[name] = k
    return out


def unpacked_shape(name: str, stored: tuple[int, ...], k: int) -> tuple[int, ...]:
    """The true shape of a tensor stored as ``stored`` with ``k`` rows per stored row."""
    if len(stored) < 2 or stored[-1] % k:
        raise GGUFMetadataError(f"tensor {name!r} of stored shape {stored} cannot hold rows packed {k} at a time")
    return (*stored[:-2], stored[-2] * k, stored[-1] // k)
