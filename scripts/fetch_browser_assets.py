#!/usr/bin/env python3
"""Assets of the browser tests: a Pyodide dist for pytest-pyodide, beside the pristine one.

    python scripts/fetch_browser_assets.py [--cache DIR]

Run by scripts/setup.sh after scripts/fetch_assets.py (which fills the
pristine dist).

JupyterLite's Pyodide kernel needs more of Pyodide's own packages (ssl,
sqlite3, ipython and their dependencies): the official 0.27.7 builds are
copied into the pristine dist from the same archive, each checked against the
lock's sha256 (release files: the dist stays pristine).  ``comm``, which the
kernel installs with piplite, is downloaded for the site's wheel index.
  ``@run_in_pyodide`` loads pytest, pluggy, iniconfig and tblib
inside Pyodide; Pyodide's builds of those are not on PyPI, so the PyPI wheels
at the same versions (sha256-pinned in browser_assets.json) go into a
separate folder, ``pyodide/0.27.7-test/``: every file of the pristine dist
linked in, these wheels copied, and a ``pyodide-lock.json`` rewritten for
exactly those entries (file name, sha256, dependencies).  The pristine dist
is never modified.  Idempotent: nothing is fetched or written twice.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fetch_assets import _members, _write_atomic, fetch_archive, log, sha256_of  # noqa: E402


def fetch_wheel(spec: dict, downloads: Path, name: str) -> Path:
    dest = downloads / spec["file"]
    if dest.exists() and sha256_of(dest) == spec["sha256"]:
        return dest
    import subprocess

    log(f"downloading {spec['file']}")
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary", ":all:",
                        "-d", tmp, f"{name}=={spec['version']}"], check=True, stdout=subprocess.DEVNULL)
        got = Path(tmp) / spec["file"]
        if not got.exists() or sha256_of(got) != spec["sha256"]:
            raise SystemExit(f"[setup] {spec['file']}: missing or sha256 mismatch")
        os.replace(got, dest)
    return dest


def build_test_dist(cache: Path, manifest: dict) -> Path:
    pristine = cache / json.loads((HERE / "assets.json").read_text())["pyodide"]["dist"]
    dist = cache / manifest["test_dist"]
    dist.mkdir(parents=True, exist_ok=True)
    downloads = cache / "downloads"
    for f in pristine.iterdir():
        if f.name == "pyodide-lock.json" or not f.is_file():
            continue
        link = dist / f.name
        if f.suffix in (".js", ".mjs"):
            # Copied, not linked: Node resolves a module's symlink, and Pyodide would then take
            # the pristine folder (and its lock) as its indexURL.
            if link.is_symlink() or not link.exists() or link.read_bytes() != f.read_bytes():
                link.unlink(missing_ok=True)
                shutil.copyfile(f, link)
        elif not (link.is_symlink() and os.readlink(link) == str(f)):
            link.unlink(missing_ok=True)
            link.symlink_to(f)
    lock = json.loads((pristine / "pyodide-lock.json").read_text())
    for name, spec in manifest["wheels"].items():
        wheel = fetch_wheel(spec, downloads, name)
        dest = dist / spec["file"]
        if not (dest.exists() and not dest.is_symlink() and sha256_of(dest) == spec["sha256"]):
            shutil.copyfile(wheel, dest)
        entry = lock["packages"][name]
        entry.update(version=spec["version"], file_name=spec["file"], sha256=spec["sha256"], depends=spec["depends"])
    text = json.dumps(lock, indent=1, sort_keys=True)
    out = dist / "pyodide-lock.json"
    if not out.exists() or out.read_text() != text:
        log(f"writing {out}")
        out.write_text(text)
    return dist


def _lock_closure(lock: dict, roots: list[str]) -> list[str]:
    """Lock keys of ``roots`` and everything they depend on (the lock spells some names with _ in depends)."""
    key = {k.lower().replace("_", "-"): k for k in lock["packages"]}
    out: set[str] = set()
    todo = [key[r.lower().replace("_", "-")] for r in roots]
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo += [key[d.lower().replace("_", "-")] for d in lock["packages"][name].get("depends", [])]
    return sorted(out)


def lite_assets(cache: Path, manifest: dict) -> None:
    """The Pyodide kernel's packages into the pristine dist; comm for the site's wheel index."""
    assets = json.loads((HERE / "assets.json").read_text())
    dist = cache / assets["pyodide"]["dist"]
    lite = manifest["lite"]
    lock = json.loads((dist / "pyodide-lock.json").read_text())
    todo = {}
    for name in _lock_closure(lock, lite["pyodide_packages"]):
        entry = lock["packages"][name]
        dest = dist / entry["file_name"]
        if not (dest.exists() and sha256_of(dest) == entry["sha256"]):
            todo[assets["pyodide"]["member_dir"] + entry["file_name"]] = (dest, entry["sha256"])
    if todo:
        src = lite["pyodide_from"]
        archive = fetch_archive(src, assets["archives"][src], cache / "downloads")
        for member, opener in _members(archive):
            if member in todo:
                dest, digest = todo.pop(member)
                log(f"pyodide package {dest.name}")
                with opener() as f:
                    _write_atomic(dest, f)
                if sha256_of(dest) != digest:
                    dest.unlink()
                    raise SystemExit(f"[setup] {dest.name} does not match the official pyodide-lock.json sha256")
        if todo:
            raise SystemExit(f"[setup] not in the archive: {sorted(todo)}")
    for name, spec in lite["piplite_wheels"].items():
        fetch_wheel(spec, cache / "downloads", name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default=os.environ.get("WEBINFER_CACHE", str(Path.home() / ".cache" / "webinfer")))
    args = p.parse_args(argv)
    manifest = json.loads((HERE / "browser_assets.json").read_text())
    lite_assets(Path(args.cache), manifest)  # first: the test dist links the pristine dist's files
    build_test_dist(Path(args.cache), manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
