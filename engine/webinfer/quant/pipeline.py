"""Quantize a whole GGUF model file: ``webinfer quantize IN OUT --type T``.

Every matrix is dequantized from the source (the only weights there are:
no full-precision original is needed or assumed) and quantized again with
the type its recipe names, by one of three methods:

* ``rtn``     round-to-nearest, llama.cpp's reference quantizers
* ``imatrix`` weighted scale search with the importance matrix (llama.cpp's
              ``--imatrix`` algorithms)
* ``gptq``    the weighted grid plus error feedback across columns
              (needs an importance matrix collected with ``--cov``)

Tensors whose type does not change and whose rows fit are copied byte for
byte.  A 256-wide type on rows that are not a multiple of 256 uses packed
rows (formats/packing.py) unless ``pack=False``, which keeps the file
readable by llama.cpp and raises instead.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import UnsupportedTensorTypeError
from ..formats.ggml_types import BLOCK_LAYOUTS, GGMLType
from ..formats.gguf import GGUFFile
from ..formats.gguf_writer import GGUFWriter, ValueType, copy_metadata
from ..formats.packing import PACKED_COUNTS_KEY, PACKED_TENSORS_KEY, rows_per_pack, stored_shape
from ..formats.quantize import QuantizeError, quantize
from ..formats.quants import dequantize
from .imatrix import Imatrix
from .recipes import Recipe, get_recipe

METHODS = ("rtn", "imatrix", "gptq")

# llama.cpp's llama_ftype for general.file_type, where a recipe has one
_FTYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11,
           "Q3_K_M": 12, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ4_NL": 25}
FTYPE_GUESSED = 1024


@dataclass
class QuantizeReport:
    recipe: str
    method: str
    n_weights: int = 0              # elements of every tensor, norms included
    n_bytes: int = 0                # bytes of every tensor's data (no padding, no header)
    file_bytes: int = 0
    seconds: float = 0.0
    types: dict[str, str] = field(default_factory=dict)      # tensor -> type written
    packed: dict[str, int] = field(default_factory=dict)

    @property
    def bpw(self) -> float:
        return 8 * self.n_bytes / self.n_weights if self.n_weights else 0.0

    def type_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.types.values():
            out[t] = out.get(t, 0) + 1
        return dict(sorted(out.items()))


def quantize_model(src: str | os.PathLike | GGUFFile, dst: str | os.PathLike, recipe: str | Recipe, *,
                   imatrix: Imatrix | None = None, method: str | None = None, pack: bool = True,
                   progress: Callable[[int, int, str], None] | None = None) -> QuantizeReport:
    """Write ``dst``: the model of ``src`` with its matrices quantized per ``recipe``."""
    rec = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
    method = method or ("imatrix" if imatrix is not None else "rtn")
    if method not in METHODS:
        raise QuantizeError(f"unknown method {method!r}; methods: {', '.join(METHODS)}")
    if method != "rtn" and imatrix is None:
        raise QuantizeError(f"method {method!r} needs an importance matrix (webinfer imatrix ... -o FILE)")
    if method == "gptq" and not imatrix.cov:
        raise QuantizeError("method 'gptq' needs input covariances: collect the imatrix with --cov")
    g = src if isinstance(src, GGUFFile) else GGUFFile.open(src)
    t0 = time.perf_counter()
    n_layers = int(g.get(f"{g.architecture}.block_count", 0))
    report = QuantizeReport(rec.name, method)
    w = GGUFWriter(dst, alignment=g.alignment)
    skip = {"general.file_type", PACKED_TENSORS_KEY, PACKED_COUNTS_KEY, "general.alignment"}
    for key, value, vtype in copy_metadata(g):
        if key not in skip and not key.startswith("quantize.imatrix.") and not key.startswith("webinfer.quantize."):
            w.add_metadata(key, value, vtype)
    w.add_metadata("general.file_type", _FTYPES.get(rec.name.upper(), FTYPE_GUESSED), ValueType.UINT32)
    w.add_metadata("webinfer.quantize.recipe", rec.name)
    w.add_metadata("webinfer.quantize.method", method)
    if imatrix is not None and method != "rtn":
        w.add_metadata("quantize.imatrix.dataset", ", ".join(imatrix.datasets) or "unknown")
        w.add_metadata("quantize.imatrix.entries_count", len(imatrix.sum2), ValueType.INT32)
        w.add_metadata("quantize.imatrix.chunks_count", imatrix.chunk_count, ValueType.INT32)

    names = list(g.tensors)
    for i, name in enumerate(names):
        info = g.info(name)
        report.n_weights += info.n_elements
        if progress:
            progress(i, len(names), name)
        raw = g.raw(name)
        target = info.type_name if len(info.shape) < 2 else rec.type_for(name, n_layers).upper()
        t = GGMLType[target]
        block = BLOCK_LAYOUTS[t].block_elems
        k = 1 if info.shape[-1] % block == 0 else rows_per_pack(info.shape, block)
        if k == 0 or (k > 1 and not pack):
            why = "packing is off (--no-pack)" if k else f"its {info.shape[0]} rows cannot be packed"
            raise QuantizeError(
                f"tensor {name!r}: rows of {info.shape[-1]} are not a multiple of the {t.name} block size {block} "
                f"and {why}; choose a 32-wide type (Q4_0, Q4_1, Q5_0, Q8_0, IQ4_NL) for it"
            )
        if t == info.ggml_type and k == info.packed_rows:
            data = raw                                                # unchanged: copy the bytes
        else:
            try:
                x = dequantize(raw, info.ggml_type, info.shape, name=name, packed_rows=info.packed_rows)
            except UnsupportedTensorTypeError as e:
                raise QuantizeError(
                    f"cannot requantize {name!r}: webinfer cannot read its type {e.type_name}; "
                    f"start from a file in a type webinfer reads (F32, F16, BF16, Q4_0..Q8_0, Q2_K..Q6_K, IQ4_NL)"
                ) from None
            data = _quantize_tensor(x, t, name, method, imatrix)
        w.add_tensor(name, data, t, stored_shape(info.shape, k))
        report.types[name] = t.name
        report.n_bytes += data.size
        if k > 1:
            report.packed[name] = k
    if report.packed:
        w.add_metadata(PACKED_TENSORS_KEY, list(report.packed), (ValueType.ARRAY, ValueType.STRING))
        w.add_metadata(PACKED_COUNTS_KEY, np.array(list(report.packed.values()), np.uint32))
    w.write()
    if not isinstance(src, GGUFFile):
        g.close()
    report.file_bytes = os.path.getsize(dst)
    report.seconds = time.perf_counter() - t0
    return report


def _quantize_tensor(x: np.ndarray, t: GGMLType, name: str, method: str, imatrix: Imatrix | None) -> np.ndarray:
    if t in (GGMLType.F32, GGMLType.F16) or method == "rtn":
        return quantize(x, t, name=name)
    imp = imatrix.importance(name)
    if imp is not None and imp.size != x.shape[-1]:
        raise QuantizeError(f"the importance matrix has {imp.size} values for {name!r}, whose rows have {x.shape[-1]}")
    if method == "gptq":
        h = imatrix.covariance(name)
        if h is not None and t != GGMLType.Q8_0:
            from .gptq import gptq_quantize

            return gptq_quantize(x.reshape(-1, x.shape[-1]), h, t, importance=imp, name=name)
    return quantize(x, t, importance=imp, name=name)
