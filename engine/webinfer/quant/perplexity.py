"""Perplexity, with a fixed, documented protocol (the same as llama.cpp's peer script).

Protocol: the text's raw bytes decoded as UTF-8 (line endings kept), tokenized
with the model's tokenizer without BOS or special-token parsing; the first
``n_tokens`` tokens are cut into non-overlapping windows of ``ctx`` tokens;
each window is evaluated from an empty KV cache; the negative log-likelihood
``logsumexp(logits[i]) - logits[i][tok[i+1]]`` is computed in float64 for
positions 0..ctx-2 of every window; PPL = exp(mean NLL).  A trailing partial
window is dropped, so the count of predictions is exactly
``n_windows * (ctx - 1)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import InvalidArgumentError
from ..runtime.session import Session


@dataclass
class PerplexityResult:
    ppl: float
    mean_nll: float
    n_predictions: int
    n_windows: int
    ctx: int
    n_tokens_text: int      # tokens in the whole text before truncation
    seconds: float
    window_ppl: list[float]

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def window_nll(logits: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """NLL of each next token in float64: logits [ctx, vocab] -> [ctx-1]."""
    lg = logits[:-1].astype(np.float64)
    m = lg.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(lg - m).sum(axis=1))
    tgt = np.asarray(window[1:])
    return lse - lg[np.arange(len(tgt)), tgt]


def perplexity(model, token_ids: Sequence[int], *, ctx: int = 512, n_tokens: int | None = 8192,
               progress: Callable[[int, int, float], None] | None = None,
               kv_dtype: str | None = None) -> PerplexityResult:
    """Perplexity of ``model`` on ``token_ids`` under the protocol in this module's docstring.

    ``kv_dtype`` stores the KV cache compressed (see backends/numpy_backend.py).
    """
    if ctx < 2:
        raise InvalidArgumentError(f"ctx must be at least 2, got {ctx}")
    total = len(token_ids)
    toks = list(token_ids[:n_tokens] if n_tokens else token_ids)
    n_windows = len(toks) // ctx
    if n_windows == 0:
        raise InvalidArgumentError(f"the text has {len(toks)} tokens, fewer than one window of {ctx}")
    t0 = time.perf_counter()
    nll_sum, count, per_window = 0.0, 0, []
    session = Session(model, ctx, n_batch=ctx, kv_dtype=kv_dtype)
    for w in range(n_windows):
        window = toks[w * ctx : (w + 1) * ctx]
        session.reset()
        nll = window_nll(session.evaluate(window, n_logits=ctx), window)
        nll_sum += float(nll.sum())
        count += len(nll)
        per_window.append(math.exp(float(nll.mean())))
        if progress:
            progress(w + 1, n_windows, math.exp(nll_sum / count))
    mean = nll_sum / count
    return PerplexityResult(math.exp(mean), mean, count, n_windows, ctx, total, time.perf_counter() - t0, per_window)
