"""The numpy backend: every op eagerly on float32 arrays (CPython and Pyodide).

Weights: matrices are dequantized to float32 once, at load, and kept (out, in)
so a layer is ``x @ W.T`` (5x faster than ``x @ W`` in Pyodide's BLAS-less
numpy, and one sgemm/sgemv call in CPython).  Dequantizing per step instead
would cost the whole model's dequantization on every token; docs/architecture.md
gives the measurements behind the choice.  A quantized embedding that is not
also the output head stays quantized and rows are dequantized on lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..formats.gguf import TensorInfo
from ..formats.quants import dequantize, dequantize_rows, row_nbytes
from ..model.args import ModelArgs
from .rope import apply_rope, rope_tables


@dataclass
class QuantizedTable:
    """An embedding table kept in its GGUF blocks: [n_rows, row_bytes] uint8."""

    raw: np.ndarray
    info: TensorInfo

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        return dequantize_rows(self.raw[np.asarray(ids)], self.info.ggml_type, self.info.shape[-1])


class NumpyKVCache:
    """Keys and values per layer: [n_kv_heads, capacity, head_dim] float32.

    Storage grows by doubling up to ``capacity`` so a short chat does not pay
    for the whole context up front.
    """

    def __init__(self, args: ModelArgs, capacity: int, dtype=np.float32):
        self.n_layers = args.n_layers
        self.capacity = capacity
        self.dtype = np.dtype(dtype)
        self._shape = (args.n_kv_heads, 0, args.head_dim)
        self.k = [np.zeros(self._shape, self.dtype) for _ in range(args.n_layers)]
        self.v = [np.zeros(self._shape, self.dtype) for _ in range(args.n_layers)]

    def _reserve(self, layer: int, n: int) -> None:
        have = self.k[layer].shape[1]
        if n <= have:
            return
        new = min(self.capacity, max(n, 2 * have, 64))
        for store in (self.k, self.v):
            grown = np.zeros((self._shape[0], new, self._shape[2]), self.dtype)
            grown[:, :have] = store[layer]
            store[layer] = grown

    def store(self, layer: int, pos0: int, k: np.ndarray, v: np.ndarray) -> None:
        # k, v: [T, n_kv_heads, head_dim]
        end = pos0 + k.shape[0]
        self._reserve(layer, end)
        self.k[layer][:, pos0:end] = k.transpose(1, 0, 2)
        self.v[layer][:, pos0:end] = v.transpose(1, 0, 2)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k) + sum(a.nbytes for a in self.v)


class NumpyBackend:
    name = "numpy"

    # ------------------------------------------------------------ weights

    def load_matrix(self, info: TensorInfo, raw: np.ndarray) -> np.ndarray:
        return dequantize(raw, info.ggml_type, info.shape, name=info.name)

    def load_vector(self, info: TensorInfo, raw: np.ndarray) -> np.ndarray:
        return dequantize(raw, info.ggml_type, info.shape, name=info.name)

    def load_embedding(self, info: TensorInfo, raw: np.ndarray, *, also_output: bool):
        if also_output or info.type_name in ("F32", "F16", "BF16"):
            return dequantize(raw, info.ggml_type, info.shape, name=info.name)
        n_rows, row_len = info.shape
        return QuantizedTable(raw.reshape(n_rows, row_nbytes(info.ggml_type, row_len)), info)

    # ------------------------------------------------------------ state

    def new_kv_cache(self, args: ModelArgs, n_ctx: int) -> NumpyKVCache:
        return NumpyKVCache(args, n_ctx)

    def rope_tables(self, args: ModelArgs, n_ctx: int, freq_factors=None):
        return rope_tables(args.rope, n_ctx, freq_factors)

    # ------------------------------------------------------------ ops

    def embed(self, table, ids: Sequence[int]) -> np.ndarray:
        if isinstance(table, QuantizedTable):
            return table.rows(ids)
        return table[np.asarray(ids)]

    def rmsnorm(self, x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return x * (1.0 / np.sqrt(ms + eps)).astype(np.float32) * w

    def linear(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def rope(self, x: np.ndarray, tables, pos0: int, n_heads: int, style: str) -> np.ndarray:
        cos, sin = tables
        t = x.shape[0]
        x = x.reshape(t, n_heads, -1)
        return apply_rope(x, cos[pos0 : pos0 + t], sin[pos0 : pos0 + t], style)

    def attention(self, q, k, v, cache: NumpyKVCache, layer: int, pos0: int, args: ModelArgs) -> np.ndarray:
        # q: [T, H, hd]; k, v: [T, Hkv*hd] -> out [T, H*hd]
        t = q.shape[0]
        hkv, rep, hd = args.n_kv_heads, args.n_rep, args.head_dim
        cache.store(layer, pos0, k.reshape(t, hkv, hd), v.reshape(t, hkv, hd))
        n = pos0 + t
        keys = cache.k[layer][:, :n]                               # [Hkv, n, hd]
        vals = cache.v[layer][:, :n]                               # [Hkv, n, hd]
        qg = q.reshape(t, hkv, rep, hd).transpose(1, 2, 0, 3)      # [Hkv, rep, T, hd]
        scores = (qg.reshape(hkv, rep * t, hd) @ keys.transpose(0, 2, 1)).reshape(hkv, rep, t, n)
        scores *= np.float32(1.0 / np.sqrt(hd))
        if t > 1:  # causal: query i (at pos0+i) sees keys 0..pos0+i
            mask = np.arange(n)[None, :] > (pos0 + np.arange(t))[:, None]
            scores[:, :, mask] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        out = scores.reshape(hkv, rep * t, n) @ vals               # [Hkv, rep*T, hd]
        return out.reshape(hkv, rep, t, hd).transpose(2, 0, 1, 3).reshape(t, hkv * rep * hd)

    def swiglu(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        # silu(g) * u = g * sigmoid(g) * u; exp overflows to inf for g << 0,
        # which correctly gives -0.0
        with np.errstate(over="ignore"):
            return gate / (1.0 + np.exp(-gate)) * up

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a += b
        return a

    def last_rows(self, x: np.ndarray, n: int) -> np.ndarray:
        return x[-n:]

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)
