"""Shared helpers for the browser tests: the server module, a Chromium driver, page scripts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_serve():
    """scripts/serve.py as a module (scripts/ is not a package)."""
    if "webinfer_serve" not in sys.modules:
        spec = importlib.util.spec_from_file_location("webinfer_serve", ROOT / "scripts" / "serve.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["webinfer_serve"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["webinfer_serve"]
