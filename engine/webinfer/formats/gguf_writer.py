"""GGUF v3 writer: metadata and already-encoded tensor data to a file.

The layout is the one :mod:`webinfer.formats.gguf` reads::

    magic | version 3 | n_tensors u64 | n_kv u64 | key/values | tensor infos
    | padding to the alignment | tensor data, each tensor padded to the alignment

>>> w = GGUFWriter("tiny.gguf")
>>> w.add_metadata("general.architecture", "llama")
>>> w.add_metadata("llama.block_count", 2, ValueType.UINT32)
>>> w.add_tensor("x", np.ones((2, 32), np.float32), GGMLType.F32, (2, 32))
>>> w.write()

Metadata types follow gguf-py's ``GGUFValueType.get_type`` where a Python
value does not say its type: ``bool`` is BOOL, ``float`` FLOAT32, ``str``
STRING, ``int`` INT32 (widened to INT64 or UINT64 only when the value does not
fit).  numpy scalars and arrays keep their exact dtype.  A type can always be
given explicitly: a :class:`ValueType` id, or ``(ValueType.ARRAY, elem)``
where ``elem`` is an id or, for arrays of arrays, again such a tuple.

Tensors are given as their raw bytes (``bytes`` or a uint8 array) in ggml's
encoding; float and integer tensors may also be passed as numpy arrays of the
matching dtype (float32 for F32, float16 for F16, ...).  Tensor data is kept
by reference (not copied) until :meth:`GGUFWriter.write`, so don't change an
array between adding it and writing.
"""

from __future__ import annotations

import os
import struct
from typing import IO, Any

import numpy as np

from .ggml_types import BLOCK_LAYOUTS, GGMLType, tensor_nbytes
from .gguf import _SCALARS, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS, GGUFFile, ValueType

__all__ = ["GGUFWriter", "ValueType", "copy_metadata"]

GGUF_VERSION = 3

# numpy dtype -> value type, for numpy scalars and arrays.
_DTYPE_TO_VTYPE = {np.dtype(dtype): vtype for vtype, (_, dtype) in _SCALARS.items()}
# numpy dtype a float/integer tensor may be passed as.
_TENSOR_DTYPES = {
    GGMLType.F32: np.float32, GGMLType.F16: np.float16, GGMLType.F64: np.float64,
    GGMLType.I8: np.int8, GGMLType.I16: np.int16, GGMLType.I32: np.int32, GGMLType.I64: np.int64,
}  # fmt: skip



def _int_type(lo: int, hi: int) -> int:
    """The narrowest of INT32, INT64, UINT64 that holds every int in ``[lo, hi]``."""
    if -(1 << 31) <= lo and hi < 1 << 31:
        return ValueType.INT32
    if -(1 << 63) <= lo and hi < 1 << 63:
        return ValueType.INT64
    if 0 <= lo and hi < 1 << 64:
        return ValueType.UINT64
    raise ValueError(f"integer {lo if lo < -(1 << 63) else hi} does not fit in 64 bits")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def infer_type(value: Any):
    """The value type ``value`` is written as, or None for an empty list (unknown element type)."""
    if isinstance(value, (bool, np.bool_)):
        return ValueType.BOOL
    if isinstance(value, np.generic):
        try:
            return _DTYPE_TO_VTYPE[value.dtype.newbyteorder("=")]
        except KeyError:
            raise TypeError(f"numpy {value.dtype} has no GGUF value type") from None
    if _is_int(value):
        return _int_type(value, value)
    if isinstance(value, float):
        return ValueType.FLOAT32
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ValueError(f"metadata arrays must be 1-D, got shape {value.shape}")
        vtype = _DTYPE_TO_VTYPE.get(value.dtype.newbyteorder("="))
        if vtype is not None:
            return (ValueType.ARRAY, vtype)
        value = value.tolist()  # strings, objects: infer from the elements
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        if all(_is_int(x) for x in value):
            return (ValueType.ARRAY, _int_type(min(value), max(value)))
        elems = [infer_type(x) for x in value]
        if all(e is None or isinstance(e, tuple) for e in elems):
            return (ValueType.ARRAY, ValueType.ARRAY)  # each inner array carries its own element type
        if any(e != elems[0] for e in elems):
            kinds = sorted({type(x).__name__ for x in value})
            raise TypeError(f"array elements must all have one type, got {', '.join(kinds)}")
        return (ValueType.ARRAY, elems[0])
    raise TypeError(f"no GGUF value type for {type(value).__name__}")


def _check_vtype(vtype) -> None:
    if isinstance(vtype, tuple):
        if len(vtype) != 2 or vtype[0] != ValueType.ARRAY:
            raise ValueError(f"an array type is (ValueType.ARRAY, element type), got {vtype!r}")
        _check_vtype(vtype[1])
    elif vtype not in _SCALARS and vtype not in (ValueType.STRING, ValueType.ARRAY):
        raise ValueError(f"unknown GGUF value type {vtype!r}")


def _encode_string(s: Any, out: bytearray) -> None:
    if not isinstance(s, str):
        raise TypeError(f"a STRING value must be str, got {type(s).__name__}")
    try:
        b = s.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate
        raise ValueError(f"string {s[:40]!r} is not encodable as UTF-8 ({e.reason})") from None
    out += struct.pack("<Q", len(b))
    out += b


def _encode_scalars(values: Any, vtype: int) -> bytes:
    """A sequence of scalars as packed little-endian values of ``vtype``, range-checked."""
    dtype = np.dtype(_SCALARS[vtype][1])
    arr = np.asarray(values) if len(values) else np.zeros(0, dtype)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of scalars, got shape {arr.shape}")
    if dtype.kind in "iu":
        if arr.size and (arr.dtype.kind not in "iub" or arr.dtype == object):
            raise TypeError(f"{_vtype_name(vtype)} array needs integers, got {arr.dtype}")
        info = np.iinfo(dtype)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise ValueError(f"array values {int(arr.min())}..{int(arr.max())} do not fit {_vtype_name(vtype)}")
    elif dtype.kind == "f" and arr.size and arr.dtype.kind not in "iubf":
        raise TypeError(f"{_vtype_name(vtype)} array needs numbers, got {arr.dtype}")
    elif dtype.kind == "b" and arr.size and arr.dtype.kind != "b":
        raise TypeError(f"BOOL array needs bools, got {arr.dtype}")
    return arr.astype(dtype.newbyteorder("<")).tobytes()


def _vtype_name(vtype: int) -> str:
    names = [n for n, v in vars(ValueType).items() if not n.startswith("_") and v == vtype]
    return names[0] if names else f"type#{vtype}"


def _encode_value(value: Any, vtype, out: bytearray) -> None:
    """Append ``value`` encoded as ``vtype`` (without the type id itself) to ``out``."""
    if isinstance(vtype, tuple) or vtype == ValueType.ARRAY:
        if isinstance(vtype, tuple):
            elem = vtype[1]
        else:  # a bare ARRAY: infer the element type
            inferred = infer_type(value)
            elem = ValueType.STRING if inferred is None else inferred[1]
        if isinstance(value, np.ndarray) and value.ndim != 1:
            raise ValueError(f"metadata arrays must be 1-D, got shape {value.shape}")
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise TypeError(f"an ARRAY value must be a list, tuple or 1-D numpy array, got {type(value).__name__}")
        elem_id = elem[0] if isinstance(elem, tuple) else elem
        out += struct.pack("<IQ", elem_id, len(value))
        if elem_id in _SCALARS:
            out += _encode_scalars(value, elem_id)
        elif elem_id == ValueType.STRING:
            for s in value:
                _encode_string(s, out)
        else:  # arrays of arrays
            for inner in value:
                _encode_value(inner, elem, out)
    elif vtype == ValueType.STRING:
        _encode_string(value, out)
    else:
        fmt = _SCALARS[vtype][0]
        is_bool = isinstance(value, (bool, np.bool_))
        if vtype == ValueType.BOOL:
            ok = is_bool
        elif fmt[1] in "fd":
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not is_bool
        else:
            ok = isinstance(value, (int, np.integer)) and not is_bool
        if not ok:
            kind = "a bool" if vtype == ValueType.BOOL else "a number" if fmt[1] in "fd" else "an integer"
            raise TypeError(f"a {_vtype_name(vtype)} value must be {kind}, got {type(value).__name__} {value!r}")
        try:
            out += struct.pack(fmt, value if fmt[1] in "fd?" else int(value))
        except (struct.error, OverflowError) as e:
            raise ValueError(f"{value!r} does not fit {_vtype_name(vtype)}: {e}") from None


class GGUFWriter:
    """Collects metadata and tensors, then writes one GGUF v3 file with :meth:`write`."""

    def __init__(self, path_or_fileobj: str | os.PathLike | IO[bytes], *, alignment: int = DEFAULT_ALIGNMENT):
        self._dest = path_or_fileobj
        self.alignment = self._checked_alignment(alignment)
        self._kv: dict[str, tuple[Any, Any]] = {}  # key -> (value, vtype)
        self._tensors: dict[str, tuple[GGMLType, tuple[int, ...], memoryview]] = {}
        self._written = False

    @staticmethod
    def _checked_alignment(alignment: Any) -> int:
        if not _is_int(alignment) or alignment <= 0 or alignment & (alignment - 1) or alignment > 1 << 20:
            raise ValueError(f"alignment must be a power of two up to 2**20, got {alignment!r}")
        return int(alignment)

    def add_metadata(self, key: str, value: Any, vtype=None) -> None:
        """Add one key; ``vtype`` (a ValueType id or ``(ARRAY, elem)``) defaults to the inferred type.

        ``general.alignment`` also sets the writer's alignment (and is a UINT32
        unless told otherwise, as llama.cpp and gguf-py require).
        """
        if not isinstance(key, str):
            raise TypeError(f"metadata keys are str, got {type(key).__name__}")
        if key in self._kv:
            raise ValueError(f"metadata key {key!r} added twice")
        _encode_string(key, bytearray())  # a key that is not UTF-8 fails here, not in write()
        if key == "general.alignment":
            self.alignment = self._checked_alignment(int(value) if isinstance(value, np.integer) else value)
            vtype = ValueType.UINT32 if vtype is None else vtype
        if vtype is None:
            vtype = infer_type(value)
            if vtype is None:
                raise ValueError(f"cannot infer the element type of the empty array {key!r}; pass vtype")
        _check_vtype(vtype)
        try:  # encode now so that bad values fail here, next to their key
            _encode_value(value, vtype, bytearray())
        except (TypeError, ValueError) as e:
            raise type(e)(f"metadata {key!r}: {e}") from None
        self._kv[key] = (value, vtype)

    def add_tensor(self, name: str, raw: np.ndarray | bytes, ggml_type: GGMLType, shape: tuple[int, ...]) -> None:
        """Add a tensor of numpy-order ``shape`` whose data ``raw`` is already encoded as ``ggml_type``."""
        if not isinstance(name, str):
            raise TypeError(f"tensor names are str, got {type(name).__name__}")
        if name in self._tensors:
            raise ValueError(f"tensor {name!r} added twice")
        _encode_string(name, bytearray())
        ggml_type = GGMLType(ggml_type)
        shape = tuple(int(d) for d in shape)
        if not 1 <= len(shape) <= MAX_DIMS or min(shape) < 1:
            raise ValueError(f"tensor {name!r}: shape {shape} must have 1..{MAX_DIMS} dimensions, each >= 1")
        block = BLOCK_LAYOUTS[ggml_type].block_elems
        if shape[-1] % block:
            raise ValueError(
                f"tensor {name!r}: row length {shape[-1]} is not a multiple of the {ggml_type.name} block size {block}"
            )
        if isinstance(raw, np.ndarray) and raw.dtype != np.uint8:
            want = _TENSOR_DTYPES.get(ggml_type)
            if want is None or raw.dtype.newbyteorder("=") != np.dtype(want):
                raise TypeError(
                    f"tensor {name!r}: pass {ggml_type.name} data as raw uint8 bytes"
                    + (f" or a {np.dtype(want)} array" if want else "")
                    + f", not a {raw.dtype} array"
                )
            raw = np.ascontiguousarray(raw, dtype=np.dtype(want).newbyteorder("<"))
        data = memoryview(np.ascontiguousarray(raw) if isinstance(raw, np.ndarray) else raw).cast("B")
        n = 1
        for d in shape:
            n *= d
        expected = tensor_nbytes(ggml_type, n)
        if data.nbytes != expected:
            raise ValueError(
                f"tensor {name!r}: {ggml_type.name} data of shape {shape} takes {expected} bytes, got {data.nbytes}"
            )
        self._tensors[name] = (ggml_type, shape, data)

    def _pad(self, n: int) -> int:
        return -n % self.alignment

    def header_bytes(self) -> bytes:
        """Everything before the tensor data, padding included."""
        kv = dict(self._kv)
        if self.alignment != DEFAULT_ALIGNMENT and "general.alignment" not in kv:
            kv["general.alignment"] = (self.alignment, ValueType.UINT32)
        out = bytearray(GGUF_MAGIC)
        out += struct.pack("<IQQ", GGUF_VERSION, len(self._tensors), len(kv))
        for key, (value, vtype) in kv.items():
            _encode_string(key, out)
            out += struct.pack("<I", vtype[0] if isinstance(vtype, tuple) else vtype)
            _encode_value(value, vtype, out)
        offset = 0
        for name, (ggml_type, shape, data) in self._tensors.items():
            _encode_string(name, out)
            out += struct.pack("<I", len(shape))
            out += struct.pack(f"<{len(shape)}Q", *reversed(shape))  # ggml order: ne[0] first
            out += struct.pack("<IQ", ggml_type, offset)
            offset += data.nbytes + self._pad(data.nbytes)
        out += bytes(self._pad(len(out)))
        return bytes(out)

    def write(self) -> None:
        """Write the file (once)."""
        if self._written:
            raise RuntimeError("this GGUFWriter has already written its file")
        header = self.header_bytes()
        if isinstance(self._dest, (str, os.PathLike)):
            with open(self._dest, "wb") as f:
                self._write_to(f, header)
        else:
            self._write_to(self._dest, header)
        self._written = True

    def _write_to(self, f: IO[bytes], header: bytes) -> None:
        f.write(header)
        for _, _, data in self._tensors.values():
            f.write(data)
            f.write(bytes(self._pad(data.nbytes)))


def copy_metadata(src: GGUFFile) -> list[tuple[str, Any, Any]]:
    """``(key, value, vtype)`` for every metadata key of ``src``, with its original type.

    >>> for key, value, vtype in copy_metadata(g):
    ...     writer.add_metadata(key, value, vtype)

    Nested arrays keep the element type of their inner arrays when those hold
    scalars (they read back as typed numpy arrays); an empty inner array of
    strings or of arrays is written as an empty array of strings.
    """
    return [(key, value, src.metadata_types[key]) for key, value in src.metadata.items()]
