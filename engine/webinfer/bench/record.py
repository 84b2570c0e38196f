"""The run record: what one measured configuration produces, and where it came from.

A record is a plain JSON object (one line of bench/results/runs.jsonl, one row
of the ``runs`` table with its ``metrics``)::

    id, suite_id, time                 uuid hex; the invocation it belongs to; ISO 8601 UTC
    commit {sha, short, dirty, time, subject}
    engine, engine_version             "webinfer" | "wllama" | "llama.cpp"
    target                             the configuration's name (targets.py), e.g. "chromium-numpy"
    runtime, browser, backend          "cpython" | "chromium"; "Chromium 156.0..." or null; "numpy", ...
    model, model_title, model_file, model_sha256, quant, profile, threads
                                       (model: the file's stem; model_title: general.name, shared by
                                       the quantizations of one model)
    status, error                      "ok" | "failed" | "skipped"; why, when not ok
    protocol {...}                     prompts, token counts, runs, n_ctx
    metrics {name: {median, min, max, n, values, unit}}
    capability {...}, versions {...}, machine {..., id}
    extra {...}                        raw numbers worth keeping (per-run timings, text)

Metric names, units and which way is better live in :data:`METRICS`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

RECORD_SCHEMA = 1

# name -> (unit, higher_is_better, label)
METRICS: dict[str, tuple[str, bool, str]] = {
    "decode_tps": ("tok/s", True, "decode"),
    "prefill_tps": ("tok/s", True, "prefill"),
    "ttft_s": ("s", False, "time to first token"),
    "load_s": ("s", False, "load (network / first)"),
    "load_cached_s": ("s", False, "load (cached)"),
    "boot_s": ("s", False, "runtime boot"),
    "peak_rss_mb": ("MB", False, "peak RSS"),
    "wasm_heap_mb": ("MB", False, "WASM heap"),
    "js_heap_mb": ("MB", False, "JS heap (page)"),
    "gpu_buffer_mb": ("MB", False, "GPU buffers"),
}
# The memory a configuration needs, in order of preference, for budgets and recommendations.
MEMORY_METRICS = ("gpu_buffer_mb", "wasm_heap_mb", "peak_rss_mb")
STATUSES = ("ok", "failed", "skipped")

DECODE_PROMPT = "The capital of France is"


def repo_root() -> Path | None:
    """The git checkout this package runs from (editable install), or None for an installed wheel."""
    here = Path(__file__).resolve()
    for p in here.parents:
        if (p / "pyproject.toml").exists() and (p / "bench").is_dir():
            return p
    return None


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_id() -> str:
    return uuid.uuid4().hex


# ------------------------------------------------------------------ numbers

def summary(values: Iterable[float], unit: str | None = None) -> dict:
    """``{median, min, max, n, values}`` of a list of samples (rounded to 4 significant digits)."""
    xs = [float(x) for x in values if x is not None]
    if not xs:
        raise ValueError("summary of no samples")
    r = lambda x: float(f"{x:.4g}")  # noqa: E731
    out = {"median": r(statistics.median(xs)), "min": r(min(xs)), "max": r(max(xs)), "n": len(xs),
           "values": [r(x) for x in xs]}
    if unit:
        out["unit"] = unit
    return out


def metric(name: str, values: Iterable[float]) -> dict:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return summary(values, METRICS[name][0])


# ------------------------------------------------------------------ provenance

def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def commit_info(root: Path | None = None) -> dict:
    """The checkout's commit: full and short sha, whether tracked files differ from it, time, subject."""
    root = root or repo_root()
    if root is None:
        return {"sha": None, "short": "unknown", "dirty": False, "time": None, "subject": None}
    sha = _git(root, "rev-parse", "HEAD")
    if not sha:
        return {"sha": None, "short": "unknown", "dirty": False, "time": None, "subject": None}
    # Only changes under the engine (what is measured) make a run "dirty"; other
    # engineers' docs or tests being edited in a shared tree do not.
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", "engine", "wgsl", "wasm_fallback",
                  "web/webinfer.mjs", "web/worker.js") or ""
    return {"sha": sha, "short": sha[:8], "dirty": bool(status.strip()),
            "time": _git(root, "show", "-s", "--format=%cI", "HEAD"),
            "subject": _git(root, "show", "-s", "--format=%s", "HEAD")}


def machine_info() -> dict:
    """CPU, cores, memory, OS; ``id`` is :func:`machine_id`."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpus": os.cpu_count(), "cpu": platform.processor() or None}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and "cpu_flags" not in info:
                    flags = set(line.split(":", 1)[1].split())
                    info["cpu_flags"] = sorted(flags & {"avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni",
                                                        "avx512_bf16", "amx_tile", "sse4_2"})
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_mb"] = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    info["id"] = machine_id(info)
    return info


def machine_id(machine: dict) -> str:
    """A short hash of the CPU model and core count: runs with the same id are comparable."""
    key = json.dumps([machine.get("cpu"), machine.get("cpus")])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def python_versions() -> dict:
    import numpy as np

    from .. import __version__

    return {"webinfer": __version__, "python": platform.python_version(), "numpy": np.__version__}


# ------------------------------------------------------------------ records

def new_record(*, suite_id: str, target: str, engine: str, runtime: str, backend: str, model: dict,
               protocol: dict, commit: dict, machine: dict, browser: str | None = None,
               profile: str | None = None, threads: int | None = None, engine_version: str | None = None) -> dict:
    """A record with provenance filled in and no results yet (status "failed" until a runner says ok)."""
    return {
        "schema": RECORD_SCHEMA, "id": new_id(), "suite_id": suite_id, "time": now_iso(),
        "commit": commit, "engine": engine, "engine_version": engine_version, "target": target,
        "runtime": runtime, "browser": browser, "backend": backend,
        "model": model.get("name"), "model_title": model.get("title"), "model_file": model.get("file"),
        "model_sha256": model.get("sha256"),
        "quant": model.get("quant"), "profile": profile, "threads": threads,
        "status": "failed", "error": None, "protocol": protocol, "metrics": {},
        "capability": {}, "versions": {}, "machine": machine, "extra": {},
    }


def model_description(path: Path) -> dict:
    """name, file, size, sha256 and quant type (the type holding most weight bytes) of a GGUF file."""
    from ..formats.gguf import GGUFFile

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    by_type: dict[str, int] = {}
    with GGUFFile.open(path) as g:
        for t in g:
            if len(t.shape) >= 2:
                by_type[t.type_name] = by_type.get(t.type_name, 0) + t.nbytes
        name = g.get("general.name")
    quant = max(by_type, key=by_type.get) if by_type else None
    stem = path.name[:-5] if path.name.endswith(".gguf") else path.name
    return {"name": stem, "title": name, "file": path.name, "path": str(path), "size": path.stat().st_size,
            "sha256": h.hexdigest(), "quant": quant}
