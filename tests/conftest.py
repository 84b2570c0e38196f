"""Shared fixtures: paths to the pinned assets scripts/setup.sh fetches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")
DEFAULT_MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
VOCAB_DIR = CACHE / "testdata" / "vocab"
TEXT_DIR = CACHE / "testdata" / "text"
REFERENCE_DIR = Path(__file__).parent / "data" / "reference"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing: run scripts/setup.sh")
    return path


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    return need(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def default_gguf(default_model_path):
    from webinfer.formats.gguf import GGUFFile

    g = GGUFFile.open(default_model_path)
    yield g
    g.close()


@pytest.fixture(scope="session")
def default_model(default_gguf):
    """The default model on the numpy backend, loaded once per test run (about 1 s)."""
    from webinfer.backends.numpy_backend import NumpyBackend
    from webinfer.model import load_model

    return load_model(default_gguf, NumpyBackend())


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """pytest-pyodide (tests/browser/test_in_pyodide.py) runs in Chromium and Node on the test dist
    scripts/setup.sh builds, unless --runtime / --dist-dir are given."""
    if not hasattr(config.option, "dist_dir"):
        return
    given = " ".join(config.invocation_params.args)
    if "--rt" not in given and "--runtime" not in given:
        config.option.runtime = "chrome,node"
    if "--dist-dir" not in given:
        config.option.dist_dir = CACHE / "pyodide" / "0.27.7-test"


# Property tests: reproducible in CI, random locally.
try:
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
    settings.register_profile("dev", deadline=None)
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
except ImportError:  # pragma: no cover
    pass
