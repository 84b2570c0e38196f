"""Token sampling on the CPU: greedy, temperature, top-k, top-p, min-p, repetition penalty.

The chain follows llama.cpp's default order (penalties, top-k, top-p, min-p,
temperature, draw) so that settings mean the same in both engines.  A seed
makes draws reproducible: the same seed, prompt and settings give the same
tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InvalidArgumentError


@dataclass(frozen=True)
class SamplingParams:
    """How to choose the next token.  ``temperature == 0`` means greedy (argmax)."""

    temperature: float = 0.7
    top_k: int = 40            # 0 disables
    top_p: float = 0.95        # 1.0 disables
    min_p: float = 0.05        # 0.0 disables
    repetition_penalty: float = 1.0   # 1.0 disables; llama.cpp's repeat_penalty
    repeat_last_n: int = 64    # how many recent tokens the penalty looks at
    seed: int | None = None

    def __post_init__(self) -> None:
        def check(ok: bool, what: str) -> None:
            if not ok:
                raise InvalidArgumentError(what)

        check(np.isfinite(self.temperature) and self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        check(isinstance(self.top_k, int) and self.top_k >= 0, f"top_k must be an integer >= 0, got {self.top_k}")
        check(0.0 < self.top_p <= 1.0, f"top_p must be in (0, 1], got {self.top_p}")
        check(0.0 <= self.min_p < 1.0, f"min_p must be in [0, 1), got {self.min_p}")
        check(np.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
              f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        check(self.repeat_last_n >= 0, f"repeat_last_n must be >= 0, got {self.repeat_last_n}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Sampler:
    """Stateful sampler: owns the random generator seeded once per generation."""

    def __init__(self, params: SamplingParams):
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        p = self.params
        on_device = getattr(logits, "sample_on_device", None)   # logits still on a GPU (backends/webgpu)
        if on_device is not None:
            tok = on_device(self)             # sampled there, 4 bytes read back; None: do it here
            if tok is not None:
                return tok
        logits = np.asarray(logits, dtype=np.float32)
        if p.repetition_penalty != 1.0 and p.repeat_last_n and len(history):
            logits = logits.copy()
            recent = np.unique(np.asarray(history[-p.repeat_last_n:], dtype=np.int64))
            vals = logits[recent]
            # llama.cpp: shrink positive logits, push negative ones further down
            logits[recent] = np.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
        if p.greedy:
            return int(np.argmax(logits))

        # Candidates sorted by logit, best first; top-k bounds the sort.
        k = logits.shape[0] if p.top_k == 0 else min(p.top_k, logits.shape[0])
        if k < logits.shape[0]:
            idx = np.argpartition(-logits, k - 1)[:k]
        else:
            idx = np.arange(logits.shape[0])
        idx = idx[np.argsort(-logits[idx], kind="stable")]
        z = logits[idx].astype(np.float64)
        probs = np.exp(z - z[0])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            idx, z, probs = idx[:keep], z[:keep], probs[:keep]
        if p.min_p > 0.0:
            keep = probs >= p.min_p * probs[0]
            idx, z = idx[keep], z[keep]
        z = z / p.temperature
        probs = np.exp(z - z[0])
        probs /= probs.sum()
        return int(idx[self.rng.choice(len(idx), p=probs)])
