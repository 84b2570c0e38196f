"""Fixtures for the tokenizer tests: vocabularies from the asset cache.

The GGUF vocabularies and their .inp/.out vectors come from llama.cpp
(``models/ggml-vocab-*``, fetched by scripts/setup.sh into
$WEBINFER_CACHE/testdata/vocab).  Tests that need them skip when missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")
VOCAB_DIR = CACHE / "testdata" / "vocab"
TEXT_DIR = CACHE / "testdata" / "text"
DEFAULT_MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference" / "smollm2_135m_q4_1.npz"

_cache: dict = {}


def vocab_path(name: str) -> Path:
    return VOCAB_DIR / f"ggml-vocab-{name}.gguf"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing: run scripts/setup.sh (or set WEBINFER_CACHE)")
    return path


def load_metadata(path: Path) -> dict:
    from webinfer.formats.gguf import GGUFFile

    g = GGUFFile.open(require(path))
    try:
        return dict(g.metadata)
    finally:
        close = getattr(g, "close", None)
        if close:
            close()


def load_tokenizer(path: Path):
    """Tokenizer for a GGUF, built once per test session."""
    from webinfer.tokenizer import Tokenizer

    key = str(path)
    if key not in _cache:
        _cache[key] = Tokenizer.from_gguf_metadata(load_metadata(path))
    return _cache[key]


def vocab_tokenizer(name: str):
    return load_tokenizer(vocab_path(name))


@pytest.fixture(scope="session")
def smollm():
    return load_tokenizer(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def llama_bpe():
    return vocab_tokenizer("llama-bpe")


@pytest.fixture(scope="session")
def llama_spm():
    return vocab_tokenizer("llama-spm")
