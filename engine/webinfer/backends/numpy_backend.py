"""The numpy backend: every op eagerly on float32 arrays (CPython and Pyodide).

Weights: matrices are dequantized to float32 once, at load, and kept (out, in)
so a layer is ``x @ W.T`` (5x faster than ``x @ W`` in Pyodide's BLAS-less
numpy, and one sgemm/sgemv call in CPython).  Dequantizing per step instead
would cost the whole model's dequantization on every token; docs/architecture.md
gives the measurements behind the choice.  A quantized embedding that is not
also the output head stays quantized and rows are dequantized on lookup.
``NumpyBackend(weights="quantized")`` keeps every matrix quantized instead:
memory near the file's size, decode several times slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InvalidArgumentError
from ..formats.gguf import TensorInfo
from ..formats.quants import dequantize, dequantize_rows, row_nbytes
from ..model.args import ModelArgs
from .rope import apply_rope, rope_tables


# weights="quantized": rows of a matrix dequantized per linear() call at a time (1 Mi elements = 4 MiB of
# float32), which bounds the temporary memory while keeping each x @ W.T a BLAS call of useful size.
QUANTIZED_CHUNK_ELEMS = 1 << 20


@dataclass
class QuantizedTable:
    """A matrix or embedding table kept in its GGUF blocks: [n_stored_rows, row_bytes] uint8."""

    raw: np.ndarray
    info: TensorInfo

    def dequant_rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows r0..r1-1 as float32 [r1 - r0, cols]; r0 and r1 multiples of info.packed_rows (or r1 = rows)."""
        k, n = self.info.packed_rows, self.info.shape[-1]
        return dequantize_rows(self.raw[r0 // k : -(-r1 // k)], self.info.ggml_type, n * k).reshape(-1, n)

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        k, n = self.info.packed_rows, self.info.shape[-1]
        ids = np.asarray(ids)
        if k == 1:
            return dequantize_rows(self.raw[ids], self.info.ggml_type, n)
        # packed rows (formats/packing.py): dequantize the stored row holding each id, keep its slice
        packs = dequantize_rows(self.raw[ids // k], self.info.ggml_type, n * k).reshape(len(ids), k, n)
        return packs[np.arange(len(ids)), ids % k]


KV_DTYPES = ("f32", "f16", "int8", "int4")
KV_INT4_GROUP = 32   # int4 keys/values: one f16 scale and min per 32 values (a Q4_1 block)


def kv_bytes_per_token(args: ModelArgs, kv_dtype: str = "f32") -> int:
    """Bytes the KV cache takes per position, all layers, keys and values, scales included."""
    per_vector = {  # one head's key (or value) vector of head_dim values
        "f32": 4 * args.head_dim,
        "f16": 2 * args.head_dim,
        "int8": args.head_dim + 2,                                      # codes + f16 scale
        "int4": args.head_dim // 2 + 4 * (args.head_dim // KV_INT4_GROUP),  # nibbles + f16 scale, min per group
    }[kv_dtype]
    return 2 * args.n_layers * args.n_kv_heads * per_vector


class NumpyKVCache:
    """Keys and values per layer: [n_kv_heads, capacity, head_dim], stored as ``kv_dtype``.

    ``f32`` and ``f16`` keep the values as they are (f16 rounds them).
    ``int8`` keeps ``round(x / s)`` in int8 with one f16 scale ``s = max|x| / 127``
    per head and position (``k_scale[layer]``: [n_kv_heads, capacity, 1]);
    attention folds the scales into the scores and the probabilities, so the
    codes are never expanded to float32 times their scale.  ``int4`` keeps
    Q4_1 blocks: per 32 values an f16 scale ``d`` and min ``m`` and 4-bit codes
    ``q`` (byte j = element j in the low nibble, j + 16 in the high),
    ``x = d * q + m``; ``k[layer]`` is [n_kv_heads, capacity, head_dim / 2]
    uint8 and ``k_scale[layer]`` [n_kv_heads, capacity, head_dim / 32, 2] f16.

    Storage grows by doubling up to ``capacity`` so a short chat does not pay
    for the whole context up front.
    """

    def __init__(self, args: ModelArgs, capacity: int, dtype="f32"):
        self.n_layers = args.n_layers
        self.capacity = capacity
        self.kv_dtype = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}.get(
            np.dtype(dtype) if not isinstance(dtype, str) else None, dtype)
        if self.kv_dtype not in KV_DTYPES:
            raise InvalidArgumentError(f"unknown KV cache type {dtype!r}; choose one of {', '.join(KV_DTYPES)}")
        if self.kv_dtype == "int4" and args.head_dim % KV_INT4_GROUP:
            raise InvalidArgumentError(f"an int4 KV cache needs head_dim divisible by {KV_INT4_GROUP}, not {args.head_dim}")
        hd = args.head_dim
        self.dtype, width, self._scale_tail = {
            "f32": (np.dtype(np.float32), hd, None), "f16": (np.dtype(np.float16), hd, None),
            "int8": (np.dtype(np.int8), hd, (1,)), "int4": (np.dtype(np.uint8), hd // 2, (hd // KV_INT4_GROUP, 2)),
        }[self.kv_dtype]
        self._shape = (args.n_kv_heads, 0, width)
        self.head_dim = hd
        self.k = [np.zeros(self._shape, self.dtype) for _ in range(args.n_layers)]
        self.v = [np.zeros(self._shape, self.dtype) for _ in range(args.n_layers)]
        scaled = self._scale_tail is not None
        self.k_scale = [np.zeros((args.n_kv_heads, 0, *self._scale_tail), np.float16) if scaled else None
                        for _ in range(args.n_layers)]
        self.v_scale = [np.zeros((args.n_kv_heads, 0, *self._scale_tail), np.float16) if scaled else None
                        for _ in range(args.n_layers)]

    def _reserve(self, layer: int, n: int) -> None:
        have = self.k[layer].shape[1]
        if n <= have:
            return
        new = min(self.capacity, max(n, 2 * have, 64))
        stores = [self.k, self.v] + ([self.k_scale, self.v_scale] if self._scale_tail else [])
        for store in stores:
            old = store[layer]
            grown = np.zeros((old.shape[0], new, *old.shape[2:]), old.dtype)
            grown[:, :have] = old
            store[layer] = grown

    def store(self, layer: int, pos0: int, k: np.ndarray, v: np.ndarray) -> None:
        # k, v: [T, n_kv_heads, head_dim]
        end = pos0 + k.shape[0]
        self._reserve(layer, end)
        for x, codes, scales in ((k, self.k, self.k_scale), (v, self.v, self.v_scale)):
            x = x.transpose(1, 0, 2)                                   # [Hkv, T, hd]
            if self.kv_dtype in ("f32", "f16"):
                codes[layer][:, pos0:end] = x
            elif self.kv_dtype == "int8":
                s = (np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)).astype(np.float16)
                s32 = s.astype(np.float32)
                with np.errstate(divide="ignore", invalid="ignore"):
                    q = np.where(s32 > 0, np.rint(x / s32), 0)
                codes[layer][:, pos0:end] = np.clip(q, -127, 127)
                scales[layer][:, pos0:end] = s
            else:
                g = x.reshape(*x.shape[:2], -1, KV_INT4_GROUP)          # [Hkv, T, groups, 32]
                mn, mx = g.min(axis=-1), g.max(axis=-1)
                d = ((mx - mn) / np.float32(15)).astype(np.float16)
                m = mn.astype(np.float16)
                d32, m32 = d.astype(np.float32)[..., None], m.astype(np.float32)[..., None]
                with np.errstate(divide="ignore", invalid="ignore"):
                    q = np.where(d32 > 0, np.rint((g - m32) / d32), 0)
                q = np.clip(q, 0, 15).astype(np.uint8)
                half = KV_INT4_GROUP // 2
                packed = q[..., :half] | (q[..., half:] << 4)            # [Hkv, T, groups, 16]
                codes[layer][:, pos0:end] = packed.reshape(*x.shape[:2], -1)
                scales[layer][:, pos0:end] = np.stack([d, m], axis=-1)

    def _dequant_int4(self, codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
        h, n, _ = codes.shape
        b = codes.reshape(h, n, -1, KV_INT4_GROUP // 2)
        q = np.concatenate([b & 0x0F, b >> 4], axis=-1).astype(np.float32)   # [Hkv, n, groups, 32]
        sc = scales.astype(np.float32)
        return (q * sc[..., 0:1] + sc[..., 1:2]).reshape(h, n, self.head_dim)

    def read(self, layer: int, n: int):
        """Positions 0..n-1 for attention: ``(keys, key_scale, values, value_scale)``.

        keys/values are [n_kv_heads, n, head_dim] arrays to multiply with (f32,
        f16 or int8 codes; int4 comes back dequantized to float32); the scales
        are [n_kv_heads, n] float32 for int8 and None otherwise.
        """
        k, v = self.k[layer][:, :n], self.v[layer][:, :n]
        if self.kv_dtype == "int8":
            return (k, self.k_scale[layer][:, :n, 0].astype(np.float32),
                    v, self.v_scale[layer][:, :n, 0].astype(np.float32))
        if self.kv_dtype == "int4":
            return (self._dequant_int4(k, self.k_scale[layer][:, :n]), None,
                    self._dequant_int4(v, self.v_scale[layer][:, :n]), None)
        return k, None, v, None

    def nbytes(self) -> int:
        arrays = self.k + self.v + ([a for a in self.k_scale + self.v_scale] if self._scale_tail else [])
        return sum(a.nbytes for a in arrays)


class NumpyBackend:
    name = "numpy"

    # ------------------------------------------------------------ weights

    def load_matrix(self, info: TensorInfo, raw: np.ndarray) -> np.ndarray:
        if self._keep_quantized(info):
            return self._table(info, raw)
        return dequantize(raw, info.ggml_type, info.shape, name=info.name, packed_rows=info.packed_rows)

    def _keep_quantized(self, info: TensorInfo) -> bool:
        return getattr(self, "weights", "f32") == "quantized" and info.type_name not in ("F32", "F16", "BF16")

    @staticmethod
    def _table(info: TensorInfo, raw: np.ndarray) -> QuantizedTable:
        n_rows, row_len = info.shape
        k = info.packed_rows
        return QuantizedTable(raw.reshape(n_rows // k, row_nbytes(info.ggml_type, row_len * k)), info)

    def load_vector(self, info: TensorInfo, raw: np.ndarray) -> np.ndarray:
        return dequantize(raw, info.ggml_type, info.shape, name=info.name)

    def load_embedding(self, info: TensorInfo, raw: np.ndarray, *, also_output: bool):
        if (also_output and not self._keep_quantized(info)) or info.type_name in ("F32", "F16", "BF16"):
            return dequantize(raw, info.ggml_type, info.shape, name=info.name, packed_rows=info.packed_rows)
        return self._table(info, raw)

    # ------------------------------------------------------------ state

    def __init__(self, kv_dtype: str = "f32", weights: str = "f32"):
        """``weights="quantized"`` keeps matrices in their GGUF blocks (memory about the file's size) and
        dequantizes them chunk by chunk in every ``linear`` (slower: the whole model each token)."""
        if kv_dtype not in KV_DTYPES:
            raise InvalidArgumentError(f"unknown KV cache type {kv_dtype!r}; choose one of {', '.join(KV_DTYPES)}")
        if weights not in ("f32", "quantized"):
            raise InvalidArgumentError(f"weights must be 'f32' or 'quantized', not {weights!r}")
        self.kv_dtype = kv_dtype
        self.weights = weights

    def new_kv_cache(self, args: ModelArgs, n_ctx: int, kv_dtype: str | None = None) -> NumpyKVCache:
        return NumpyKVCache(args, n_ctx, kv_dtype or getattr(self, "kv_dtype", "f32"))

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
        if isinstance(w, QuantizedTable):
            rows, cols = w.info.shape
            k = w.info.packed_rows
            step = max(k, QUANTIZED_CHUNK_ELEMS // cols // k * k)
            y = np.empty((x.shape[0], rows), np.float32)
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                y[:, r0:r1] = x @ w.dequant_rows(r0, r1).T
        else:
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
        keys, kscale, vals, vscale = cache.read(layer, n)           # [Hkv, n, hd]; scales [Hkv, n] or None
        qg = q.reshape(t, hkv, rep, hd).transpose(1, 2, 0, 3)      # [Hkv, rep, T, hd]
        scores = (qg.reshape(hkv, rep * t, hd) @ keys.transpose(0, 2, 1)).reshape(hkv, rep, t, n)
        scores *= np.float32(1.0 / np.sqrt(hd))
        if kscale is not None:                                      # int8: q.(s k) = s (q.k)
            scores *= kscale[:, None, None, :]
        if t > 1:  # causal: query i (at pos0+i) sees keys 0..pos0+i
            mask = np.arange(n)[None, :] > (pos0 + np.arange(t))[:, None]
            scores[:, :, mask] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        if vscale is not None:                                      # int8: sum p (s v) = sum (p s) v
            scores *= vscale[:, None, None, :]
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
