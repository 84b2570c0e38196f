"""The GGUF reader and writer, against gguf-py and against hostile files.

gguf-py (``gguf.GGUFReader`` / ``gguf.GGUFWriter``, the code llama.cpp's own
Python tools use) is the independent oracle: every file we write must read
the same with it as with our reader, and files it writes must read the same
with ours.  Malformed files are built byte by byte with the small builders
below, so each test states exactly which field is wrong, and each must raise
its own error class.  A hypothesis test mutates a small valid file and checks
that nothing but a :class:`WebinferError` ever escapes.
"""

from __future__ import annotations

import io
import math
import struct
import time
import tracemalloc
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest

from webinfer.errors import (
    GGUFError,
    GGUFLimitError,
    GGUFMagicError,
    GGUFMetadataError,
    GGUFTruncatedError,
    GGUFVersionError,
    MissingTensorError,
    ModelFileNotFoundError,
    TensorDataOutOfBoundsError,
    UnsupportedTensorTypeError,
    WebinferError,
)
from webinfer.formats import gguf as gguf_mod
from webinfer.formats.ggml_types import BLOCK_LAYOUTS, GGMLType
from webinfer.formats.gguf import GGUFFile, ValueType as VT
from webinfer.formats.gguf_writer import GGUFWriter, copy_metadata
from webinfer.formats.quants import SUPPORTED_TYPES
from webinfer.formats.source import FileSource

gguf = pytest.importorskip("gguf")

ARRAY = VT.ARRAY


# ------------------------------------------------------------------ helpers


def _plain(v):
    """Metadata as plain Python values: numpy arrays and scalars become lists and numbers."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _flat(v) -> list:
    """Nested lists flattened, the way gguf-py's ``ReaderField.contents`` returns arrays of arrays."""
    return [y for x in v for y in _flat(x)] if isinstance(v, list) else [v]


def _ref_type(field) -> int | tuple[int, int]:
    """A gguf-py field's type in our ``metadata_types`` form."""
    vtype = int(field.types[0])
    if vtype != ARRAY:
        return vtype
    return (ARRAY, int(field.parts[3][0]))  # parts: key length, key, value type, element type, count, ...


def assert_same_as_gguf_py(path) -> GGUFFile:
    """Every metadata key, value and type and every tensor entry of ``path`` equal gguf-py's reading."""
    ref = gguf.GGUFReader(path)
    g = GGUFFile.open(path)
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert list(g.metadata) == list(fields)  # same keys, same order
    for key, field in fields.items():
        assert g.metadata_types[key] == _ref_type(field), key
        ours = _plain(g.metadata[key])
        if field.types[0] == ARRAY and len(field.types) > 1 and field.types[1] == ARRAY:
            ours = _flat(ours)  # gguf-py flattens arrays of arrays
        assert ours == field.contents(), key
    assert g.data_offset == ref.data_offset
    assert g.alignment == ref.alignment
    assert [t.name for t in g] == [t.name for t in ref.tensors]
    for t in ref.tensors:
        ours = g.info(t.name)
        assert ours.shape == tuple(reversed(t.shape.tolist())), t.name  # gguf-py keeps ggml order
        assert int(ours.ggml_type) == int(t.tensor_type), t.name
        assert ours.offset == t.data_offset, t.name
        assert ours.nbytes == t.n_bytes == t.data.nbytes, t.name
        assert ours.n_elements == t.n_elements, t.name
        assert g.raw(t.name).tobytes() == t.data.tobytes(), t.name
    return g


class CountingSource:
    """A ByteSource wrapper that counts the bytes read through it."""

    def __init__(self, inner):
        self.inner = inner
        self.bytes_read = 0

    @property
    def size(self) -> int:
        return self.inner.size

    def read(self, offset: int, length: int):
        self.bytes_read += length
        return self.inner.read(offset, length)


@contextmanager
def _bounded(max_bytes: int, max_seconds: float):
    """Fail unless the block allocates at most ``max_bytes`` (Python and numpy) and is quick."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= max_bytes, f"allocated {peak} bytes"
    assert elapsed <= max_seconds, f"took {elapsed:.3f} s"


# ---------------------------------------------------- raw GGUF byte builders


def s_(x: str | bytes) -> bytes:
    """A GGUF string: u64 length + bytes."""
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return s_(key) + struct.pack("<I", vtype) + payload


def kv_u32(key: str, v: int) -> bytes:
    return kv(key, VT.UINT32, struct.pack("<I", v))


def arr(etype: int, count: int, payload: bytes = b"") -> bytes:
    return struct.pack("<IQ", etype, count) + payload


def tinfo(name: str | bytes, ne: list[int], ttype: int = GGMLType.F32, offset: int = 0) -> bytes:
    """A tensor-table entry; ``ne`` is in ggml order (fastest first)."""
    return s_(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", ttype, offset)


def gguf_file(kvs=(), infos=(), data=b"", *, version=3, n_tensors=None, n_kv=None, alignment=32) -> bytes:
    head = b"GGUF" + struct.pack(
        "<IQQ", version, len(infos) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv
    )
    head += b"".join(kvs) + b"".join(infos)
    return head + bytes(-len(head) % alignment) + data


F32_DATA = np.arange(32, dtype="<f4").tobytes()


def one_f32(ne=(32,), ttype=GGMLType.F32, offset=0, data=F32_DATA, kvs=()) -> bytes:
    return gguf_file(kvs, [tinfo("t", list(ne), ttype, offset)], data)


# --------------------------------------------------------- metadata fixtures

RNG = np.random.default_rng(1234)

# (key, value, vtype given to the writer (None: inferred), type it must be stored as)
METADATA = [
    ("v.u8", 255, VT.UINT8, VT.UINT8),
    ("v.i8", -128, VT.INT8, VT.INT8),
    ("v.u16", 65535, VT.UINT16, VT.UINT16),
    ("v.i16", -32768, VT.INT16, VT.INT16),
    ("v.u32", 2**32 - 1, VT.UINT32, VT.UINT32),
    ("v.i32", -(2**31), VT.INT32, VT.INT32),
    ("v.f32", -1.5, VT.FLOAT32, VT.FLOAT32),
    ("v.u64", 2**64 - 1, VT.UINT64, VT.UINT64),
    ("v.i64", -(2**63), VT.INT64, VT.INT64),
    ("v.f64", math.pi, VT.FLOAT64, VT.FLOAT64),
    ("v.true", True, VT.BOOL, VT.BOOL),
    ("v.false", False, None, VT.BOOL),
    ("v.str", "héllo wörld ✓ 日本語 🙂\n\t\x00end", None, VT.STRING),
    ("v.empty_str", "", None, VT.STRING),
    ("ключ.🙂", "a unicode key", None, VT.STRING),
    # inferred like gguf-py (int -> INT32), widened only when needed
    ("i.int", 7, None, VT.INT32),
    ("i.neg", -7, None, VT.INT32),
    ("i.int64", 2**40, None, VT.INT64),
    ("i.uint64", 2**63 + 5, None, VT.UINT64),
    ("i.float", 0.25, None, VT.FLOAT32),
    ("i.np_u16", np.uint16(9), None, VT.UINT16),
    ("i.np_f64", np.float64(0.1), None, VT.FLOAT64),
    ("i.np_bool", np.bool_(True), None, VT.BOOL),
    # arrays of every element type; numpy dtypes map exactly
    *[
        (f"a.{np.dtype(dt).name}", arr_, None, (ARRAY, vt))
        for vt, dt, arr_ in [
            (VT.UINT8, np.uint8, RNG.integers(0, 256, 17).astype(np.uint8)),
            (VT.INT8, np.int8, RNG.integers(-128, 128, 5).astype(np.int8)),
            (VT.UINT16, np.uint16, RNG.integers(0, 2**16, 5).astype(np.uint16)),
            (VT.INT16, np.int16, RNG.integers(-(2**15), 2**15, 5).astype(np.int16)),
            (VT.UINT32, np.uint32, RNG.integers(0, 2**32, 5).astype(np.uint32)),
            (VT.INT32, np.int32, RNG.integers(-(2**31), 2**31, 5).astype(np.int32)),
            (VT.UINT64, np.uint64, np.array([0, 2**64 - 1, 12345], np.uint64)),
            (VT.INT64, np.int64, np.array([-(2**63), 2**63 - 1, 0], np.int64)),
            (VT.FLOAT32, np.float32, RNG.standard_normal(6).astype(np.float32)),
            (VT.FLOAT64, np.float64, RNG.standard_normal(6)),
            (VT.BOOL, np.bool_, np.array([True, False, True])),
        ]
    ],
    ("a.strs", ["a", "ü", "", "日本", "🙂" * 3], None, (ARRAY, VT.STRING)),
    ("a.ints", [1, -2, 3], None, (ARRAY, VT.INT32)),
    ("a.ints64", [1, 2**40], None, (ARRAY, VT.INT64)),
    ("a.floats", [0.5, -1.25], None, (ARRAY, VT.FLOAT32)),
    ("a.bools", [True, False], None, (ARRAY, VT.BOOL)),
    ("a.u8_list", [1, 2, 3], (ARRAY, VT.UINT8), (ARRAY, VT.UINT8)),
    ("a.empty_u8", [], (ARRAY, VT.UINT8), (ARRAY, VT.UINT8)),
    ("a.empty_strs", [], (ARRAY, VT.STRING), (ARRAY, VT.STRING)),
    ("a.empty_f64", np.zeros(0), None, (ARRAY, VT.FLOAT64)),
    ("n.ints", [[1, 2], [3], [4, 5, 6]], None, (ARRAY, ARRAY)),
    ("n.strs", [["a", "b"], ["ü"]], None, (ARRAY, ARRAY)),
    ("n.deep", [[[1, 2]], [[3]]], None, (ARRAY, ARRAY)),
    ("n.u16", [np.array([1, 2], np.uint16), np.array([3], np.uint16)], None, (ARRAY, ARRAY)),
    ("n.empty_inner", [[], []], (ARRAY, (ARRAY, VT.STRING)), (ARRAY, ARRAY)),
]


def _expected(value, vtype):
    """What the reader must return for ``value`` written as ``vtype`` (float32 rounding applied)."""
    if vtype == VT.FLOAT32:
        return float(np.float32(value))
    if vtype == (ARRAY, VT.FLOAT32):
        return np.asarray(value, np.float32).tolist()
    return _plain(value)


def _random_blocks(t: GGMLType, shape: tuple[int, ...], rng=RNG) -> np.ndarray:
    """Random bytes for a quantized tensor of numpy ``shape``, with finite f16 scales where we know them."""
    layout = BLOCK_LAYOUTS[t]
    n_blocks = int(np.prod(shape)) // layout.block_elems
    blocks = rng.integers(0, 256, (n_blocks, layout.block_bytes), dtype=np.uint8)
    scale_fields = {GGMLType.Q4_K: (0, 2), GGMLType.Q6_K: (208,), GGMLType.IQ2_XXS: (0,)}
    for off in scale_fields.get(t, ()):
        blocks[:, off : off + 2] = rng.uniform(-2, 2, (n_blocks, 1)).astype("<f2").view(np.uint8)
    return blocks.reshape(-1)


def _tensors():
    """(name, data, type, numpy shape) covering float, integer, simple and k-quant types (same every call)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    Q = gguf.GGMLQuantizationType
    return [
        ("f32", x, GGMLType.F32, (4, 64)),
        ("f32.1d", rng.standard_normal(7).astype(np.float32), GGMLType.F32, (7,)),
        ("f16", x.astype(np.float16), GGMLType.F16, (4, 64)),
        ("bf16", gguf.quants.quantize(x, Q.BF16), GGMLType.BF16, (4, 64)),
        ("q8_0", gguf.quants.quantize(x, Q.Q8_0), GGMLType.Q8_0, (4, 64)),
        ("q4_0", gguf.quants.quantize(x[:, :32], Q.Q4_0).tobytes(), GGMLType.Q4_0, (4, 32)),
        ("q4_k", _random_blocks(GGMLType.Q4_K, (2, 512), rng), GGMLType.Q4_K, (2, 512)),
        ("q6_k.3d", _random_blocks(GGMLType.Q6_K, (2, 3, 256), rng), GGMLType.Q6_K, (2, 3, 256)),
        ("iq2_xxs", _random_blocks(GGMLType.IQ2_XXS, (1, 256), rng), GGMLType.IQ2_XXS, (1, 256)),
        ("i32.4d", rng.integers(-9, 9, (2, 3, 4, 5)).astype(np.int32), GGMLType.I32, (2, 3, 4, 5)),
    ]


def _write_all(dest, alignment=32) -> None:
    w = GGUFWriter(dest, alignment=alignment)
    for key, value, vtype, _ in METADATA:
        w.add_metadata(key, value, vtype)
    for name, data, t, shape in _tensors():
        w.add_tensor(name, data, t, shape)
    w.write()


def _small_file() -> bytes:
    """A small valid file: a few metadata types, an F32, a Q8_0 and a Q4_K tensor."""
    b = io.BytesIO()
    w = GGUFWriter(b)
    w.add_metadata("general.architecture", "llama")
    w.add_metadata("llama.block_count", 2, VT.UINT32)
    w.add_metadata("f", 0.5)
    w.add_metadata("toks", ["a", "bc"])
    w.add_metadata("ids", np.array([1, 2, 3], np.int32))
    w.add_metadata("nested", [[1], [2, 3]])
    x = RNG.standard_normal((2, 32)).astype(np.float32)
    w.add_tensor("w", x, GGMLType.F32, (2, 32))
    w.add_tensor("q", gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0), GGMLType.Q8_0, (2, 32))
    w.add_tensor("k", _random_blocks(GGMLType.Q4_K, (1, 256)), GGMLType.Q4_K, (1, 256))
    w.write()
    return b.getvalue()


SMALL = _small_file()


# ------------------------------------------------------------ default model


@pytest.mark.model
def test_default_model_matches_gguf_py(default_model_path):
    g = assert_same_as_gguf_py(default_model_path)
    with g:
        assert len(g.tensors) > 100 and len(g.metadata) > 20
        assert g.architecture == "llama"


@pytest.mark.model
def test_header_read_does_not_touch_tensor_data(default_model_path):
    src = CountingSource(FileSource(default_model_path))
    g = GGUFFile(src)
    assert 0 < g.header_size <= g.data_offset < src.size
    assert src.bytes_read < 2 * g.header_size, (src.bytes_read, g.header_size)
    src.inner.close()


@pytest.mark.model
def test_copy_of_default_model_is_byte_identical(default_model_path, tmp_path):
    """copy_metadata + raw tensors reproduce llama.cpp's file exactly: same types, order, padding, offsets."""
    out = tmp_path / "copy.gguf"
    with GGUFFile.open(default_model_path) as g:
        w = GGUFWriter(out)
        for key, value, vtype in copy_metadata(g):
            w.add_metadata(key, value, vtype)
        for t in g:
            w.add_tensor(t.name, g.raw(t.name), t.ggml_type, t.shape)
        w.write()
    assert out.read_bytes() == default_model_path.read_bytes()


# --------------------------------------------------------------- round trips


@pytest.mark.parametrize("alignment", [1, 32, 64, 4096])
def test_round_trip_through_both_readers(tmp_path, alignment):
    path = tmp_path / "all.gguf"
    _write_all(path, alignment)
    g = assert_same_as_gguf_py(path)  # all metadata and tensor bytes as gguf-py reads them
    with g:
        assert g.alignment == alignment
        assert g.data_offset % alignment == 0
        for key, value, _, vtype in METADATA:
            assert g.metadata_types[key] == vtype, key
            assert _plain(g.metadata[key]) == _expected(value, vtype), key
        for name, data, t, shape in _tensors():
            info = g.info(name)
            assert (info.shape, info.ggml_type) == (shape, t)
            assert info.offset % alignment == 0
            raw = data.tobytes() if isinstance(data, np.ndarray) else data
            assert g.raw(name).tobytes() == raw, name
            if t not in SUPPORTED_TYPES:
                continue
            ours = g.tensor(name)
            ref = gguf.quants.dequantize(g.raw(name).reshape(*shape[:-1], -1), gguf.GGMLQuantizationType(t))
            assert ours.shape == shape
            assert np.array_equal(ours.view(np.uint32), ref.astype(np.float32).view(np.uint32)), name
            if t in (GGMLType.F32, GGMLType.F16):
                assert np.array_equal(ours, data.astype(np.float32))


def test_round_trip_through_file_object_and_copy_metadata():
    b = io.BytesIO()
    _write_all(b)
    g = GGUFFile.from_bytes(b.getvalue())
    b2 = io.BytesIO()
    w = GGUFWriter(b2)
    for key, value, vtype in copy_metadata(g):
        w.add_metadata(key, value, vtype)
    for t in g:
        w.add_tensor(t.name, g.raw(t.name), t.ggml_type, t.shape)
    w.write()
    assert b2.getvalue() == b.getvalue()


def test_reads_files_written_by_gguf_py(tmp_path):
    path = tmp_path / "ref.gguf"
    x = RNG.standard_normal((4, 64)).astype(np.float32)
    q8 = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_uint8("k.u8", 200)
    w.add_int8("k.i8", -100)
    w.add_uint16("k.u16", 60000)
    w.add_int16("k.i16", -30000)
    w.add_uint32("k.u32", 4_000_000_000)
    w.add_int32("k.i32", -2_000_000_000)
    w.add_float32("k.f32", 0.125)
    w.add_uint64("k.u64", 2**64 - 1)
    w.add_int64("k.i64", -(2**62))
    w.add_float64("k.f64", 1 / 3)
    w.add_bool("k.bool", True)
    w.add_string("k.str", "héllo 🙂")
    w.add_array("k.strs", ["a", "b", "ü"])
    w.add_array("k.ints", [1, 2, 3])
    w.add_array("k.floats", [0.5, 2.0])
    w.add_key_value("k.u8s", [7, 8], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT8)
    w.add_tensor("w", x)
    w.add_tensor("h", x.astype(np.float16))
    w.add_tensor("q", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    with assert_same_as_gguf_py(path) as g:
        expected = {
            "general.architecture": ("llama", VT.STRING),
            "k.u8": (200, VT.UINT8), "k.i8": (-100, VT.INT8), "k.u16": (60000, VT.UINT16),
            "k.i16": (-30000, VT.INT16), "k.u32": (4_000_000_000, VT.UINT32),
            "k.i32": (-2_000_000_000, VT.INT32), "k.f32": (0.125, VT.FLOAT32),
            "k.u64": (2**64 - 1, VT.UINT64), "k.i64": (-(2**62), VT.INT64), "k.f64": (1 / 3, VT.FLOAT64),
            "k.bool": (True, VT.BOOL), "k.str": ("héllo 🙂", VT.STRING),
            "k.strs": (["a", "b", "ü"], (ARRAY, VT.STRING)), "k.ints": ([1, 2, 3], (ARRAY, VT.INT32)),
            "k.floats": ([0.5, 2.0], (ARRAY, VT.FLOAT32)), "k.u8s": ([7, 8], (ARRAY, VT.UINT8)),
        }  # fmt: skip
        for key, (value, vtype) in expected.items():
            assert (_plain(g.metadata[key]), g.metadata_types[key]) == (value, vtype), key
        assert np.array_equal(g.tensor("w"), x)
        assert np.array_equal(g.tensor("h"), x.astype(np.float16).astype(np.float32))
        assert g.info("q").ggml_type == GGMLType.Q8_0 and g.info("q").shape == (4, 64)
        assert np.array_equal(g.tensor("q"), gguf.quants.dequantize(q8, gguf.GGMLQuantizationType.Q8_0))


def test_big_endian_file_from_gguf_py_is_refused(tmp_path):
    path = tmp_path / "be.gguf"
    w = gguf.GGUFWriter(path, arch="llama", endianess=gguf.GGUFEndian.BIG)
    w.add_tensor("w", np.ones(32, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GGUFError, match="big-endian") as e:
        GGUFFile.open(path)
    assert type(e.value) is GGUFError


# ------------------------------------------------------------ writer checks


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda w: w.add_metadata("k", 300, VT.UINT8), ValueError, "does not fit UINT8"),
        (lambda w: w.add_metadata("k", -1, VT.UINT32), ValueError, "does not fit"),
        (lambda w: w.add_metadata("k", 1.5, VT.INT32), TypeError, "integer"),
        (lambda w: w.add_metadata("k", "x", VT.INT32), TypeError, "integer"),
        (lambda w: w.add_metadata("k", "x", VT.FLOAT64), TypeError, "number"),
        (lambda w: w.add_metadata("k", True, VT.INT32), TypeError, "integer, got bool"),
        (lambda w: w.add_metadata("k", 1, VT.BOOL), TypeError, "must be a bool"),
        (lambda w: w.add_metadata("k", 10**400, VT.UINT64), ValueError, "does not fit UINT64"),
        (lambda w: w.add_metadata("k", 10**400, VT.FLOAT32), ValueError, "does not fit FLOAT32"),
        (lambda w: w.add_metadata("k", "\ud800"), ValueError, "'k'.*UTF-8"),
        (lambda w: w.add_metadata("\udfff", 1), ValueError, "UTF-8"),
        (lambda w: w.add_tensor("\udfff", bytes(4), 0, (1,)), ValueError, "UTF-8"),
        (lambda w: w.add_metadata("k", 1, VT.STRING), TypeError, "str"),
        (lambda w: w.add_metadata("k", [1, "a"]), TypeError, "one type"),
        (lambda w: w.add_metadata("k", []), ValueError, "empty array"),
        (lambda w: w.add_metadata("k", 2**64), ValueError, "64 bits"),
        (lambda w: w.add_metadata("k", [256], (ARRAY, VT.UINT8)), ValueError, "do not fit UINT8"),
        (lambda w: w.add_metadata("k", np.zeros((2, 2))), ValueError, "1-D"),
        (lambda w: w.add_metadata("k", b"bytes"), TypeError, "bytes"),
        (lambda w: w.add_metadata("k", 1, 13), ValueError, "unknown GGUF value type"),
        (lambda w: w.add_metadata("general.alignment", 48), ValueError, "power of two"),
        (lambda w: [w.add_metadata("k", 1), w.add_metadata("k", 2)], ValueError, "twice"),
        (lambda w: w.add_tensor("t", np.zeros(32, np.float64), GGMLType.F32, (32,)), TypeError, "float32"),
        (lambda w: w.add_tensor("t", np.zeros(31, np.float32), GGMLType.F32, (32,)), ValueError, "takes 128 bytes"),
        (lambda w: w.add_tensor("t", bytes(34), GGMLType.Q8_0, (33,)), ValueError, "multiple of the Q8_0"),
        (lambda w: w.add_tensor("t", bytes(4), GGMLType.F32, (1, 1, 1, 1, 1)), ValueError, "dimensions"),
        (lambda w: w.add_tensor("t", bytes(0), GGMLType.F32, (0,)), ValueError, ">= 1"),
        (lambda w: w.add_tensor("t", bytes(4), 99, (1,)), ValueError, "99"),
        (lambda w: [w.add_tensor("t", bytes(4), 0, (1,)), w.add_tensor("t", bytes(4), 0, (1,))], ValueError, "twice"),
        (lambda w: GGUFWriter(io.BytesIO(), alignment=0), ValueError, "power of two"),
    ],
)
def test_writer_rejects_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call(GGUFWriter(io.BytesIO()))


def test_writer_alignment_metadata_and_single_write():
    b = io.BytesIO()
    w = GGUFWriter(b)
    w.add_metadata("general.alignment", 64)  # sets the alignment, stored as UINT32 like gguf-py wants
    w.add_tensor("t", np.ones(3, np.float32), GGMLType.F32, (3,))
    w.write()
    with pytest.raises(RuntimeError, match="already"):
        w.write()
    g = GGUFFile.from_bytes(b.getvalue())
    assert g.alignment == 64 and g.metadata_types["general.alignment"] == VT.UINT32
    assert len(b.getvalue()) % 64 == 0


# -------------------------------------------------------------- bad files


def _ne_bytes(n_dims: int, dims: list[int]) -> bytes:
    return s_("t") + struct.pack("<I", n_dims) + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", 0, 0)


def _nest(depth: int) -> bytes:
    return arr(ARRAY, 1, _nest(depth - 1)) if depth > 1 else arr(VT.UINT8, 1, b"\x01")


BAD_FILES = {
    # name: (bytes, exact error class, message pattern)
    "empty": (b"", GGUFMagicError, "empty"),
    "bad magic": (b"GGML" + bytes(60), GGUFMagicError, "not a GGUF file.*GGML"),
    "text file": (b"<html>hello</html>", GGUFMagicError, "not a GGUF file"),
    "magic only": (b"GGUF", GGUFTruncatedError, "version"),
    "version 1": (gguf_file(version=1), GGUFVersionError, "version 1 is not supported"),
    "version 99": (gguf_file(version=99), GGUFVersionError, "version 99 is not supported"),
    "version 0": (gguf_file(version=0), GGUFVersionError, "version 0"),
    "big-endian v3": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), GGUFError, "big-endian"),
    "big-endian v2": (b"GGUF" + struct.pack(">IQQ", 2, 0, 0), GGUFError, "big-endian"),
    "counts truncated": (b"GGUF" + struct.pack("<IQ", 3, 0) + b"\0\0", GGUFTruncatedError, "metadata count"),
    "n_kv 2**63": (gguf_file(n_kv=2**63), GGUFLimitError, str(2**63)),
    "n_kv 2**64-1": (gguf_file(n_kv=2**64 - 1), GGUFLimitError, "metadata entries"),
    "n_kv beyond file": (gguf_file([kv_u32("a", 1)], n_kv=100), GGUFLimitError, "metadata entries"),
    "n_tensors 2**40": (gguf_file(n_tensors=2**40), GGUFLimitError, str(2**40)),
    "n_tensors beyond file": (gguf_file(n_tensors=2), GGUFLimitError, "tensors"),
    "key length 2**62": (gguf_file([struct.pack("<Q", 2**62) + bytes(16)]), GGUFLimitError, str(2**62)),
    "string length 2**62": (gguf_file([kv("k", VT.STRING, struct.pack("<Q", 2**62))]), GGUFLimitError, str(2**62)),
    "string past end": (gguf_file([kv("k", VT.STRING, struct.pack("<Q", 1000) + b"abc")]), GGUFTruncatedError, "value of 'k'"),
    "u8 array count 2**60": (gguf_file([kv("k", ARRAY, arr(VT.UINT8, 2**60))]), GGUFLimitError, str(2**60)),
    "u64 array count 2**60": (gguf_file([kv("k", ARRAY, arr(VT.UINT64, 2**60))]), GGUFLimitError, str(2**60)),
    "string array count 2**60": (gguf_file([kv("k", ARRAY, arr(VT.STRING, 2**60))]), GGUFLimitError, str(2**60)),
    "nested array count 2**60": (gguf_file([kv("k", ARRAY, arr(ARRAY, 2**60))]), GGUFLimitError, str(2**60)),
    "inner array count 2**60": (
        gguf_file([kv("k", ARRAY, arr(ARRAY, 1, arr(VT.INT32, 2**60)))]), GGUFLimitError, str(2**60)),
    "arrays nested too deep": (gguf_file([kv("k", ARRAY, _nest(6))]), GGUFLimitError, "nests arrays deeper"),
    "bad UTF-8 key": (gguf_file([kv(b"gen\xff\xfeeral", VT.UINT32, b"\1\0\0\0")]), GGUFMetadataError, "UTF-8"),
    "bad UTF-8 value": (gguf_file([kv("k", VT.STRING, s_(b"\xc3\x28"))]), GGUFMetadataError, "value of 'k'.*UTF-8"),
    "surrogate in value": (gguf_file([kv("k", VT.STRING, s_(b"\xed\xa0\x80"))]), GGUFMetadataError, "UTF-8"),
    "bad UTF-8 in string array": (
        gguf_file([kv("toks", ARRAY, arr(VT.STRING, 2, s_("ok") + s_(b"\x80")))]), GGUFMetadataError, "'toks'.*UTF-8"),
    "bad UTF-8 tensor name": (gguf_file([], [tinfo(b"w\xff", [32])], F32_DATA), GGUFMetadataError, "UTF-8"),
    "duplicate key": (gguf_file([kv_u32("a", 1), kv_u32("a", 2)]), GGUFMetadataError, "'a' appears twice"),
    "unknown value type": (gguf_file([kv("k", 13, b"\0" * 8)]), GGUFMetadataError, "unknown value type 13"),
    "huge value type": (gguf_file([kv("k", 0xFFFFFFFF, b"\0" * 8)]), GGUFMetadataError, "unknown value type 4294967295"),
    "unknown array element type": (gguf_file([kv("k", ARRAY, arr(13, 1, bytes(8)))]), GGUFMetadataError, "element type 13"),
    "alignment 0": (gguf_file([kv_u32("general.alignment", 0)]), GGUFMetadataError, "power of two"),
    "alignment 48": (gguf_file([kv_u32("general.alignment", 48)]), GGUFMetadataError, "power of two.*48"),
    "alignment 2**30": (gguf_file([kv_u32("general.alignment", 2**30)]), GGUFMetadataError, "general.alignment"),
    "alignment -32": (gguf_file([kv("general.alignment", VT.INT32, struct.pack("<i", -32))]), GGUFMetadataError, "-32"),
    "alignment float": (gguf_file([kv("general.alignment", VT.FLOAT32, struct.pack("<f", 32))]), GGUFMetadataError, "integer"),
    "alignment string": (gguf_file([kv("general.alignment", VT.STRING, s_("32"))]), GGUFMetadataError, "integer"),
    "alignment bool": (gguf_file([kv("general.alignment", VT.BOOL, b"\1")]), GGUFMetadataError, "integer"),
    "n_dims 0": (gguf_file([], [_ne_bytes(0, [])], F32_DATA), GGUFLimitError, "0 dimensions"),
    "n_dims 5": (gguf_file([], [_ne_bytes(5, [32, 1, 1, 1, 1])], F32_DATA), GGUFLimitError, "5 dimensions"),
    "n_dims 2**32-1": (gguf_file([], [_ne_bytes(2**32 - 1, [32])], F32_DATA), GGUFLimitError, "4294967295 dimensions"),
    "dimension 0": (one_f32(ne=(32, 0)), GGUFLimitError, "dimension 0"),
    "dimension 2**63": (one_f32(ne=(2**63,)), GGUFLimitError, str(2**63)),
    "elements beyond file": (one_f32(ne=(64, 64)), GGUFLimitError, "4096 elements"),
    "row not a multiple of the block": (one_f32(ne=(33,), ttype=GGMLType.Q8_0, data=bytes(64)), GGUFError,
                                        "row length 33 .* Q8_0 block size 32"),
    "unknown tensor type 99": (one_f32(ttype=99), GGUFError, "unknown type id 99"),
    "tensor type 39 (MXFP4, unknown to us)": (one_f32(ttype=39), GGUFError, "unknown type id 39"),
    "tensor type 2**32-1": (one_f32(ttype=2**32 - 1), GGUFError, "4294967295"),
    "misaligned tensor offset": (one_f32(offset=4, data=F32_DATA + bytes(32)), GGUFError, "offset 4 is not aligned to 32"),
    "tensor data past the end": (one_f32(data=F32_DATA[:-1]), TensorDataOutOfBoundsError, "past the end"),
    "tensor offset past the end": (one_f32(offset=2**60), TensorDataOutOfBoundsError, "past the end"),
    "tensor offset 2**64-32": (one_f32(offset=2**64 - 32), TensorDataOutOfBoundsError, "past the end"),
    "no tensor data at all": (one_f32(data=b""), TensorDataOutOfBoundsError, "truncated"),
    "duplicate tensor": (gguf_file([], [tinfo("t", [8]), tinfo("t", [8], offset=32)], bytes(64)), GGUFMetadataError,
                         "'t' appears twice"),
    "tensor table truncated": (
        b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + tinfo("t", [8])[:-4], GGUFTruncatedError, "data offset of 't'"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_raises_its_specific_error(name):
    data, cls, match = BAD_FILES[name]
    with _bounded(max_bytes=1 << 20, max_seconds=0.5):  # the absurd counts must cost nothing
        with pytest.raises(cls, match=match) as e:
            GGUFFile.from_bytes(data)
    assert type(e.value) is cls, f"{name}: expected {cls.__name__}, got {type(e.value).__name__}: {e.value}"


def test_bad_file_from_disk_raises_and_closes_the_file(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(BAD_FILES["duplicate key"][0])
    closed = []

    class Spy(FileSource):
        def close(self):
            closed.append(True)
            super().close()

    with mock.patch.object(gguf_mod, "FileSource", Spy), pytest.raises(GGUFMetadataError):
        GGUFFile.open(path)
    assert closed == [True]
    with pytest.raises(ModelFileNotFoundError, match="not found"):
        GGUFFile.open(tmp_path / "nope.gguf")


def test_every_prefix_of_a_small_file():
    """Cut anywhere: a GGUFError (truncation, or a count the rest cannot hold), never anything else."""
    full = GGUFFile.from_bytes(SMALL)
    data_end = max(t.offset + t.nbytes for t in full)
    for n in range(len(SMALL)):
        data = SMALL[:n]
        if n >= data_end:  # only the padding after the last tensor is gone: still a valid file
            g = GGUFFile.from_bytes(data)
            assert list(g.tensors) == list(full.tensors)
            continue
        with pytest.raises(GGUFError) as e:
            g = GGUFFile.from_bytes(data)
        if n == 0:
            expected = (GGUFMagicError,)
        elif n < full.header_size:
            expected = (GGUFTruncatedError, GGUFLimitError)
        else:
            expected = (TensorDataOutOfBoundsError,)
        assert type(e.value) in expected, f"prefix of {n} bytes: {type(e.value).__name__}: {e.value}"


def test_missing_and_unsupported_tensors():
    b = io.BytesIO()
    _write_all(b)
    g = GGUFFile.from_bytes(b.getvalue())
    with pytest.raises(MissingTensorError, match="no tensor 'nope'") as e:
        g.info("nope")
    assert isinstance(e.value, KeyError)
    with pytest.raises(MissingTensorError):
        g.tensor("nope")
    assert g.raw("iq2_xxs").nbytes == g.info("iq2_xxs").nbytes  # raw bytes are always readable
    with pytest.raises(UnsupportedTensorTypeError, match="'iq2_xxs' has type IQ2_XXS") as e:
        g.tensor("iq2_xxs")
    assert e.value.type_name == "IQ2_XXS"


# --------------------------------------------------------------------- fuzz

try:
    from hypothesis import example, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None


def _field_offsets(data: bytes) -> tuple[list[int], list[int]]:
    """Byte offsets of every u64 and u32 field the reader reads from ``data``."""
    u64s, u32s = [], []
    real_u64, real_u32 = gguf_mod._Cursor.u64, gguf_mod._Cursor.u32

    def u64(self, what):
        u64s.append(self.pos)
        return real_u64(self, what)

    def u32(self, what):
        u32s.append(self.pos)
        return real_u32(self, what)

    with mock.patch.object(gguf_mod._Cursor, "u64", u64), mock.patch.object(gguf_mod._Cursor, "u32", u32):
        GGUFFile.from_bytes(data)
    return u64s, u32s


if given is not None:
    U64_AT, U32_AT = _field_offsets(SMALL)
    INTERESTING = [0, 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**60, 2**62, 2**63, 2**64 - 1]

    @st.composite
    def mutated(draw) -> bytes:
        data = bytearray(SMALL)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "u64", "u32"]))
            pos = draw(st.integers(0, max(len(data) - 1, 0)))
            if op == "flip" and data:
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif op == "set" and data:
                data[pos] = draw(st.integers(0, 255))
            elif op == "insert":
                data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
            elif op == "delete":
                del data[pos : pos + draw(st.integers(1, 16))]
            elif op == "truncate":
                del data[pos:]
            elif op in ("u64", "u32"):  # a count, length, dimension, offset or type replaced
                at = draw(st.sampled_from(U64_AT if op == "u64" else U32_AT))
                fmt, top = ("<Q", 2**64 - 1) if op == "u64" else ("<I", 2**32 - 1)
                v = draw(st.sampled_from(INTERESTING) | st.integers(0, top) | st.integers(0, 64))
                data[at : at + struct.calcsize(fmt)] = struct.pack(fmt, min(v, top))
        return bytes(data)

    @pytest.mark.filterwarnings("ignore::RuntimeWarning")  # garbage scales overflow in float32
    @settings(max_examples=300, deadline=None)
    @given(mutated())
    @example(SMALL)
    def test_fuzzed_files_raise_only_webinfer_errors(data):
        tracemalloc.start()
        try:
            try:
                g = GGUFFile.from_bytes(data)
                for t in g:
                    try:
                        g.tensor(t.name)
                    except UnsupportedTensorTypeError:
                        pass
            except WebinferError:
                pass
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"a {len(data)}-byte file made the reader allocate {peak} bytes"
