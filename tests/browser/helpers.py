"""Shared helpers for the browser tests: the server and Chromium modules from scripts/, page snippets."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")
DEFAULT_MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_URL = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def _load(name: str, file: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / file)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def load_serve():
    """scripts/serve.py as a module (scripts/ is not a package)."""
    return _load("webinfer_serve", "serve.py")


def load_chromium():
    return _load("webinfer_chromium", "chromium.py")


# A blank page with the script-tag API; tests drive it with Browser.run().
API_PAGE = """<!doctype html><meta charset="utf-8"><title>webinfer api test</title>
<script src="/webinfer.js"></script><body><pre id="out"></pre></body>"""
