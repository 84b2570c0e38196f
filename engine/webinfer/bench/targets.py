"""Targets (engine + backend + where it runs) and suites, from data/bench.json, and whether each can run here."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import InvalidArgumentError
from ..models import cache_dir

LLAMA_CPP_PYTHON_ENV = "WEBINFER_LLAMA_CPP_PYTHON"  # a Python interpreter that has llama_cpp installed
WLLAMA_DIR = "npm/wllama-3.13.0"                      # under the asset cache (scripts/assets.json)


def config() -> dict:
    return json.loads(resources.files("webinfer").joinpath("data/bench.json").read_text())


@dataclass
class Target:
    name: str
    engine: str
    runtime: str
    backend: str
    threads: int = 1
    isolate: bool = False
    description: str = ""
    protocol: dict = field(default_factory=dict)

    @property
    def in_browser(self) -> bool:
        return self.runtime == "chromium"


def targets() -> dict[str, Target]:
    return {name: Target(name=name, **spec) for name, spec in config()["targets"].items()}


def suite(name: str) -> tuple[list[Target], dict]:
    """The targets and the protocol (defaults <- suite) of a named suite."""
    cfg = config()
    if name not in cfg["suites"]:
        raise InvalidArgumentError(f"unknown suite {name!r}; known: {', '.join(cfg['suites'])}")
    s = cfg["suites"][name]
    all_targets = targets()
    return [all_targets[t] for t in s["targets"]], {**cfg["protocol"], **s.get("protocol", {})}


def pick(names: list[str]) -> list[Target]:
    all_targets = targets()
    unknown = [n for n in names if n not in all_targets]
    if unknown:
        raise InvalidArgumentError(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(all_targets)}")
    return [all_targets[n] for n in names]


def baseline_name() -> str:
    return config()["baseline"]


# ------------------------------------------------------------------ availability

def llama_cpp_python() -> str | None:
    """An interpreter with llama_cpp: $WEBINFER_LLAMA_CPP_PYTHON, else this one if it has it, else None."""
    env = os.environ.get(LLAMA_CPP_PYTHON_ENV)
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    import sys

    return sys.executable if importlib.util.find_spec("llama_cpp") is not None else None


def browser_missing() -> str | None:
    """Why headless Chromium cannot run here, or None."""
    from .browser import chromium_paths

    chromium, driver = chromium_paths()
    if not Path(chromium).exists() and not shutil.which(chromium):
        return f"Chromium is not installed ({chromium}); run scripts/setup.sh"
    if not Path(driver).exists() and not shutil.which(driver):
        return f"chromedriver is not installed ({driver}); run scripts/setup.sh"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed in this Python (pip install selenium)"
    return None


def unavailable(t: Target) -> str | None:
    """Why target ``t`` cannot run on this machine now (it is then stored as "skipped"), or None.

    Browser backends the runtime does not offer yet are found out at run time, from what the
    worker reports it loaded."""
    if t.name == "llama-cpp" or t.engine == "llama.cpp":
        if llama_cpp_python() is None:
            return (f"llama-cpp-python is not installed (pip install llama-cpp-python, or point "
                    f"${LLAMA_CPP_PYTHON_ENV} at a Python that has it)")
        return None
    if t.runtime == "cpython" and t.engine == "webinfer":
        from ..runtime.engine import BACKENDS

        if t.backend not in BACKENDS:
            return f"webinfer has no {t.backend!r} backend in CPython yet (available: {', '.join(BACKENDS)})"
        return None
    if t.in_browser:
        why = browser_missing()
        if why:
            return why
        if t.engine == "wllama" and not (cache_dir() / WLLAMA_DIR / "esm" / "index.js").exists():
            return f"wllama is not in the asset cache ({cache_dir() / WLLAMA_DIR}); run scripts/setup.sh"
        if t.engine == "webinfer" and not (cache_dir() / "pyodide" / "0.27.7" / "pyodide.js").exists():
            return "the Pyodide dist is not in the asset cache; run scripts/setup.sh"
        return None
    return None
