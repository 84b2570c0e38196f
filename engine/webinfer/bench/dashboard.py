"""The dashboard page (web/dashboard/): its vendored chart library, its data, and serving it.

- :func:`vendor` copies uPlot (npm ``uplot``, fetched and sha256-checked by
  scripts/setup.sh into the asset cache) into web/dashboard/vendor/, checking
  each file's sha256 against scripts/assets.json again. No CDN, ever.
- :func:`export` writes the JSON the page reads: every record, the metric
  table, the regression judgments and the ratios to the baseline target.
- :func:`serve` does both and serves web/ (so the page is /dashboard/) with
  scripts/serve.py, plus the harness mounts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ..models import cache_dir
from . import analysis
from .record import METRICS, now_iso, repo_root
from .targets import baseline_name, config

UPLOT_DIR = "npm/uplot-1.6.32"
VENDORED = ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE")


def dashboard_dir() -> Path:
    root = repo_root()
    if root is None:
        raise RuntimeError("the dashboard lives in a webinfer checkout (web/dashboard/)")
    return root / "web" / "dashboard"


def _pinned_sha256() -> dict[str, str]:
    """file name -> sha256 of the uPlot files, from scripts/assets.json."""
    manifest = json.loads((repo_root() / "scripts" / "assets.json").read_text())
    return {Path(e["to"]).name: e["sha256"] for e in manifest["extract"]
            if e["to"].startswith(UPLOT_DIR + "/") and "sha256" in e}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor(dest: Path | None = None) -> Path:
    """Copy the pinned uPlot files into web/dashboard/vendor/ (idempotent); return that folder."""
    dest = dest or dashboard_dir() / "vendor"
    src = cache_dir() / UPLOT_DIR
    pinned = _pinned_sha256()
    dest.mkdir(parents=True, exist_ok=True)
    for name in VENDORED:
        want = pinned.get(name)
        out = dest / name
        if out.exists() and want and _sha256(out) == want:
            continue
        if not (src / name).exists():
            raise FileNotFoundError(f"{src / name} is missing: run scripts/setup.sh (it fetches uPlot from npm)")
        if want and _sha256(src / name) != want:
            raise RuntimeError(f"{src / name} does not match its pinned sha256 in scripts/assets.json")
        shutil.copyfile(src / name, out)
    return dest


def export_data(records: list[dict]) -> dict:
    base = baseline_name()
    return {
        "generated": now_iso(),
        "baseline": base,
        "metrics": {k: {"unit": u, "higher_is_better": hb, "label": lbl} for k, (u, hb, lbl) in METRICS.items()},
        "targets": {k: v.get("description", "") for k, v in config()["targets"].items()},
        "records": records,
        "regressions": analysis.regressions(records),
        "ratios": analysis.baseline_ratios(records, base),
        "noise": {"window": analysis.HISTORY_WINDOW, "factor": analysis.NOISE_FACTOR,
                  "min_relative": analysis.MIN_RELATIVE_NOISE, "min_history": analysis.MIN_HISTORY_TO_FLAG},
    }


def export(records: list[dict], path: Path | None = None) -> Path:
    """Write the page's data file (default web/dashboard/data/results.json); return its path."""
    path = path or dashboard_dir() / "data" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(export_data(records), sort_keys=True))
    tmp.replace(path)
    return path


def start_server(*, build_wheel: bool = False, port: int = 0, mounts: dict[str, Path] | None = None):
    """scripts/serve.py's server (in a thread) with web/ at / (the dashboard at /dashboard/), the
    harness mounts and ``mounts``; ``server.shutdown()`` stops it."""
    from .browser import PageServer

    ps = PageServer(build_wheel=build_wheel)
    return ps.serve.start(ps.mounts | (mounts or {}), port=port)


def serve(records: list[dict], *, port: int = 8000) -> None:
    """Vendor, export and serve until interrupted."""
    vendor()
    export(records)
    srv = start_server(port=port)
    print(f"[bench] dashboard: {srv.url.rstrip('/')}/dashboard/  (Ctrl-C stops)", flush=True)
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.shutdown()
        srv.server_close()
