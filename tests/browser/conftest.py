"""Fixtures for the browser tests: one local server and one headless Chromium per test run.

The end-to-end tests share a single browser (a fresh profile, so the model
cache starts empty) and mostly a single loaded engine: booting Pyodide and
loading the model costs ~15 s on this 2-core machine, so tests are ordered to
reuse them.  Pages under /t/ are written by the tests into a temp folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ..conftest import REFERENCE_DIR
from .helpers import CACHE, DEFAULT_MODEL, ROOT, load_chromium, load_serve


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives headless Chromium (scripts/setup.sh installs it)")


# pytest-pyodide's Chromium: headless flags that work on a closed network (see scripts/chromium.py).
try:
    from pytest_pyodide import get_global_config

    get_global_config().set_flags("chrome", ["--js-flags=--expose-gc", "--headless=new",
                                             *load_chromium().FLAGS[1:]])
except ImportError:  # pragma: no cover - pytest-pyodide comes with scripts/requirements-dev.txt
    pass


@pytest.fixture(scope="session")
def pages(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pages")


@pytest.fixture(scope="session")
def web_server(pages):
    """scripts/serve.py's server on a free port, with the freshly built wheel and /t/ -> pages."""
    serve = load_serve()
    if not (serve.default_mounts()["/pyodide/"] / "pyodide.js").exists() or not DEFAULT_MODEL.exists():
        pytest.skip("the Pyodide dist or the default model is missing: run scripts/setup.sh")
    serve.build_wheel()
    mounts = serve.default_mounts() | {"/t/": pages, "/reference/": REFERENCE_DIR, "/vocab/": CACHE / "testdata" / "vocab"}
    srv = serve.start(mounts)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="session")
def chrome():
    if not shutil.which(load_chromium().CHROMIUM) and not Path(load_chromium().CHROMIUM).exists():
        pytest.skip("Chromium is missing: run scripts/setup.sh")
    b = load_chromium().Browser()
    yield b
    b.quit()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    d = ROOT / "test-artifacts"
    d.mkdir(exist_ok=True)
    return d
