"""Sampler behaviour against numpy computations of the same distributions."""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.errors import InvalidArgumentError
from webinfer.runtime.sampler import Sampler, SamplingParams

rng = np.random.default_rng(1)
LOGITS = rng.standard_normal(50).astype(np.float32) * 2


def draws(params: SamplingParams, logits=LOGITS, n=4000) -> np.ndarray:
    s = Sampler(params)
    return np.array([s(logits) for _ in range(n)])


def test_greedy_is_argmax():
    assert Sampler(SamplingParams(temperature=0))(LOGITS) == int(np.argmax(LOGITS))


def test_seed_reproducible_and_seeds_differ():
    p = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=42)
    a, b = draws(p, n=200), draws(p, n=200)
    assert (a == b).all()
    c = draws(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=43), n=200)
    assert (a != c).any()


def test_plain_temperature_matches_softmax():
    t = 0.8
    p = SamplingParams(temperature=t, top_k=0, top_p=1.0, min_p=0.0, seed=0)
    got = np.bincount(draws(p, n=20000), minlength=50) / 20000
    want = np.exp(LOGITS / t - (LOGITS / t).max())
    want /= want.sum()
    # 20000 draws: standard error <= 0.0036 per bin
    assert np.abs(got - want).max() < 0.015


def test_top_k_restricts_support():
    got = set(draws(SamplingParams(temperature=5.0, top_k=3, top_p=1.0, min_p=0.0, seed=0), n=2000).tolist())
    assert got == set(np.argsort(-LOGITS)[:3].tolist())


def test_top_p_keeps_smallest_nucleus():
    p = np.exp(LOGITS - LOGITS.max())
    p /= p.sum()
    order = np.argsort(-p)
    nucleus = order[: int(np.searchsorted(np.cumsum(p[order]), 0.5) + 1)]
    got = set(draws(SamplingParams(temperature=1.0, top_k=0, top_p=0.5, min_p=0.0, seed=0), n=3000).tolist())
    assert got == set(nucleus.tolist())


def test_min_p_drops_unlikely_tokens():
    p = np.exp(LOGITS - LOGITS.max())
    keep = set(np.flatnonzero(p >= 0.3).tolist())
    got = set(draws(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.3, seed=0), n=3000).tolist())
    assert got == keep


def test_repetition_penalty_follows_llama_cpp():
    logits = np.array([2.0, -2.0, 1.0], dtype=np.float32)
    s = Sampler(SamplingParams(temperature=0, repetition_penalty=4.0))
    # token 0: 2/4 = 0.5 < 1.0 -> token 2 wins; the negative logit is multiplied, not divided
    assert s(logits, history=[0, 1]) == 2
    assert s(logits, history=[]) == 0


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0.0), dict(top_p=1.5), dict(min_p=1.0),
                                 dict(top_k=-1), dict(repetition_penalty=0.0), dict(temperature=float("nan"))])
def test_invalid_params_raise(bad):
    with pytest.raises(InvalidArgumentError):
        SamplingParams(**bad)
