"""Quantization of float32 tensors into ggml block layouts, in vectorized numpy.

The inverse of :mod:`webinfer.formats.quants`: every type here produces bytes
that ``quants.dequantize`` (and gguf-py, and llama.cpp) read back.  Two ways
to choose the codes exist for every type:

* **round-to-nearest (RTN)**, llama.cpp's ``quantize_row_<type>_ref``: what
  ``llama-quantize`` does without an importance matrix.  The 32-wide types
  (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) match llama.cpp (and gguf-py) bit for bit;
  the k-quants follow the same algorithms in float32 and agree with it to
  within the odd code where float rounding order differs.
* **weighted**, llama.cpp's ``quantize_row_<type>_impl`` with ``quant_weights``:
  the block's scale (and min) is the one, among a grid of candidates, that
  minimises ``sum(w * (x - q(x))**2)``, with per-element weights ``w`` built
  from an importance matrix (mean squared activation of each input column,
  see :mod:`webinfer.quant.imatrix`).

Both are exposed through :func:`quantize`; error feedback across columns
(GPTQ) sits on top of them in :mod:`webinfer.quant.gptq` and uses
:func:`fit_grid` / :func:`encode_codes` to fix the scales first and choose the
codes afterwards.

Blocks are processed as rows of a ``(n_blocks, block_elems)`` array, a chunk
of blocks at a time, with no Python loop over blocks: the candidate scales
are the loop, each one a numpy pass over the whole chunk.

``nearest_int`` in llama.cpp is round-half-to-even in float32 (the
``+ 12582912.f`` trick), which is ``np.rint``; every float operation below is
float32 as in C, so that the bit-exact types stay bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import WebinferError
from .ggml_types import BLOCK_LAYOUTS, GGMLType
from .quants import KVALUES_IQ4NL

__all__ = [
    "QUANTIZABLE_TYPES", "QuantizeError", "Grid", "quantize", "quantize_blocks", "fit_grid",
    "encode_codes", "dequantize_grid",
]

QK_K = 256
GROUP_MAX_EPS = np.float32(1e-15)  # llama.cpp: a block whose max |x| is below this is all zero
_F32 = np.float32

# Blocks per numpy pass: 4096 blocks of 32 (or 512 of 256) = 128 Ki elements,
# about 0.5 MiB of float32 per temporary.  Small enough to stay in cache and
# to bound memory in the browser, large enough that numpy's per-call overhead
# (tens of calls per candidate scale) stays below 10% of the time.
_CHUNK_ELEMS = 1 << 17


class QuantizeError(WebinferError, ValueError):
    """A tensor cannot be quantized as asked (unknown type, bad shape, bad weights)."""


# ------------------------------------------------------------------ helpers


def _rint(x: np.ndarray) -> np.ndarray:
    return np.rint(x)


def _f16_round(x: np.ndarray) -> np.ndarray:
    """float32 -> nearest f16 -> float32 (how a scale reads back from the file)."""
    return x.astype(np.float16).astype(np.float32)


def _f16_bytes(x: np.ndarray) -> np.ndarray:
    """(n,) float32 -> (n, 2) uint8 little-endian f16."""
    return np.ascontiguousarray(x, dtype=np.float32).astype("<f2").view(np.uint8).reshape(-1, 2)


def _pack_nibbles(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (lo.astype(np.uint8) & 0x0F) | (hi.astype(np.uint8) << 4)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1), 0).astype(np.float32)


def _signed_absmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (max |x|, the x with that largest |x| — the first one, as llama.cpp's loop)."""
    ax = np.abs(x)
    idx = ax.argmax(axis=1)
    amax = np.take_along_axis(ax, idx[:, None], axis=1)[:, 0]
    mx = np.take_along_axis(x, idx[:, None], axis=1)[:, 0]
    return amax, mx


# ----------------------------------------------- llama.cpp's scale searches
#
# Each takes a (n, k) float32 array of n groups of k values and works on all
# groups at once; a scalar loop over candidate scales replaces llama.cpp's
# inner loops.  Names and constants follow ggml-quants.c.


def make_qx_quants(x: np.ndarray, nmax: int, rmse_type: int, qw: np.ndarray | None = None):
    """Symmetric codes L in [0, 2*nmax) with x ~ scale * (L - nmax).  Returns (scale (n,), L int (n, k))."""
    x = x.astype(_F32, copy=False)
    amax, mx = _signed_absmax(x)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, _F32(1), mx)
    iscale = (_F32(-nmax) / mx).astype(_F32)
    L = np.clip(_rint(iscale[:, None] * x), -nmax, nmax - 1)
    if rmse_type == 0:
        scale = (_F32(1) / iscale).astype(_F32)
        scale[zero] = 0
        L[zero] = -nmax
        return scale, (L + nmax).astype(np.int32)
    if qw is not None:
        w = qw
    elif rmse_type == 1:
        w = x * x
    elif rmse_type == 2:
        w = np.ones_like(x)
    elif rmse_type == 3:
        w = np.abs(x)
    else:
        w = np.sqrt(np.abs(x))
    w = w.astype(_F32, copy=False)
    wx = w * x
    sumlx = (wx * L).sum(axis=1, dtype=_F32)
    suml2 = (w * L * L).sum(axis=1, dtype=_F32)
    scale = _safe_div(sumlx, suml2)
    best = scale * sumlx
    for i in range(-9, 10):
        if i == 0:
            continue
        iscale = (-(_F32(nmax) + _F32(0.1) * _F32(i)) / mx).astype(_F32)
        l = np.clip(_rint(iscale[:, None] * x), -nmax, nmax - 1)
        slx = (wx * l).sum(axis=1, dtype=_F32)
        sl2 = (w * l * l).sum(axis=1, dtype=_F32)
        better = (sl2 > 0) & (slx * slx > best * sl2)
        if better.any():
            L[better] = l[better]
            scale = np.where(better, _safe_div(slx, sl2), scale)
            best = scale * slx
    scale[zero] = 0
    L[zero] = -nmax
    return scale.astype(_F32), (L + nmax).astype(np.int32)


def make_q3_quants(x: np.ndarray, nmax: int, do_rmse: bool):
    """Q3_K's symmetric search (weights x^2, coordinate descent).  Returns (scale, L in [0, 2*nmax))."""
    x = x.astype(_F32, copy=False)
    n, k = x.shape
    amax, mx = _signed_absmax(x)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, _F32(1), mx)
    iscale = (_F32(-nmax) / mx).astype(_F32)
    L = np.clip(_rint(iscale[:, None] * x), -nmax, nmax - 1).astype(_F32)
    if not do_rmse:
        scale = (_F32(1) / iscale).astype(_F32)
    else:
        w = x * x
        sumlx = (w * x * L).sum(axis=1, dtype=_F32)
        suml2 = (w * L * L).sum(axis=1, dtype=_F32)
        active = np.ones(n, bool)
        for _ in range(5):
            changed = np.zeros(n, bool)
            for i in range(k):
                xi, wi, li = x[:, i], w[:, i], L[:, i]
                slx = sumlx - wi * xi * li
                ok = active & (slx > 0)
                sl2 = suml2 - wi * li * li
                new_l = np.clip(_rint(xi * _safe_div(sl2, slx)), -nmax, nmax - 1)
                ok &= new_l != li
                slx2 = slx + wi * xi * new_l
                sl22 = sl2 + wi * new_l * new_l
                ok &= (sl22 > 0) & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
                L[ok, i] = new_l[ok]
                sumlx = np.where(ok, slx2, sumlx)
                suml2 = np.where(ok, sl22, suml2)
                changed |= ok
            active &= changed
            if not active.any():
                break
        scale = _safe_div(sumlx, suml2)
    scale[zero] = 0
    L[zero] = -nmax
    return scale.astype(_F32), (L + nmax).astype(np.int32)


def make_qkx_quants(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int,
                    use_mad: bool):
    """Asymmetric codes L in [0, nmax] with x ~ scale * L - the_min (make_qkx2/qkx3_quants).

    Returns (scale (n,), the_min (n,) >= 0, L int (n, k)).
    """
    x = x.astype(_F32, copy=False)
    w = w.astype(_F32, copy=False)
    xmin = np.minimum(x.min(axis=1), 0).astype(_F32)
    xmax = x.max(axis=1)
    flat = xmax <= xmin
    rng = np.where(flat, _F32(1), xmax - xmin).astype(_F32)
    sum_w = w.sum(axis=1, dtype=_F32)
    sum_x = (w * x).sum(axis=1, dtype=_F32)
    iscale = (_F32(nmax) / rng).astype(_F32)
    scale = (_F32(1) / iscale).astype(_F32)
    xs = x - xmin[:, None]
    L = np.clip(_rint(iscale[:, None] * xs), 0, nmax)

    def err(sc, mn, l):
        diff = sc[:, None] * l + mn[:, None] - x
        diff = np.abs(diff) if use_mad else diff * diff
        return (w * diff).sum(axis=1, dtype=_F32)

    best = err(scale, xmin, L)
    mn = xmin.copy()
    for i in range(nstep + 1):
        iscale = ((_F32(rmin) + _F32(rdelta) * _F32(i) + _F32(nmax)) / rng).astype(_F32)
        l = np.clip(_rint(iscale[:, None] * xs), 0, nmax)
        wl = w * l
        sum_l = wl.sum(axis=1, dtype=_F32)
        sum_l2 = (wl * l).sum(axis=1, dtype=_F32)
        sum_xl = (wl * x).sum(axis=1, dtype=_F32)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > 0
        this_scale = _safe_div(sum_w * sum_xl - sum_x * sum_l, D)
        this_min = _safe_div(sum_l2 * sum_x - sum_l * sum_xl, D)
        pos = this_min > 0
        this_min = np.where(pos, _F32(0), this_min)
        this_scale = np.where(pos, _safe_div(sum_xl, sum_l2), this_scale)
        cur = err(this_scale, this_min, l)
        better = ok & (cur < best)
        if better.any():
            L[better] = l[better]
            best = np.where(better, cur, best)
            scale = np.where(better, this_scale, scale)
            mn = np.where(better, this_min, mn)
    scale = np.where(flat, _F32(0), scale).astype(_F32)
    L[flat] = 0
    return scale, (-mn).astype(_F32), L.astype(np.int32)


def make_qp_quants(x: np.ndarray, nmax: int, qw: np.ndarray):
    """Non-negative values x (the sub-block scales) as scale * L, L in [0, nmax]; weighted by qw."""
    x = x.astype(_F32, copy=False)
    qw = qw.astype(_F32, copy=False)
    n, k = x.shape
    mx = x.max(axis=1)
    zero = mx < GROUP_MAX_EPS
    mx = np.where(zero, _F32(1), mx)
    iscale = (_F32(nmax) / mx).astype(_F32)
    L = _rint(iscale[:, None] * x)
    scale = (_F32(1) / iscale).astype(_F32)
    best = (qw * (x - scale[:, None] * L) ** 2).sum(axis=1, dtype=_F32)
    for i in range(-4, 5):
        if i == 0:
            continue
        iscale_i = ((_F32(0.1) * _F32(i) + _F32(nmax)) / mx).astype(_F32)
        scale_i = (_F32(1) / iscale_i).astype(_F32)
        l = np.minimum(_rint(iscale_i[:, None] * x), nmax)
        mse = (qw * (x - scale_i[:, None] * l) ** 2).sum(axis=1, dtype=_F32)
        better = mse < best
        best = np.where(better, mse, best)
        iscale = np.where(better, iscale_i, iscale)
    L = np.minimum(_rint(iscale[:, None] * x), nmax)
    sumlx = (qw * x * L).sum(axis=1, dtype=_F32)
    suml2 = (qw * L * L).sum(axis=1, dtype=_F32)
    active = np.ones(n, bool)
    for _ in range(5):
        changed = np.zeros(n, bool)
        for i in range(k):
            wi, xi, li = qw[:, i], x[:, i], L[:, i]
            slx = sumlx - wi * xi * li
            sl2 = suml2 - wi * li * li
            ok = active & (slx > 0) & (sl2 > 0)
            new_l = np.minimum(_rint(xi * _safe_div(sl2, slx)), nmax)
            ok &= new_l != li
            slx2 = slx + wi * xi * new_l
            sl22 = sl2 + wi * new_l * new_l
            ok &= slx2 * slx2 * suml2 > sumlx * sumlx * sl22
            L[ok, i] = new_l[ok]
            sumlx = np.where(ok, slx2, sumlx)
            suml2 = np.where(ok, sl22, suml2)
            changed |= ok
        active &= changed
        if not active.any():
            break
    scale = _safe_div(sumlx, suml2)
    scale[zero] = 0
    L[zero] = 0
    return scale.astype(_F32), L.astype(np.int32)


# --------------------------------------------------------------- the grids
#
# Whatever the type, once its scales are fixed every element x of a sub-block
# is coded as an integer L in [0, levels) and read back as
#     x' = scale * values[L] + offset
# where ``values`` is arange(levels) (or IQ4_NL's table) and scale/offset are
# per sub-block, exactly as the dequantizer computes them (f16 rounding and
# integer sub-scales included).  This is what GPTQ needs: fix the grid, then
# choose L column by column.


@dataclass
class Grid:
    """The dequantization grid of a tensor, per sub-block.

    ``scale``/``offset``: float32 ``(n_sub,)``; ``values``: the code table;
    ``sub``: elements per sub-block; ``params``: the type's raw fields (f16
    d/dmin, integer sub-scales...) that :func:`encode_codes` packs next to
    the codes.
    """

    ggml_type: GGMLType
    sub: int
    scale: np.ndarray
    offset: np.ndarray
    values: np.ndarray
    params: dict

    def codes(self, x: np.ndarray) -> np.ndarray:
        """Nearest code of each element: x ``(n_sub, sub)`` -> int ``(n_sub, sub)``."""
        return nearest_code(x, self.scale[:, None], self.offset[:, None], self.values)


def nearest_code(x: np.ndarray, scale: np.ndarray, offset: np.ndarray, values: np.ndarray) -> np.ndarray:
    """argmin_L |scale * values[L] + offset - x| for a sorted table ``values`` (broadcasting)."""
    n = len(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (x - offset) / scale
    t = np.where(np.isfinite(t), t, 0)  # a zero scale: every code reads back as the offset
    if np.array_equal(values, np.arange(n, dtype=values.dtype)):
        return np.clip(_rint(t), 0, n - 1).astype(np.int32)
    mids = (values[1:] + values[:-1]) / 2
    return np.searchsorted(mids, t).astype(np.int32)


def dequantize_grid(grid: Grid, codes: np.ndarray) -> np.ndarray:
    return (grid.scale[:, None] * grid.values[codes] + grid.offset[:, None]).astype(_F32)


# ------------------------------------------------------------------ weights


def _element_weights(x: np.ndarray, imp: np.ndarray | None, sigma_scope: int, sigma_mult: float) -> np.ndarray | None:
    """llama.cpp's per-element weights ``imp * sqrt(sigma2 + x^2)``; sigma2 over groups of ``sigma_scope``."""
    if imp is None:
        return None
    n = x.size
    xs = x.reshape(-1, sigma_scope)
    sigma2 = _F32(sigma_mult) * (xs * xs).sum(axis=1, keepdims=True, dtype=_F32) / _F32(sigma_scope)
    w = imp.reshape(-1, sigma_scope) * np.sqrt(sigma2 + xs * xs)
    return w.reshape(x.shape).astype(_F32)


# --------------------------------------------------------- 32-wide types


def _fit_q8_0(x, imp):
    amax = np.abs(x).max(axis=1)
    d = (amax / _F32(127)).astype(_F32)
    return d


def _q8_0(x: np.ndarray, imp: np.ndarray | None, opts: dict) -> np.ndarray:
    # Q8_0 (34 bytes) | d: f16 | qs: 32 x int8 ; x = d * q
    d = _fit_q8_0(x, imp)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, _F32(0), _F32(1) / d).astype(_F32)
    q = _roundf(x * idv[:, None])
    out = np.empty((x.shape[0], 34), np.uint8)
    out[:, 0:2] = _f16_bytes(d)
    out[:, 2:] = q.astype(np.int8).view(np.uint8)
    return out


def _roundf(x: np.ndarray) -> np.ndarray:
    """C's roundf (half away from zero), as in quantize_row_q8_0_ref.

    Written as gguf-py's ``np_roundf``: ``floor(|x| + 0.5)`` would round
    0.49999997 up, because ``|x| + 0.5`` rounds to 1.0 in float32.
    """
    a = np.abs(x)
    fl = np.floor(a)
    return np.sign(x) * (fl + np.floor(2 * (a - fl)))


def _q4_0(x, imp, opts):
    # Q4_0 (18 bytes) | d: f16 | qs: 16 bytes, low nibbles = elems 0..15, high = 16..31 ; x = d * (q - 8)
    if imp is None:
        amax, mx = _signed_absmax(x)
        d = (mx / _F32(-8)).astype(_F32)
        with np.errstate(divide="ignore"):
            idv = np.where(d == 0, _F32(0), _F32(1) / d).astype(_F32)
        q = np.minimum(_F32(15), np.trunc(x * idv[:, None] + _F32(8.5)))
    else:
        d, q = make_qx_quants(x, 8, 1, imp)
    return _pack_32(d, None, q, 0)


def _q4_1(x, imp, opts):
    # Q4_1 (20 bytes) | d: f16 | m: f16 | qs: 16 bytes ; x = d * q + m
    if imp is None:
        mn = x.min(axis=1)
        mx = x.max(axis=1)
        d = ((mx - mn) / _F32(15)).astype(_F32)
        with np.errstate(divide="ignore"):
            idv = np.where(d == 0, _F32(0), _F32(1) / d).astype(_F32)
        q = np.minimum(_F32(15), np.trunc((x - mn[:, None]) * idv[:, None] + _F32(0.5)))
        m = mn
    else:
        d, the_min, q = make_qkx_quants(x, imp, 15, -0.9, 0.05, 36, False)
        m = -the_min
    return _pack_32(d, m, q, 0)


def _q5_0(x, imp, opts):
    # Q5_0 (22 bytes) | d: f16 | qh: u32, bit i = 5th bit of elem i | qs: 16 bytes ; x = d * (q - 16)
    if imp is None:
        amax, mx = _signed_absmax(x)
        d = (mx / _F32(-16)).astype(_F32)
        with np.errstate(divide="ignore"):
            idv = np.where(d == 0, _F32(0), _F32(1) / d).astype(_F32)
        q = np.minimum(_F32(31), np.trunc(x * idv[:, None] + _F32(16.5)))
    else:
        d, q = make_qx_quants(x, 16, 1, imp)
    return _pack_32(d, None, q, 5)


def _q5_1(x, imp, opts):
    # Q5_1 (24 bytes) | d: f16 | m: f16 | qh: u32 | qs: 16 bytes ; x = d * q + m
    if imp is None:
        mn = x.min(axis=1)
        mx = x.max(axis=1)
        d = ((mx - mn) / _F32(31)).astype(_F32)
        with np.errstate(divide="ignore"):
            idv = np.where(d == 0, _F32(0), _F32(1) / d).astype(_F32)
        q = np.minimum(_F32(31), np.trunc((x - mn[:, None]) * idv[:, None] + _F32(0.5)))
        m = mn
    else:
        d, the_min, q = make_qkx_quants(x, imp, 31, -0.9, 0.05, 36, False)
        m = -the_min
    return _pack_32(d, m, q, 5)


def _pack_32(d, m, q, bits):
    """Assemble Q4_0/Q4_1/Q5_0/Q5_1 blocks from f32 d (and m) and codes q (n, 32)."""
    q = q.astype(np.uint8)
    n = q.shape[0]
    fields = [_f16_bytes(d)]
    if m is not None:
        fields.append(_f16_bytes(m))
    if bits == 5:
        hi = ((q >> 4) & 1).astype(np.uint8)
        fields.append(np.packbits(hi, axis=1, bitorder="little"))  # u32 little-endian, bit i = elem i
    fields.append(_pack_nibbles(q[:, :16] & 0x0F, q[:, 16:] & 0x0F))
    out = np.concatenate(fields, axis=1)
    assert out.shape == (n, BLOCK_LAYOUTS[_BYTES_TO_TYPE[(out.shape[1])]].block_bytes)
    return out


_BYTES_TO_TYPE = {18: GGMLType.Q4_0, 20: GGMLType.Q4_1, 22: GGMLType.Q5_0, 24: GGMLType.Q5_1}


# IQ4_NL (18 bytes) | d: f16 | qs: 16 bytes of indices into KVALUES_IQ4NL, low nibbles = elems 0..15,
# high = 16..31 ; x = d * KVALUES_IQ4NL[q]
def _iq4_nl(x, imp, opts):
    d, q = _fit_iq4(x, imp, 32)
    return np.concatenate([_f16_bytes(d), _pack_nibbles(q[:, :16], q[:, 16:])], axis=1)


def _fit_iq4(x, imp, block):
    """llama.cpp's quantize_row_iq4_nl_impl for one scale per ``block`` elements (ntry=7)."""
    w = imp if imp is not None else x * x
    values = KVALUES_IQ4NL
    amax, mx = _signed_absmax(x)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, _F32(1), mx)
    d = (-mx / values[0]).astype(_F32)
    idv = (_F32(1) / d).astype(_F32)

    def fit(idv_):
        q = nearest_code(x, (_F32(1) / idv_)[:, None], _F32(0), values)
        v = values[q]
        sumqx = (w * v * x).sum(axis=1, dtype=_F32)
        sumq2 = (w * v * v).sum(axis=1, dtype=_F32)
        return q, sumqx, sumq2

    q, sumqx, sumq2 = fit(idv)
    d = _safe_div(sumqx, sumq2)
    best = d * sumqx
    for itry in range(-7, 8):
        idv_t = ((_F32(itry) + values[0]) / mx).astype(_F32)
        q_t, sqx, sq2 = fit(idv_t)
        better = (sq2 > 0) & (sqx * sqx > best * sq2)
        if better.any():
            d = np.where(better, _safe_div(sqx, sq2), d)
            best = d * sqx
            q = np.where(better[:, None], q_t, q)
    d[zero] = 0
    q[zero] = 8
    # requantize against the f16 scale actually stored
    d16 = _f16_round(d)
    q = np.where(zero[:, None], 8, nearest_code(x, d16[:, None], _F32(0), values))
    return d, q.astype(np.uint8)


# --------------------------------------------------------------- k-quants


def _q2_k(x, imp, opts):
    grid = _fit_q2_k(x, imp)
    return _encode_q2_k(grid, grid.codes(x.reshape(-1, 16)).reshape(-1, QK_K))


def _fit_q2_k(x, imp) -> Grid:
    n = x.shape[0]
    xs = x.reshape(n * 16, 16)
    if imp is None:
        w = np.abs(xs)
        scales, mins, _ = make_qkx_quants(xs, w, 3, -0.5, 0.1, 15, True)
        scales, mins = scales.reshape(n, 16), mins.reshape(n, 16)
        max_scale = scales.max(axis=1)
        max_min = mins.max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ls = np.where(max_scale[:, None] > 0, _rint(_F32(15) / max_scale[:, None] * scales), 0)
            lm = np.where(max_min[:, None] > 0, _rint(_F32(15) / max_min[:, None] * mins), 0)
        d = np.where(max_scale > 0, max_scale / _F32(15), 0).astype(_F32)
        dmin = np.where(max_min > 0, max_min / _F32(15), 0).astype(_F32)
    else:
        wimp = _element_weights(x, imp, QK_K, 1.0).reshape(n * 16, 16)
        scales, mins, _ = make_qkx_quants(xs, wimp, 3, -0.9, 0.05, 36, False)
        sw = wimp.sum(axis=1).reshape(n, 16)
        d, ls = make_qp_quants(scales.reshape(n, 16), 15, sw)
        dmin, lm = make_qp_quants(mins.reshape(n, 16), 15, sw)
    ls = np.clip(ls, 0, 15).astype(np.uint8)
    lm = np.clip(lm, 0, 15).astype(np.uint8)
    d16, dmin16 = _f16_round(d), _f16_round(dmin)
    scale = (d16[:, None] * ls).reshape(-1)
    offset = -(dmin16[:, None] * lm).reshape(-1)
    return Grid(GGMLType.Q2_K, 16, scale.astype(_F32), offset.astype(_F32), np.arange(4, dtype=_F32),
                {"d": d, "dmin": dmin, "ls": ls, "lm": lm})


def _encode_q2_k(grid: Grid, L: np.ndarray) -> np.ndarray:
    # Q2_K (84 bytes) | scales: 16 (low nibble scale, high nibble min) | qs: 64 | d: f16 | dmin: f16
    n = L.shape[0]
    p = grid.params
    L = L.astype(np.uint8).reshape(n, 2, 4, 32)  # elem 128h + 32s + l
    qs = L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)
    return np.concatenate([p["ls"] | (p["lm"] << 4), qs.reshape(n, 64), _f16_bytes(p["d"]), _f16_bytes(p["dmin"])],
                          axis=1)


def _q3_k(x, imp, opts):
    grid = _fit_q3_k(x, imp)
    return _encode_q3_k(grid, grid.codes(x.reshape(-1, 16)).reshape(-1, QK_K))


def _fit_q3_k(x, imp) -> Grid:
    n = x.shape[0]
    xs = x.reshape(n * 16, 16)
    if imp is None:
        scales, _ = make_q3_quants(xs, 4, True)
        scales = scales.reshape(n, 16)
        amax, max_scale = _signed_absmax(scales)
        nz = max_scale != 0
        iscale = np.where(nz, _F32(-32) / np.where(nz, max_scale, 1), 0).astype(_F32)
        ls = np.clip(_rint(iscale[:, None] * scales), -32, 31) + 32
        d = np.where(nz, _F32(1) / np.where(nz, iscale, 1), 0).astype(_F32)
        ls = np.where(nz[:, None], ls, 0)  # llama.cpp leaves the scale bytes zero: sub-scale -32 * d=0
    else:
        w = _element_weights(x, imp, QK_K, 2.0).reshape(n * 16, 16)
        scales, _ = make_qx_quants(xs, 4, 1, w)
        sw = w.sum(axis=1).reshape(n, 16)
        d, ls = make_qx_quants(scales.reshape(n, 16), 32, 1, sw)
    ls = ls.astype(np.int32)
    d16 = _f16_round(d)
    sc = (d16[:, None] * (ls - 32)).reshape(-1).astype(_F32)
    # x' = sc * (L - 4) with L in [0, 8)
    return Grid(GGMLType.Q3_K, 16, sc, (-4 * sc).astype(_F32), np.arange(8, dtype=_F32), {"d": d, "ls": ls})


def _encode_q3_k(grid: Grid, L: np.ndarray) -> np.ndarray:
    # Q3_K (110 bytes) | hmask: 32 | qs: 64 | scales: 12 | d: f16
    n = L.shape[0]
    L = L.astype(np.uint8)
    ls = grid.params["ls"].astype(np.uint8)  # (n, 16) in [0, 64)
    sb = np.zeros((n, 12), np.uint8)
    sb[:, 0:8] = (ls[:, 0:8] & 0xF) | ((ls[:, 8:16] & 0xF) << 4)
    hi = ls >> 4  # (n, 16) 2-bit
    for j in range(16):
        sb[:, 8 + j % 4] |= hi[:, j] << (2 * (j // 4))
    hbit = (L >> 2).reshape(n, 8, 32)  # elem 32b + l -> bit b of hmask[l]
    hmask = np.zeros((n, 32), np.uint8)
    for b in range(8):
        hmask |= hbit[:, b] << b
    low = (L & 3).reshape(n, 2, 4, 32)
    qs = low[:, :, 0] | (low[:, :, 1] << 2) | (low[:, :, 2] << 4) | (low[:, :, 3] << 6)
    return np.concatenate([hmask, qs.reshape(n, 64), sb, _f16_bytes(grid.params["d"])], axis=1)


def _pack_k_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K: eight 6-bit scales and mins -> 12 bytes (inverse of quants._k_scale_min)."""
    ls = ls.astype(np.uint8)
    lm = lm.astype(np.uint8)
    n = ls.shape[0]
    out = np.zeros((n, 12), np.uint8)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    return out


def _fit_q45_k(x, imp, nmax: int, gtype: GGMLType) -> Grid:
    n = x.shape[0]
    xs = x.reshape(n * 8, 32)
    if imp is None:
        av_x = np.sqrt((xs * xs).sum(axis=1, keepdims=True, dtype=_F32) / _F32(32))
        w = av_x + np.abs(xs)
        scales, mins, _ = make_qkx_quants(xs, w, nmax, -1.0 if nmax == 15 else -0.5, 0.1, 20 if nmax == 15 else 15,
                                          False)
        scales, mins = scales.reshape(n, 8), mins.reshape(n, 8)
        max_scale = scales.max(axis=1)
        max_min = mins.max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_scale = np.where(max_scale > 0, _F32(63) / max_scale, 0).astype(_F32)
            inv_min = np.where(max_min > 0, _F32(63) / max_min, 0).astype(_F32)
        ls = np.minimum(63, _rint(inv_scale[:, None] * scales))
        lm = np.minimum(63, _rint(inv_min[:, None] * mins))
        d = (max_scale / _F32(63)).astype(_F32)
        dmin = (max_min / _F32(63)).astype(_F32)
    else:
        w = _element_weights(x, imp, QK_K, 2.0).reshape(n * 8, 32)
        scales, mins, _ = make_qkx_quants(xs, w, nmax, -0.9, 0.05, 36, False)
        sw = w.sum(axis=1).reshape(n, 8)
        d, ls = make_qp_quants(scales.reshape(n, 8), 63, sw)
        dmin, lm = make_qp_quants(mins.reshape(n, 8), 63, sw)
        ls, lm = np.minimum(ls, 63), np.minimum(lm, 63)
    ls = ls.astype(np.uint8)
    lm = lm.astype(np.uint8)
    d16, dmin16 = _f16_round(d), _f16_round(dmin)
    scale = (d16[:, None] * ls).reshape(-1).astype(_F32)
    offset = (-(dmin16[:, None] * lm)).reshape(-1).astype(_F32)
    return Grid(gtype, 32, scale, offset, np.arange(nmax + 1, dtype=_F32), {"d": d, "dmin": dmin, "ls": ls, "lm": lm})


def _q4_k(x, imp, opts):
    grid = _fit_q45_k(x, imp, 15, GGMLType.Q4_K)
    return _encode_q4_k(grid, grid.codes(x.reshape(-1, 32)).reshape(-1, QK_K))


def _encode_q4_k(grid: Grid, L: np.ndarray) -> np.ndarray:
    # Q4_K (144 bytes) | d: f16 | dmin: f16 | scales: 12 | qs: 128 (elem 64c + l low nibble, 64c + 32 + l high)
    n = L.shape[0]
    L = L.astype(np.uint8).reshape(n, 4, 2, 32)
    qs = (L[:, :, 0] | (L[:, :, 1] << 4)).reshape(n, 128)
    p = grid.params
    return np.concatenate([_f16_bytes(p["d"]), _f16_bytes(p["dmin"]), _pack_k_scales(p["ls"], p["lm"]), qs], axis=1)


def _q5_k(x, imp, opts):
    grid = _fit_q45_k(x, imp, 31, GGMLType.Q5_K)
    return _encode_q5_k(grid, grid.codes(x.reshape(-1, 32)).reshape(-1, QK_K))


def _encode_q5_k(grid: Grid, L: np.ndarray) -> np.ndarray:
    # Q5_K (176 bytes) | d | dmin | scales: 12 | qh: 32 (elem 32b + l: bit b of qh[l]) | qs: 128 as Q4_K
    n = L.shape[0]
    L = L.astype(np.uint8)
    hb = (L >> 4).reshape(n, 8, 32)
    qh = np.zeros((n, 32), np.uint8)
    for b in range(8):
        qh |= hb[:, b] << b
    low = (L & 0xF).reshape(n, 4, 2, 32)
    qs = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(n, 128)
    p = grid.params
    return np.concatenate([_f16_bytes(p["d"]), _f16_bytes(p["dmin"]), _pack_k_scales(p["ls"], p["lm"]), qh, qs],
                          axis=1)


def _q6_k(x, imp, opts):
    grid = _fit_q6_k(x, imp)
    return _encode_q6_k(grid, grid.codes(x.reshape(-1, 16)).reshape(-1, QK_K))


def _fit_q6_k(x, imp) -> Grid:
    n = x.shape[0]
    xs = x.reshape(n * 16, 16)
    qw = None if imp is None else imp.reshape(n * 16, 16)
    scales, _ = make_qx_quants(xs, 32, 1, qw)
    scales = scales.reshape(n, 16)
    amax, max_scale = _signed_absmax(scales)
    zero = amax < GROUP_MAX_EPS
    iscale = np.where(zero, 0, _F32(-128) / np.where(zero, 1, max_scale)).astype(_F32)
    d = np.where(zero, 0, _F32(1) / np.where(zero, 1, iscale)).astype(_F32)
    ls = np.minimum(127, _rint(iscale[:, None] * scales)).astype(np.int32)
    ls[zero] = 0
    sc = (_f16_round(d)[:, None] * ls).reshape(-1).astype(_F32)
    return Grid(GGMLType.Q6_K, 16, sc, (-32 * sc).astype(_F32), np.arange(64, dtype=_F32), {"d": d, "ls": ls})


def _encode_q6_k(grid: Grid, L: np.ndarray) -> np.ndarray:
    # Q6_K (210 bytes) | ql: 128 | qh: 64 | scales: 16 x int8 | d: f16
    n = L.shape[0]
    L = L.astype(np.uint8).reshape(n, 2, 4, 32)  # elem 128h + 32s + l
    lo = L & 0xF
    hi = L >> 4
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], axis=2)  # (n,2,64)
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)  # (n,2,32)
    ls = grid.params["ls"].astype(np.int8).view(np.uint8)
    return np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64), ls, _f16_bytes(grid.params["d"])], axis=1)


# ------------------------------------------------------------------ dispatch

# type -> (block quantizer, sub-block grid fitter or None, code encoder or None)
_QUANTIZERS: dict[GGMLType, Callable] = {
    GGMLType.Q8_0: _q8_0,
    GGMLType.Q4_0: _q4_0,
    GGMLType.Q4_1: _q4_1,
    GGMLType.Q5_0: _q5_0,
    GGMLType.Q5_1: _q5_1,
    GGMLType.IQ4_NL: _iq4_nl,
    GGMLType.Q2_K: _q2_k,
    GGMLType.Q3_K: _q3_k,
    GGMLType.Q4_K: _q4_k,
    GGMLType.Q5_K: _q5_k,
    GGMLType.Q6_K: _q6_k,
}

_GRIDS: dict[GGMLType, tuple[Callable, Callable]] = {
    GGMLType.Q2_K: (_fit_q2_k, _encode_q2_k),
    GGMLType.Q3_K: (_fit_q3_k, _encode_q3_k),
    GGMLType.Q4_K: (lambda x, imp: _fit_q45_k(x, imp, 15, GGMLType.Q4_K), _encode_q4_k),
    GGMLType.Q5_K: (lambda x, imp: _fit_q45_k(x, imp, 31, GGMLType.Q5_K), _encode_q5_k),
    GGMLType.Q6_K: (_fit_q6_k, _encode_q6_k),
}

QUANTIZABLE_TYPES: tuple[GGMLType, ...] = (GGMLType.F32, GGMLType.F16, *_QUANTIZERS)


def _check_type(ggml_type) -> GGMLType:
    try:
        t = GGMLType[ggml_type.upper()] if isinstance(ggml_type, str) else GGMLType(ggml_type)
    except (KeyError, ValueError):
        t = None
    if t is None or t not in QUANTIZABLE_TYPES:
        shown = repr(ggml_type.name if isinstance(ggml_type, GGMLType) else ggml_type)
        raise QuantizeError(
            f"cannot quantize to {shown}; quantizable types: {', '.join(q.name for q in QUANTIZABLE_TYPES)}"
        )
    return t


def _check_input(x: np.ndarray, t: GGMLType, importance, name: str):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise QuantizeError(f"tensor {name!r}: quantize float data, not {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise QuantizeError(f"tensor {name!r} holds NaN or infinite values")
    block = BLOCK_LAYOUTS[t].block_elems
    if x.size % block:
        raise QuantizeError(
            f"tensor {name!r}: {x.size} elements (shape {x.shape}) are not a whole number of {t.name} "
            f"blocks of {block}"
        )
    imp = None
    if importance is not None:
        imp = np.asarray(importance, dtype=np.float32)
        if imp.shape != x.shape:
            try:
                imp = np.broadcast_to(imp, x.shape)
            except ValueError:
                raise QuantizeError(
                    f"tensor {name!r}: importance of shape {imp.shape} does not match the tensor's {x.shape}"
                ) from None
        if not np.isfinite(imp).all() or (imp < 0).any():
            raise QuantizeError(f"tensor {name!r}: importance weights must be finite and >= 0")
    return x, imp


def quantize(x: np.ndarray, ggml_type, *, importance: np.ndarray | None = None, name: str = "<tensor>") -> np.ndarray:
    """Quantize ``x`` (any shape) to ``ggml_type``; returns the raw bytes as a uint8 array.

    The elements are read in C order and cut into blocks; the element count
    must be a whole number of blocks (rows need not be: see
    docs/quantization.md, "packed rows").  ``importance`` (broadcastable to
    ``x``, typically the imatrix vector of the input columns) switches from
    round-to-nearest to the weighted search.  F32 and F16 are plain casts.
    """
    t = _check_type(ggml_type)
    x, imp = _check_input(x, t, importance, name)
    if t == GGMLType.F32:
        return x.reshape(-1).view(np.uint8).copy()
    if t == GGMLType.F16:
        return x.reshape(-1).astype("<f2").view(np.uint8)
    layout = BLOCK_LAYOUTS[t]
    blocks = x.reshape(-1, layout.block_elems)
    wblocks = None if imp is None else np.ascontiguousarray(imp).reshape(-1, layout.block_elems)
    if imp is not None and t == GGMLType.IQ4_NL:
        wblocks = _element_weights(x.reshape(-1), np.ascontiguousarray(imp).reshape(-1), 32, 2.0)
        wblocks = wblocks.reshape(-1, layout.block_elems)
    elif imp is not None and t in (GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1):
        # llama.cpp's 32-wide types weight by imp * sqrt(sigma2 + x^2) with sigma2 over the whole row
        row = x.shape[-1] if x.ndim and x.shape[-1] % layout.block_elems == 0 else layout.block_elems
        wblocks = _element_weights(x.reshape(-1), np.ascontiguousarray(imp).reshape(-1), row, 1.0)
        wblocks = wblocks.reshape(-1, layout.block_elems)
    return quantize_blocks(blocks, t, wblocks).reshape(-1)


def quantize_blocks(blocks: np.ndarray, t: GGMLType, weights: np.ndarray | None = None) -> np.ndarray:
    """``(n_blocks, block_elems)`` float32 -> ``(n_blocks, block_bytes)`` uint8, chunk by chunk."""
    fn = _QUANTIZERS[t]
    layout = BLOCK_LAYOUTS[t]
    n = blocks.shape[0]
    out = np.empty((n, layout.block_bytes), np.uint8)
    step = max(1, _CHUNK_ELEMS // layout.block_elems)
    for i in range(0, n, step):
        w = None if weights is None else weights[i : i + step]
        out[i : i + step] = fn(blocks[i : i + step], w, {})
    return out


def fit_grid(x: np.ndarray, ggml_type, *, importance: np.ndarray | None = None, name: str = "<tensor>") -> Grid:
    """The dequantization grid (per sub-block scale and offset) the quantizer would choose for ``x``.

    For error feedback: fix the grid from the original weights, then choose
    the codes (:meth:`Grid.codes`) as the weights change, and pack them with
    :func:`encode_codes`.  Available for the k-quants, IQ4_NL and the 32-wide types.
    """
    t = _check_type(ggml_type)
    x, imp = _check_input(x, t, importance, name)
    layout = BLOCK_LAYOUTS[t]
    blocks = x.reshape(-1, layout.block_elems)
    w = None if imp is None else np.ascontiguousarray(imp).reshape(-1, layout.block_elems)
    if t in _GRIDS:
        fit = _GRIDS[t][0]
        grids = []
        step = max(1, _CHUNK_ELEMS // layout.block_elems)
        for i in range(0, blocks.shape[0], step):
            grids.append(fit(blocks[i : i + step], None if w is None else w[i : i + step]))
        g0 = grids[0]
        params = {k: np.concatenate([g.params[k] for g in grids]) for k in g0.params}
        return Grid(t, g0.sub, np.concatenate([g.scale for g in grids]), np.concatenate([g.offset for g in grids]),
                    g0.values, params)
    # 32-wide types: quantize once and read the grid back from the bytes
    raw = quantize(x, t, importance=importance, name=name).reshape(-1, layout.block_bytes)
    d = raw[:, 0:2].view("<f2").astype(np.float32)[:, 0]
    if t == GGMLType.Q8_0:
        return Grid(t, 32, d, (-128 * d).astype(_F32), np.arange(256, dtype=_F32), {"d": d})
    if t == GGMLType.Q4_0:
        return Grid(t, 32, d, (-8 * d).astype(_F32), np.arange(16, dtype=_F32), {"d": d})
    if t == GGMLType.Q5_0:
        return Grid(t, 32, d, (-16 * d).astype(_F32), np.arange(32, dtype=_F32), {"d": d})
    if t in (GGMLType.Q4_1, GGMLType.Q5_1):
        m = raw[:, 2:4].view("<f2").astype(np.float32)[:, 0]
        levels = 16 if t == GGMLType.Q4_1 else 32
        return Grid(t, 32, d, m, np.arange(levels, dtype=_F32), {"d": d, "m": m})
    if t == GGMLType.IQ4_NL:
        return Grid(t, 32, d, np.zeros_like(d), KVALUES_IQ4NL, {"d": d})
    raise QuantizeError(f"no grid for {t.name}")


def encode_codes(grid: Grid, codes: np.ndarray) -> np.ndarray:
    """Pack codes chosen on ``grid`` (``(n_sub, sub)`` ints) into the type's raw bytes (uint8, flat)."""
    t = grid.ggml_type
    layout = BLOCK_LAYOUTS[t]
    codes = np.asarray(codes).reshape(-1, layout.block_elems)
    if t in _GRIDS:
        enc = _GRIDS[t][1]
        out = np.empty((codes.shape[0], layout.block_bytes), np.uint8)
        step = max(1, _CHUNK_ELEMS // layout.block_elems)
        for i in range(0, codes.shape[0], step):
            sl = slice(i, i + step)
            sub = Grid(t, grid.sub, grid.scale, grid.offset, grid.values,
                       {k: v[sl] for k, v in grid.params.items()})
            out[sl] = enc(sub, codes[sl])
        return out.reshape(-1)
    p = grid.params
    q = codes.astype(np.uint8)
    if t == GGMLType.Q8_0:
        out = np.concatenate([_f16_bytes(p["d"]), (q.astype(np.int16) - 128).astype(np.int8).view(np.uint8)], axis=1)
    elif t == GGMLType.IQ4_NL:
        out = np.concatenate([_f16_bytes(p["d"]), _pack_nibbles(q[:, :16], q[:, 16:])], axis=1)
    else:
        bits = 5 if t in (GGMLType.Q5_0, GGMLType.Q5_1) else 4
        out = _pack_32(p["d"], p.get("m"), q, bits)
    return out.reshape(-1)
