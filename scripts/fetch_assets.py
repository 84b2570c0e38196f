#!/usr/bin/env python3
"""Fetch every artifact webinfer's commands and tests need, verified by sha256.

Stdlib only: it runs before the virtual environment exists.  Idempotent: an
archive already in the cache with the right hash is not fetched again, and an
extraction whose stamp matches its archive's hash is not redone.  Files are
written to a temporary name and renamed, so an interrupted run never leaves a
half-written file where a good one is expected.

    python3 scripts/fetch_assets.py [--cache DIR]

The cache defaults to $WEBINFER_CACHE or ~/.cache/webinfer.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def fetch_archive(key: str, spec: dict, downloads: Path) -> Path:
    dest = downloads / spec["file"]
    if dest.exists() and sha256_of(dest) == spec["sha256"]:
        return dest
    log(f"downloading {spec['file']}")
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        if "pip" in spec:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, spec["pip"]]
            cmd += ["--no-binary", ":all:"] if spec.get("sdist") else ["--only-binary", ":all:"]
        else:
            cmd = ["npm", "pack", "--silent", "--pack-destination", tmp, spec["npm"]]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        got = Path(tmp) / spec["file"]
        if not got.exists():
            raise SystemExit(f"[setup] {key}: expected {spec['file']} but got {os.listdir(tmp)}")
        digest = sha256_of(got)
        if digest != spec["sha256"]:
            raise SystemExit(f"[setup] {key}: sha256 mismatch for {spec['file']}: {digest} != {spec['sha256']}")
        os.replace(got, dest)
    return dest


def _members(archive: Path):
    """(name, opener) pairs for every regular file of a zip or tar archive."""
    if archive.suffix in (".whl", ".zip"):
        zf = zipfile.ZipFile(archive)
        for info in zf.infolist():
            if not info.is_dir():
                yield info.filename, lambda info=info: zf.open(info)
    else:
        tf = tarfile.open(archive)
        for m in tf.getmembers():
            if m.isfile():
                yield m.name, lambda m=m: tf.extractfile(m)


def _write_atomic(dest: Path, src) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with open(tmp, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    os.replace(tmp, dest)


def extract(item: dict, archive: Path, archive_sha: str, cache: Path) -> None:
    to = cache / item["to"]
    stamp_dir = cache / ".stamps"
    stamp_dir.mkdir(parents=True, exist_ok=True)
    stamp = stamp_dir / hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()[:16]
    if "member" in item:
        if to.exists() and stamp.exists() and stamp.read_text() == archive_sha:
            return
        for name, opener in _members(archive):
            if name == item["member"]:
                log(f"extracting {to.relative_to(cache)}")
                with opener() as src:
                    _write_atomic(to, src)
                break
        else:
            raise SystemExit(f"[setup] {item['member']} not found in {archive.name}")
        if "sha256" in item and sha256_of(to) != item["sha256"]:
            to.unlink()
            raise SystemExit(f"[setup] sha256 mismatch for {to}")
    else:
        if stamp.exists() and stamp.read_text() == archive_sha:
            return
        log(f"extracting {item['glob']} -> {to.relative_to(cache)}")
        n = 0
        for name, opener in _members(archive):
            if fnmatch.fnmatch(name, item["glob"]):
                with opener() as src:
                    _write_atomic(to / Path(name).name, src)
                n += 1
        if n == 0:
            raise SystemExit(f"[setup] nothing matched {item['glob']} in {archive.name}")
    stamp.write_text(archive_sha)


def pyodide_packages(cfg: dict, archive: Path, cache: Path) -> None:
    """Copy official Pyodide package builds next to pyodide-lock.json, checked against the lock."""
    dist = cache / cfg["dist"]
    lock = json.loads((dist / "pyodide-lock.json").read_text())
    wanted = set(cfg["packages"])
    for name in list(wanted):
        wanted |= set(lock["packages"][name].get("depends", []))
    todo = {}
    for name in sorted(wanted):
        entry = lock["packages"][name]
        dest = dist / entry["file_name"]
        if not (dest.exists() and sha256_of(dest) == entry["sha256"]):
            todo[cfg["member_dir"] + entry["file_name"]] = (dest, entry["sha256"])
    if not todo:
        return
    for member, opener in _members(archive):
        if member in todo:
            dest, digest = todo.pop(member)
            log(f"pyodide package {dest.name}")
            with opener() as src:
                _write_atomic(dest, src)
            if sha256_of(dest) != digest:
                dest.unlink()
                raise SystemExit(f"[setup] {dest.name} does not match the official pyodide-lock.json sha256")
    if todo:
        raise SystemExit(f"[setup] not found in {archive.name}: {sorted(todo)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default=os.environ.get("WEBINFER_CACHE", str(Path.home() / ".cache" / "webinfer")))
    p.add_argument("--manifest", default=str(HERE / "assets.json"))
    args = p.parse_args(argv)
    cache = Path(args.cache)
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(Path(args.manifest).read_text())

    archives = {k: fetch_archive(k, spec, downloads) for k, spec in manifest["archives"].items()}
    for item in manifest["extract"]:
        extract(item, archives[item["from"]], manifest["archives"][item["from"]]["sha256"], cache)
    pyodide_packages(manifest["pyodide"], archives[manifest["pyodide"]["from"]], cache)
    log(f"assets ready in {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
