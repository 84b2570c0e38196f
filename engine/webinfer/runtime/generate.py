"""Streaming generation: tokens in, text pieces out, with stop handling and stats."""

from __future__ import annotations

import codecs
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from .sampler import Sampler, SamplingParams
from .session import Session


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reused_tokens: int = 0          # prompt tokens already in the cache
    ttft_s: float = 0.0             # prompt in to first token out
    prefill_s: float = 0.0
    decode_s: float = 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        n = self.prompt_tokens - self.reused_tokens
        return n / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        # the first token comes from the prefill; the rest from decode steps
        n = self.completion_tokens - 1
        return n / self.decode_s if self.decode_s > 0 and n > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reused_tokens": self.reused_tokens,
            "ttft_s": round(self.ttft_s, 4),
            "prefill_tokens_per_s": round(self.prefill_tokens_per_s, 2),
            "decode_tokens_per_s": round(self.decode_tokens_per_s, 2),
        }


@dataclass
class GenerationChunk:
    """One streamed piece: ``text`` may be empty (a token that completes no character yet).

    The last chunk has ``finish_reason`` set: ``"stop"`` (end-of-generation
    token or stop string), ``"length"`` (max_tokens or the context is full),
    or ``"abort"``.
    """

    text: str
    token_id: int | None = None
    finish_reason: str | None = None
    stats: GenerationStats | None = field(default=None, repr=False)


class _StopMatcher:
    """Holds back text that might be the start of a stop string."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Add text; return (text safe to emit, stopped)."""
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out = self.pending[: min(hits)]
            self.pending = ""
            return out, True
        hold = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(out):]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def generate(
    session: Session,
    tokenizer,
    prompt_ids: Sequence[int],
    *,
    max_tokens: int = 256,
    sampling: SamplingParams = SamplingParams(),
    stop: Iterable[str] = (),
    stop_ids: Iterable[int] | None = None,
    ignore_eos: bool = False,
) -> Iterator[GenerationChunk]:
    """Stream a completion of ``prompt_ids``.

    The prompt must fit in the context (else ContextOverflowError, raised on
    the first ``next()``); generation stops at an end-of-generation token, a
    stop string, ``max_tokens``, or a full context.
    """
    stats = GenerationStats(prompt_tokens=len(prompt_ids))
    eog = set(tokenizer.eog_ids if stop_ids is None else stop_ids)
    sampler = Sampler(sampling)
    matcher = _StopMatcher(list(stop))
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    history = list(prompt_ids)

    t0 = time.perf_counter()
    logits = session.prefill(prompt_ids)
    stats.reused_tokens = session.reused
    stats.prefill_s = time.perf_counter() - t0

    finish = "length"
    for i in range(max_tokens):
        t = time.perf_counter()
        tok = sampler(logits, history)   # on a GPU backend the step's work runs here (lazy logits)
        if i == 0:
            stats.ttft_s = time.perf_counter() - t0
        else:
            stats.decode_s += time.perf_counter() - t
        stats.completion_tokens += 1
        history.append(tok)
        if tok in eog and not ignore_eos:
            finish = "stop"
            break
        text, stopped = matcher.push(utf8.decode(tokenizer.token_bytes(tok)))
        if stopped:
            if text:
                yield GenerationChunk(text, tok)
            finish = "stop"
            break
        yield GenerationChunk(text, tok)
        if i + 1 == max_tokens or session.n_free == 0:
            break
        t = time.perf_counter()
        logits = session.evaluate([tok])[-1]
        stats.decode_s += time.perf_counter() - t
    tail = "" if finish == "stop" else matcher.push(utf8.decode(b"", final=True))[0] + matcher.flush()
    yield GenerationChunk(tail, None, finish, stats)
