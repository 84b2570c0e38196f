"""The public Engine API on the default model."""

from __future__ import annotations

import asyncio

import pytest

import webinfer
from webinfer.errors import ContextOverflowError, InvalidArgumentError
from webinfer.runtime.engine import Engine

pytestmark = pytest.mark.model

GREEDY = dict(temperature=0)


@pytest.fixture(scope="module")
def engine(default_model_path) -> Engine:
    return webinfer.load(str(default_model_path), n_ctx=512)


def test_greedy_completion_is_paris(engine):
    text = engine.complete("The capital of France is", max_tokens=8, **GREEDY)
    assert text.startswith(" Paris")
    s = engine.last_stats
    assert s.prompt_tokens == 5 and s.completion_tokens == 8
    assert s.decode_tokens_per_s > 0 and s.ttft_s > 0


def test_stream_pieces_join_to_complete(engine):
    pieces = list(engine.generate("The capital of France is", max_tokens=12, **GREEDY))
    assert len(pieces) > 1
    assert "".join(pieces) == engine.complete("The capital of France is", max_tokens=12, **GREEDY)


def test_stop_string_cuts_text(engine):
    full = engine.complete("The capital of France is", max_tokens=12, **GREEDY)
    cut = list(engine.stream("The capital of France is", max_tokens=12, stop=".", **GREEDY))
    assert "".join(c.text for c in cut) == full.split(".")[0]
    assert cut[-1].finish_reason == "stop"


def test_max_tokens_finishes_with_length(engine):
    chunks = list(engine.stream("The capital of France is", max_tokens=3, **GREEDY))
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].stats.completion_tokens == 3


def test_seeded_sampling_is_reproducible(engine):
    a = engine.complete("Once upon a time", max_tokens=16, temperature=1.0, seed=7)
    b = engine.complete("Once upon a time", max_tokens=16, temperature=1.0, seed=7)
    assert a == b


def test_async_twin_matches_sync(engine):
    async def collect():
        return [p async for p in engine.agenerate("The capital of France is", max_tokens=8, **GREEDY)]

    assert "".join(asyncio.run(collect())) == engine.complete("The capital of France is", max_tokens=8, **GREEDY)


def test_chat_completion_shapes(engine):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    r = engine.chat.completions.create(messages=msgs, max_tokens=24, temperature=0)
    assert r["object"] == "chat.completion"
    content = r["choices"][0]["message"]["content"]
    assert "Paris" in content
    assert r["usage"]["prompt_tokens"] > 0
    chunks = list(engine.chat.completions.create(messages=msgs, max_tokens=24, temperature=0, stream=True))
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == content
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_chat_reuses_the_cached_conversation(engine):
    msgs = [{"role": "user", "content": "Name a color."}]
    r = engine.chat.completions.create(messages=msgs, max_tokens=8, temperature=0)
    msgs += [r["choices"][0]["message"], {"role": "user", "content": "Another one."}]
    engine.chat.completions.create(messages=msgs, max_tokens=4, temperature=0)
    assert engine.last_stats.reused_tokens > 5


def test_errors(engine):
    with pytest.raises(ContextOverflowError):
        engine.complete("word " * 600, max_tokens=1)
    with pytest.raises(InvalidArgumentError):
        engine.chat.completions.create(messages=[{"role": "user"}])
    with pytest.raises(InvalidArgumentError):
        engine.chat.completions.create(messages=[{"role": "user", "content": "x"}], frequency_penalty=1)
    with pytest.raises(InvalidArgumentError):
        engine.complete("", max_tokens=1)
