"""The committed kernels.wasm is what wasm_fallback/src builds to, and owns no memory.

The .wasm is committed (the wheel must contain it and a wheel build must not
need clang); this test rebuilds it with Debian's clang/lld 14 (scripts/setup.sh
installs them) and compares bytes, so a source change without a rebuild, or a
non-reproducible build, fails here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WASM_DIR = ROOT / "engine" / "webinfer" / "wasm"


def _build_module():
    spec = importlib.util.spec_from_file_location("wasm_build", ROOT / "wasm_fallback" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_modules_own_no_memory():
    build = _build_module()
    for name, (_, _, exports, shared) in build.VARIANTS.items():
        info = build.check_module((WASM_DIR / name).read_bytes(), exports, shared)
        assert info["dylink"] == {"memory_size": 0, "memory_align": 0, "table_size": 0, "table_align": 0}


def test_manifest_matches_the_committed_modules():
    import hashlib

    manifest = json.loads((WASM_DIR / "kernels.json").read_text())
    for name, rec in manifest["files"].items():
        data = (WASM_DIR / name).read_bytes()
        assert rec["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert rec["size"] == len(data)


def test_rebuild_is_byte_identical(tmp_path):
    build = _build_module()
    try:
        clang = build.find_tool(build.CLANG_CANDIDATES)
        build.find_tool(build.LLD_CANDIDATES)
    except build.BuildError as e:
        pytest.skip(str(e))
    manifest = json.loads((WASM_DIR / "kernels.json").read_text())
    if build.tool_version(clang) != manifest["clang"]:
        pytest.skip(f"{build.tool_version(clang)} is not the compiler the committed module was built with "
                    f"({manifest['clang']}): its output may differ")
    for fresh in build.build(tmp_path):
        assert fresh.read_bytes() == (WASM_DIR / fresh.name).read_bytes(), \
            f"{fresh.name} is stale: run python wasm_fallback/build.py and commit the result"
