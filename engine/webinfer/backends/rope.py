"""Rotary embedding tables (cos/sin per position and frequency), shared by backends.

Follows ggml's ``rope_f32``: theta_i = pos * base^(-2i/n_dims), optionally
divided by per-dimension factors (llama-3.1's ``rope_freqs``), scaled
linearly, or blended with YaRN's ramp.
"""

from __future__ import annotations

import math

import numpy as np

from ..model.args import RopeConfig


def _yarn_corr_dims(cfg: RopeConfig) -> tuple[float, float]:
    def corr_dim(n_rot: float) -> float:
        return cfg.n_dims * math.log(cfg.n_ctx_orig / (n_rot * 2 * math.pi)) / (2 * math.log(cfg.theta))

    start = math.floor(corr_dim(cfg.beta_fast))
    end = math.ceil(corr_dim(cfg.beta_slow))
    return max(0.0, start), min(cfg.n_dims - 1.0, end)


def rope_tables(cfg: RopeConfig, n_pos: int, freq_factors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin tables of shape [n_pos, n_dims/2] (float32)."""
    half = cfg.n_dims // 2
    i = np.arange(half, dtype=np.float64)
    inv_freq = cfg.theta ** (-2.0 * i / cfg.n_dims)          # [half]
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors.astype(np.float64)[:half]
    pos = np.arange(n_pos, dtype=np.float64)[:, None]
    theta_extrap = pos * inv_freq                              # [n_pos, half]
    mscale = 1.0
    if cfg.scaling == "yarn":
        freq_scale = 1.0 / cfg.factor
        theta_interp = freq_scale * theta_extrap
        low, high = _yarn_corr_dims(cfg)
        ramp = 1.0 - np.clip((i - low) / max(0.001, high - low), 0.0, 1.0)
        mix = ramp * cfg.ext_factor
        theta = theta_interp * (1 - mix) + theta_extrap * mix
        mscale = cfg.attn_factor * (1.0 + 0.1 * math.log(1.0 / freq_scale))
    elif cfg.scaling == "linear":
        theta = theta_extrap / cfg.factor
    else:
        theta = theta_extrap
    return (np.cos(theta) * mscale).astype(np.float32), (np.sin(theta) * mscale).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, style: str) -> np.ndarray:
    """Rotate x [T, H, head_dim] in place by per-position tables cos/sin [T, n_dims/2]."""
    half = cos.shape[-1]
    c = cos[:, None, :]
    s = sin[:, None, :]
    if style == "norm":  # adjacent pairs (x0, x1), (x2, x3), ...
        x0 = x[..., 0 : 2 * half : 2].copy()
        x1 = x[..., 1 : 2 * half : 2]
        x[..., 0 : 2 * half : 2] = x0 * c - x1 * s
        x[..., 1 : 2 * half : 2] = x0 * s + x1 * c
    else:  # neox: (x_i, x_{i+half})
        x0 = x[..., :half].copy()
        x1 = x[..., half : 2 * half]
        x[..., :half] = x0 * c - x1 * s
        x[..., half : 2 * half] = x0 * s + x1 * c
    return x
