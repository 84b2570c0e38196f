"""A session owns one KV cache and knows which tokens it holds.

Context policy: the cache holds ``n_ctx`` positions.  A prompt that does not
fit raises :class:`ContextOverflowError` before any work is done; generation
that reaches the end of the context stops with ``finish_reason="length"``.
There is no silent sliding window: dropping the start of a conversation is the
caller's decision.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ContextOverflowError, InvalidArgumentError

DEFAULT_N_BATCH = 256  # prefill chunk: bounds the [heads, T, n] attention scores in memory


class Session:
    def __init__(self, model, n_ctx: int, *, n_batch: int = DEFAULT_N_BATCH, kv_dtype: str | None = None):
        if n_ctx < 2:
            raise InvalidArgumentError(f"n_ctx must be at least 2, got {n_ctx}")
        if n_ctx > model.args.context_length:
            raise InvalidArgumentError(
                f"n_ctx {n_ctx} exceeds the model's trained context {model.args.context_length}"
            )
        self.model = model
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        # kv_dtype: "f32" (default), "f16", "int8", "int4" on the numpy backend (backends/numpy_backend.py)
        if kv_dtype is None:
            self.cache, self.rope = model.new_cache(n_ctx)
        else:
            try:
                self.cache, self.rope = model.new_cache(n_ctx, kv_dtype=kv_dtype)
            except TypeError:
                raise InvalidArgumentError(
                    f"the {model.backend.name} backend has no kv_dtype option; leave it unset") from None
        self.tokens: list[int] = []   # what the cache holds, position by position
        self.reused = 0               # prompt tokens the last prefill found already cached

    @property
    def n_past(self) -> int:
        return len(self.tokens)

    @property
    def n_free(self) -> int:
        return self.n_ctx - len(self.tokens)

    def reset(self) -> None:
        self.tokens = []

    def evaluate(self, ids: Sequence[int], *, n_logits: int = 1) -> np.ndarray:
        """Append ``ids`` to the cache and return logits [n_logits, vocab] of the last tokens."""
        ids = list(ids)
        if not ids:
            raise InvalidArgumentError("nothing to evaluate: the token list is empty")
        if len(self.tokens) + len(ids) > self.n_ctx:
            raise ContextOverflowError(len(self.tokens) + len(ids), self.n_ctx)
        vocab = self.model.args.vocab_size
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise InvalidArgumentError(f"token ids out of range 0..{vocab - 1}: {bad[:5]}")
        outs = []
        for start in range(0, len(ids), self.n_batch):
            chunk = ids[start : start + self.n_batch]
            left = len(ids) - start - len(chunk)           # tokens after this chunk
            want = max(0, min(len(chunk), n_logits - left))
            logits = self.model.forward(chunk, len(self.tokens), self.cache, self.rope, n_logits=max(want, 1))
            self.tokens.extend(chunk)
            if want:
                outs.append(logits[-want:])
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        """Make the cache hold exactly ``ids``, reusing the longest common prefix; last logits."""
        ids = list(ids)
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(len(ids), self.n_ctx)
        common = 0
        for a, b in zip(self.tokens, ids):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # re-run at least one token to get its logits
        del self.tokens[common:]
        self.reused = common
        return self.evaluate(ids[common:])[-1]
