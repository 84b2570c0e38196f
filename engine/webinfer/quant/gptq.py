"""Error feedback across input columns (GPTQ, Frantar et al. 2022) on ggml block grids.

Rounding each weight to its nearest grid point ignores that the errors of
different input columns add up in the output.  GPTQ quantizes the columns of
``W`` (out, in) one at a time and spreads each column's rounding error over
the columns not yet quantized, in the proportions that minimise the output
error ``sum_rows (w - w') H (w - w')^T`` for the input covariance ``H``
(:mod:`webinfer.quant.imatrix`, ``--cov``).

The grid (every sub-block's scale and offset, see
:class:`webinfer.formats.quantize.Grid`) is fixed first from the original
weights with the weighted search (importance = diag H), so the scales the
file stores are the usual ones; only the codes change.  With a fixed grid,
the column order is free: columns go in order of decreasing ``H[j, j]``
("act-order"), which helps, at no cost in the file format.
"""

from __future__ import annotations

import numpy as np

from ..formats.quantize import Grid, encode_codes, fit_grid, nearest_code

DAMP = 0.01          # fraction of mean(diag H) added to the diagonal (GPTQ's default)
BLOCK = 128          # columns per lazy batch update (GPTQ's default)


def _inverse_cholesky(h: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor of H^-1 (what GPTQ's update uses)."""
    hinv = np.linalg.inv(np.linalg.cholesky(h))       # L^-1
    hinv = hinv.T @ hinv                               # H^-1 = L^-T L^-1
    return np.linalg.cholesky(hinv).T                  # upper U with H^-1 = U^T U


def gptq_codes(w: np.ndarray, h: np.ndarray, grid: Grid, *, act_order: bool = True,
               damp: float = DAMP, block: int = BLOCK) -> np.ndarray:
    """Codes for ``w`` (rows, cols) on ``grid`` chosen with GPTQ error feedback; int ``(rows, cols)``."""
    rows, cols = w.shape
    sub = grid.sub
    assert cols % sub == 0, "every sub-block must lie within one row"
    scale = grid.scale.reshape(rows, cols // sub)
    offset = grid.offset.reshape(rows, cols // sub)
    values = grid.values

    h = np.array(h, dtype=np.float64)
    w = np.array(w, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(cols)
    w = w[:, perm]
    h = h[np.ix_(perm, perm)]
    h[np.diag_indices(cols)] += damp * np.mean(np.diag(h))
    u = _inverse_cholesky(h)

    codes = np.empty((rows, cols), np.int32)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w[:, i1:i2].copy()
        err1 = np.empty_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = perm[i1 + i]
            s, o = scale[:, j // sub], offset[:, j // sub]
            col = w1[:, i]
            c = nearest_code(col.astype(np.float32), s, o, values)
            codes[:, j] = c
            q = s.astype(np.float64) * values[c] + o
            e = (col - q) / u1[i, i]
            w1[:, i:] -= np.outer(e, u1[i, i:])
            err1[:, i] = e
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return codes


def gptq_quantize(w: np.ndarray, h: np.ndarray, ggml_type, *, importance: np.ndarray | None = None,
                  act_order: bool = True, name: str = "<tensor>") -> np.ndarray:
    """Quantize ``w`` (rows, cols) to ``ggml_type`` with GPTQ; returns the raw bytes (uint8, flat)."""
    if importance is None:
        importance = np.diag(h).astype(np.float32)
    grid = fit_grid(w, ggml_type, importance=importance, name=name)
    codes = gptq_codes(w, h, grid, act_order=act_order)
    return encode_codes(grid, codes.reshape(-1, grid.sub))
