"""The numpy forward pass against transformers on the same GGUF (the independent oracle).

tests/data/reference/*.npz was produced by scripts/reference_logits.py
(transformers + CPU torch, float32); CI compares against the stored arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.runtime.session import Session

from ..conftest import REFERENCE_DIR

pytestmark = pytest.mark.model

# float32 in both engines, different summation orders: observed max |diff| is
# about 1e-4 on logits of magnitude ~30.
LOGIT_ATOL = 2e-3
N_PROMPTS = 3


@pytest.fixture(scope="module")
def ref():
    return np.load(REFERENCE_DIR / "smollm2_135m_q4_1.npz")


@pytest.mark.parametrize("i", range(N_PROMPTS))
def test_logits_match_transformers(default_model, ref, i):
    ids = ref[f"prompt{i}_ids"].tolist()
    want = ref[f"prompt{i}_logits"]
    s = Session(default_model, 256)
    got = s.evaluate(ids, n_logits=len(ids))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=LOGIT_ATOL, rtol=0)
    assert (got.argmax(-1) == want.argmax(-1)).all()


@pytest.mark.parametrize("i", range(N_PROMPTS))
def test_greedy_32_tokens_match_transformers(default_model, ref, i):
    ids = ref[f"prompt{i}_ids"].tolist()
    want = ref[f"prompt{i}_greedy"].tolist()
    s = Session(default_model, 256)
    logits = s.evaluate(ids)[-1]
    got = []
    for _ in range(32):
        got.append(int(np.argmax(logits)))
        logits = s.evaluate([got[-1]])[-1]
    assert got == want


def test_chunked_prefill_equals_one_shot(default_model, ref):
    ids = ref["prompt1_ids"].tolist()
    one = Session(default_model, 64).evaluate(ids, n_logits=len(ids))
    chunked = Session(default_model, 64, n_batch=5).evaluate(ids, n_logits=len(ids))
    np.testing.assert_allclose(chunked, one, atol=1e-4, rtol=0)


def test_decode_steps_equal_prefill(default_model, ref):
    """Token-by-token decode over the KV cache gives the prefill's logits."""
    ids = ref["prompt0_ids"].tolist()
    s = Session(default_model, 64)
    steps = np.concatenate([s.evaluate([t]) for t in ids])
    np.testing.assert_allclose(steps, ref["prompt0_logits"], atol=LOGIT_ATOL, rtol=0)


def test_prefill_reuses_common_prefix(default_model, ref):
    ids = ref["prompt2_ids"].tolist()
    s = Session(default_model, 64)
    s.prefill(ids[:10])
    last = s.prefill(ids)
    assert s.reused == 10
    np.testing.assert_allclose(last, ref["prompt2_logits"][-1], atol=LOGIT_ATOL, rtol=0)
