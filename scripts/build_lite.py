#!/usr/bin/env python3
"""Build the JupyterLite site (build/lite/) that runs docs/notebooks/ on the local Pyodide dist.

    python scripts/build_lite.py [--force]

jupyterlite-core 0.5.1 + jupyterlite-pyodide-kernel 0.5.2 (Pyodide 0.27), all
offline: the kernel loads Pyodide from ``/pyodide/pyodide.js`` (scripts/serve.py
serves the local dist there; docs/notebooks/lite/jupyter-lite.json sets it),
PyPI fallback is off, and the site's own wheel index holds the webinfer wheel
(so ``%pip install webinfer`` installs the local build) and ``comm`` (which the
kernel needs and Pyodide's lock lacks).  Rebuilt only when the notebooks, the
config or the wheel changed.  Serve with scripts/serve.py: /lite/notebooks/index.html?path=quickstart.ipynb
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import serve  # noqa: E402

NOTEBOOKS = ROOT / "docs" / "notebooks"
OUT = ROOT / "build" / "lite"
CACHE = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")


def _inputs() -> list[Path]:
    manifest = json.loads((ROOT / "scripts" / "browser_assets.json").read_text())
    wheels = [CACHE / "downloads" / w["file"] for w in manifest["lite"]["piplite_wheels"].values()]
    return [serve.build_wheel(), *wheels, *sorted(NOTEBOOKS.glob("*.ipynb")), NOTEBOOKS / "lite" / "jupyter-lite.json"]


def write_contents_index(site: Path) -> None:
    """api/contents/all.json: the file listing JupyterLite reads to find files/.

    jupyterlite-core writes it only with jupyter_server installed (a whole
    server for one JSON file), so it is written here in the same shape.
    """
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    entries = []
    for f in sorted((site / "files").iterdir()):
        mtime = datetime.fromtimestamp(f.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        entries.append({"content": None, "created": mtime, "format": None, "hash": None, "hash_algorithm": None,
                        "last_modified": mtime, "mimetype": None, "name": f.name, "path": f.name,
                        "size": f.stat().st_size, "type": "notebook" if f.suffix == ".ipynb" else "file",
                        "writable": True})
    index = {"content": entries, "created": now, "format": "json", "hash": None, "hash_algorithm": None,
             "last_modified": now, "mimetype": None, "name": "", "path": "", "size": None, "type": "directory",
             "writable": True}
    out = site / "api" / "contents" / "all.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(index, indent=2))


def build(force: bool = False) -> Path:
    inputs = _inputs()
    digest = hashlib.sha256()
    for p in inputs:
        digest.update(p.name.encode() + p.read_bytes())
    stamp = OUT / ".webinfer-stamp"
    if not force and stamp.exists() and stamp.read_text() == digest.hexdigest():
        return OUT
    jupyter = Path(sys.executable).with_name("jupyter")
    with tempfile.TemporaryDirectory(prefix="webinfer-lite-") as tmp:
        lite_dir = Path(tmp)  # the build writes its state next to the config: keep docs/ clean
        shutil.copy(NOTEBOOKS / "lite" / "jupyter-lite.json", lite_dir / "jupyter-lite.json")
        cmd = [str(jupyter), "lite", "build", "--lite-dir", str(lite_dir), "--output-dir", str(OUT)]
        for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
            cmd += ["--contents", str(nb)]
        for w in inputs:
            if w.suffix == ".whl":
                cmd += ["--piplite-wheels", str(w)]
        if OUT.exists():
            shutil.rmtree(OUT)
        subprocess.run(cmd, check=True, cwd=lite_dir, stdout=subprocess.DEVNULL)
    write_contents_index(OUT)
    stamp.write_text(digest.hexdigest())
    return OUT


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
