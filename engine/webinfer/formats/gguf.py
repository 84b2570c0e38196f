"""GGUF reader: header, metadata and tensor table from any byte source.

Layout (little-endian), as in ggml's ``gguf.md``::

    magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
    n_kv x (key: string, type: u32, value)
    n_tensors x (name: string, n_dims: u32, dims: u64 x n_dims, type: u32, offset: u64)
    padding to ``general.alignment`` (default 32)
    tensor data; each tensor's offset is relative to the start of this section

A string is ``len u64`` + UTF-8 bytes.  Dims are listed fastest-varying first
(ggml's ``ne[0]``); :class:`TensorInfo.shape` reverses them to numpy order.

Only the header is read on open.  Every count in the header is checked
against the bytes left in the file before anything is allocated for it, so a
hostile file cannot make us allocate more than it is long.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np

from ..errors import (
    GGUFError,
    GGUFLimitError,
    GGUFMagicError,
    GGUFMetadataError,
    GGUFTruncatedError,
    GGUFVersionError,
    MissingTensorError,
    TensorDataOutOfBoundsError,
)
from .ggml_types import BLOCK_LAYOUTS, GGMLType, type_name
from .packing import packed_entries, unpacked_shape
from .source import ByteSource, BytesSource, FileSource

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # v1 used 32-bit counts and was replaced in 2023
DEFAULT_ALIGNMENT = 32

# Sanity bounds; each is far above any real model and far below what would
# hurt.  Counts are also bounded by the bytes actually left in the file.
MAX_TENSORS = 1 << 20          # llama-405B has ~1.1k tensors
MAX_KV = 1 << 20
MAX_STRING_BYTES = 1 << 26     # 64 MiB: chat templates are KBs, vocab tokens bytes
MAX_DIMS = 4                   # GGML_MAX_DIMS
MAX_NESTING = 4                # arrays of arrays
HEADER_CHUNK = 1 << 20         # read the header in 1 MiB ranges (one HTTP request each in the browser)


class ValueType:
    UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)


_INT_TYPES = (ValueType.UINT8, ValueType.UINT16, ValueType.UINT32, ValueType.UINT64,
              ValueType.INT8, ValueType.INT16, ValueType.INT32, ValueType.INT64)  # fmt: skip

# Fixed-size scalar types: (struct format, numpy dtype).
_SCALARS = {
    ValueType.UINT8: ("<B", np.uint8),
    ValueType.INT8: ("<b", np.int8),
    ValueType.UINT16: ("<H", np.uint16),
    ValueType.INT16: ("<h", np.int16),
    ValueType.UINT32: ("<I", np.uint32),
    ValueType.INT32: ("<i", np.int32),
    ValueType.FLOAT32: ("<f", np.float32),
    ValueType.BOOL: ("<?", np.bool_),
    ValueType.UINT64: ("<Q", np.uint64),
    ValueType.INT64: ("<q", np.int64),
    ValueType.FLOAT64: ("<d", np.float64),
}


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table.

    ``shape`` is in numpy order (slowest first): a weight stored by llama.cpp
    as ``ne = [in, out]`` has ``shape == (out, in)``.  ``offset`` is absolute
    in the file.
    """

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLType
    offset: int
    nbytes: int
    # > 1: the blocks run across rows, ``packed_rows`` rows per row stored in
    # the file (a 256-wide type on 576-wide rows); see formats/packing.py.
    packed_rows: int = 1

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def type_name(self) -> str:
        return self.ggml_type.name


class _Cursor:
    """Sequential reads over a ByteSource, fetched in chunks."""

    def __init__(self, source: ByteSource, chunk: int = HEADER_CHUNK):
        self.source = source
        self.pos = 0
        self._buf = b""
        self._buf_start = 0
        self._chunk = chunk

    @property
    def remaining(self) -> int:
        return self.source.size - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise GGUFTruncatedError(
                f"file ends while reading {what}: needs {n} bytes, {self.remaining} left", offset=self.pos
            )
        start = self.pos - self._buf_start
        if start < 0 or start + n > len(self._buf):
            want = max(n, self._chunk)
            want = min(want, self.source.size - self.pos)
            self._buf = bytes(self.source.read(self.pos, want))
            self._buf_start = self.pos
            start = 0
        self.pos += n
        return self._buf[start : start + n]

    def scalar(self, vtype: int, what: str):
        fmt, _ = _SCALARS[vtype]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.take(8, what))[0]

    def string(self, what: str) -> str:
        at = self.pos
        n = self.u64(f"length of {what}")
        if n > MAX_STRING_BYTES:
            raise GGUFLimitError(f"{what} claims {n} bytes, over the {MAX_STRING_BYTES} limit", offset=at)
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GGUFMetadataError(f"{what} is not valid UTF-8 ({e.reason} at byte {e.start})", offset=at) from None


def _read_value(cur: _Cursor, vtype: int, key: str, depth: int = 0) -> Any:
    if vtype in _SCALARS:
        v = cur.scalar(vtype, f"value of {key!r}")
        return bool(v) if vtype == ValueType.BOOL else v
    if vtype == ValueType.STRING:
        return cur.string(f"value of {key!r}")
    if vtype == ValueType.ARRAY:
        return _read_array(cur, key, depth)[1]
    raise GGUFMetadataError(f"metadata {key!r} has unknown value type {vtype}", offset=cur.pos - 4)


def _read_array(cur: _Cursor, key: str, depth: int = 0) -> tuple[int, Any]:
    """An array value: ``(element type, values)``.

    Scalar elements come back as a 1-D numpy array of the exact dtype; strings
    and nested arrays as a list.
    """
    if depth >= MAX_NESTING:
        raise GGUFLimitError(f"metadata {key!r} nests arrays deeper than {MAX_NESTING}", offset=cur.pos)
    at = cur.pos
    etype = cur.u32(f"element type of {key!r}")
    count = cur.u64(f"element count of {key!r}")
    if etype in _SCALARS:
        fmt, dtype = _SCALARS[etype]
        size = struct.calcsize(fmt)
        if count > cur.remaining // size:
            raise GGUFLimitError(
                f"array {key!r} claims {count} elements of {size} bytes but only {cur.remaining} bytes remain",
                offset=at,
            )
        raw = cur.take(count * size, f"array {key!r}")
        if etype == ValueType.BOOL:  # any nonzero byte is true; numpy bools must be 0 or 1
            return etype, np.frombuffer(raw, dtype=np.uint8) != 0
        arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        return etype, arr.astype(dtype)  # native byte order, owns its memory
    if etype not in (ValueType.STRING, ValueType.ARRAY):
        raise GGUFMetadataError(f"array {key!r} has unknown element type {etype}", offset=at)
    # Strings take at least 8 bytes each, arrays at least 12.
    min_size = 8 if etype == ValueType.STRING else 12
    if count > cur.remaining // min_size:
        raise GGUFLimitError(
            f"array {key!r} claims {count} elements but only {cur.remaining} bytes remain", offset=at
        )
    return etype, [_read_value(cur, etype, key, depth + 1) for _ in range(count)]


class GGUFFile:
    """A parsed GGUF header over a byte source; tensor data is read on demand.

    >>> g = GGUFFile.open("model.gguf")
    >>> g.metadata["general.architecture"]
    'llama'
    >>> g.tensors["blk.0.attn_q.weight"].shape
    (576, 576)
    """

    def __init__(self, source: ByteSource):
        self.source = source
        cur = _Cursor(source)
        if source.size == 0:
            raise GGUFMagicError("not a GGUF file: the file is empty (0 bytes)")
        magic = cur.take(min(4, source.size), "magic")
        if magic != GGUF_MAGIC[: len(magic)]:
            raise GGUFMagicError(
                f"not a GGUF file: it starts with {bytes(magic[:4])!r}, expected {GGUF_MAGIC!r}"
            )
        if len(magic) < 4:
            raise GGUFTruncatedError(f"file ends inside the magic: only {source.size} bytes", offset=0)
        self.version = cur.u32("version")
        if self.version not in SUPPORTED_VERSIONS:
            # A big-endian file's version 3 reads as 0x03000000 here.
            if int.from_bytes(self.version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
                raise GGUFError("big-endian GGUF files are not supported; convert it on a little-endian machine")
            raise GGUFVersionError(self.version, SUPPORTED_VERSIONS)
        n_tensors = cur.u64("tensor count")
        n_kv = cur.u64("metadata count")
        # A KV entry takes at least 8 (key length) + 4 (type) + 1 bytes; a
        # tensor entry at least 8 + 4 + 4 + 8.
        if n_kv > MAX_KV or n_kv > cur.remaining // 13:
            raise GGUFLimitError(f"header claims {n_kv} metadata entries, more than the file can hold", offset=16)
        if n_tensors > MAX_TENSORS or n_tensors > cur.remaining // 24:
            raise GGUFLimitError(f"header claims {n_tensors} tensors, more than the file can hold", offset=8)

        self.metadata: dict[str, Any] = {}
        # The value type of each key as stored in the file: a ValueType id, or
        # (ValueType.ARRAY, element type id) for arrays.  Writers use it to
        # copy metadata without changing its types.
        self.metadata_types: dict[str, int | tuple[int, int]] = {}
        for i in range(n_kv):
            key = cur.string(f"key of metadata entry {i}")
            vtype = cur.u32(f"type of {key!r}")
            if key in self.metadata:
                raise GGUFMetadataError(f"metadata key {key!r} appears twice", offset=cur.pos)
            if vtype == ValueType.ARRAY:
                etype, self.metadata[key] = _read_array(cur, key)
                self.metadata_types[key] = (vtype, etype)
            else:
                self.metadata[key] = _read_value(cur, vtype, key)
                self.metadata_types[key] = vtype

        alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if "general.alignment" in self.metadata and self.metadata_types["general.alignment"] not in _INT_TYPES:
            raise GGUFMetadataError(f"general.alignment must have an integer type, got {alignment!r}")
        if alignment <= 0 or alignment & (alignment - 1) or alignment > 1 << 20:
            raise GGUFMetadataError(f"general.alignment must be a power of two up to 2**20, got {alignment!r}")
        self.alignment = alignment

        raw_infos = []
        for i in range(n_tensors):
            name = cur.string(f"name of tensor {i}")
            n_dims = cur.u32(f"dimension count of {name!r}")
            if not 1 <= n_dims <= MAX_DIMS:
                raise GGUFLimitError(f"tensor {name!r} has {n_dims} dimensions (1..{MAX_DIMS} allowed)", offset=cur.pos)
            dims = [cur.u64(f"dimension of {name!r}") for _ in range(n_dims)]
            ttype = cur.u32(f"type of {name!r}")
            offset = cur.u64(f"data offset of {name!r}")
            raw_infos.append((name, dims, ttype, offset))

        self.data_offset = -(-cur.pos // alignment) * alignment
        self.header_size = cur.pos
        self.tensors: dict[str, TensorInfo] = {}
        for name, dims, ttype, offset in raw_infos:
            self.tensors[name] = self._check_tensor(name, dims, ttype, offset)
        for name, k in packed_entries(self.metadata).items():  # webinfer's packed rows
            t = self.info(name)
            self.tensors[name] = replace(t, shape=unpacked_shape(name, t.shape, k), packed_rows=k)

    # ------------------------------------------------------------------ build

    @classmethod
    def open(cls, path: str | os.PathLike) -> "GGUFFile":
        """Parse the header of a local file (the file stays open for tensor reads)."""
        source = FileSource(path)
        try:
            return cls(source)
        except BaseException:
            source.close()
            raise

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> "GGUFFile":
        return cls(BytesSource(data))

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_tensor(self, name: str, dims: list[int], ttype: int, offset: int) -> TensorInfo:
        if name in self.tensors:
            raise GGUFMetadataError(f"tensor {name!r} appears twice in the tensor table")
        try:
            gtype = GGMLType(ttype)
            layout = BLOCK_LAYOUTS[gtype]
        except (ValueError, KeyError):
            raise GGUFError(f"tensor {name!r} has unknown type id {ttype} ({type_name(ttype)})") from None
        n = 1
        for d in dims:
            if d == 0 or d > self.source.size * 8:  # more elements than bits in the file
                raise GGUFLimitError(f"tensor {name!r} has impossible dimension {d} (dims {dims})")
            n *= d
        if n > self.source.size * 8:
            raise GGUFLimitError(f"tensor {name!r} claims {n} elements, more than the file could hold")
        if dims[0] % layout.block_elems:
            raise GGUFError(
                f"tensor {name!r}: row length {dims[0]} is not a multiple of the {gtype.name} block size "
                f"{layout.block_elems}"
            )
        nbytes = n // layout.block_elems * layout.block_bytes
        if offset % self.alignment:
            raise GGUFError(f"tensor {name!r} data offset {offset} is not aligned to {self.alignment}")
        start = self.data_offset + offset
        if start + nbytes > self.source.size:
            raise TensorDataOutOfBoundsError(
                f"tensor {name!r} data ({nbytes} bytes at {start}) runs past the end of the file "
                f"({self.source.size} bytes); the file is truncated"
            )
        return TensorInfo(name, tuple(reversed(dims)), gtype, start, nbytes)

    # ------------------------------------------------------------------ access

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors.values())

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise MissingTensorError(f"the model file has no tensor {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as a uint8 array (one read from the source)."""
        t = self.info(name)
        return np.frombuffer(bytes(self.source.read(t.offset, t.nbytes)), dtype=np.uint8)

    def tensor(self, name: str) -> np.ndarray:
        """The tensor dequantized to float32 in numpy shape order."""
        from .quants import dequantize

        t = self.info(name)
        return dequantize(self.raw(name), t.ggml_type, t.shape, name=name, packed_rows=t.packed_rows)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise GGUFMetadataError("general.architecture is missing: this GGUF does not describe a model")
        return arch
