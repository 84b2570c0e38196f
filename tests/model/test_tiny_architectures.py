"""Graph features the default model does not exercise, against transformers.

Tiny seeded models (tests/model/tiny_models.py): llama with a separate output
head and linear RoPE scaling; qwen2 with QKV biases, NeoX RoPE and a single
KV head.  Reference logits: scripts/reference_tiny.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.backends.numpy_backend import NumpyBackend
from webinfer.formats.gguf import GGUFFile
from webinfer.model import load_model
from webinfer.runtime.session import Session

from ..conftest import REFERENCE_DIR
from .tiny_models import SPECS, TINY_PROMPT, write_tiny_model


@pytest.mark.parametrize("name", sorted(SPECS))
def test_tiny_model_logits_match_transformers(name, tmp_path):
    ref = np.load(REFERENCE_DIR / f"{name}.npz")
    assert ref["ids"].tolist() == TINY_PROMPT
    with GGUFFile.open(write_tiny_model(name, tmp_path / f"{name}.gguf")) as g:
        model = load_model(g, NumpyBackend())
    assert model.args.arch == SPECS[name][0]
    got = Session(model, 64).evaluate(TINY_PROMPT, n_logits=len(TINY_PROMPT))
    np.testing.assert_allclose(got, ref["logits"], atol=1e-4, rtol=1e-4)


def test_unsupported_architecture_names_the_supported(tmp_path):
    from webinfer.errors import UnsupportedModelError
    from webinfer.formats.gguf_writer import GGUFWriter

    path = tmp_path / "mamba.gguf"
    w = GGUFWriter(path)
    w.add_metadata("general.architecture", "mamba")
    w.write()
    with GGUFFile.open(path) as g, pytest.raises(UnsupportedModelError, match="llama, qwen2"):
        load_model(g, NumpyBackend())
