#!/usr/bin/env python3
"""Build webinfer's WASM SIMD kernels: wasm_fallback/src/*.c -> engine/webinfer/wasm/kernels{,_mt}.wasm.

    python wasm_fallback/build.py            build, check, write the .wasm files and their manifest
    python wasm_fallback/build.py --check    build into a temp dir and fail if the result
                                             differs from the committed files (reproducibility)

Two builds of the same sources:
- ``kernels.wasm``: single-threaded, on Pyodide's own (unshared) memory;
- ``kernels_mt.wasm``: for worker threads on a shared memory (``-matomics``,
  ``--shared-memory``); exports ``run_thread`` too, and barrier.c joins the
  threads after each command.

No Emscripten: Debian's clang and lld (14) compile C with wasm_simd128.h for
wasm32 straight into an Emscripten-compatible *side module* (a ``dylink.0``
section, position-independent code).  Pyodide's own dynamic linker loads it
(``pyodide._module.loadWebAssemblyModule``), which hands it Pyodide's linear
memory, so the kernels work on numpy arrays in place.

The module must own no linear memory: it runs on memory that Python manages
(and, with threads, on a shared memory several workers use).  This script
checks that after linking:
- no object file references ``__stack_pointer`` (no stack frames in memory:
  every local lives in a WASM local; a struct passed by value or an array that
  is not promoted to registers would need one),
- the module has no data section and asks the dynamic linker for 0 bytes of
  memory and 0 table slots,
- it imports nothing but ``env.memory`` and the three globals every side
  module imports (``__stack_pointer``, ``__memory_base``, ``__table_base``,
  ``__indirect_function_table``),
- it exports exactly ``run`` (and ``run_thread`` in the threaded build), and
  its memory import is shared exactly in the threaded build.

The build is reproducible: same clang, same sources -> the same bytes (no
paths or timestamps are embedded; the test suite rebuilds and compares).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
OUT_DIR = HERE.parent / "engine" / "webinfer" / "wasm"

CLANG_CANDIDATES = ("clang-14", "clang")
LLD_CANDIDATES = ("wasm-ld-14", "wasm-ld")
CFLAGS = ["--target=wasm32", "-fPIC", "-O3", "-msimd128", "-ffreestanding", "-fno-builtin", "-nostdlib",
          "-Wall", "-Wextra", "-Werror", "-std=c11"]
LDFLAGS = ["--experimental-pic", "-shared", "--no-entry"]
ALLOWED_IMPORTS = {("env", "memory"), ("env", "__stack_pointer"), ("env", "__memory_base"), ("env", "__table_base"),
                   ("env", "__indirect_function_table")}
# file -> (extra compiler flags, extra linker flags, exports, shared memory)
VARIANTS = {
    "kernels.wasm": ([], ["--export=run"], {"run"}, False),
    "kernels_mt.wasm": (["-matomics", "-mbulk-memory", "-DWEBINFER_THREADS"],
                        ["--shared-memory", "--export=run", "--export=run_thread"], {"run", "run_thread"}, True),
}


class BuildError(RuntimeError):
    pass


def find_tool(candidates: tuple[str, ...]) -> str:
    for c in candidates:
        path = shutil.which(c)
        if path:
            return path
    raise BuildError(f"none of {', '.join(candidates)} found: install clang and lld (scripts/setup.sh does)")


def tool_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


# ---------------------------------------------------------------- checks


def _leb(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def _name(data: bytes, i: int) -> tuple[str, int]:
    n, i = _leb(data, i)
    return data[i : i + n].decode(), i + n


def inspect_module(data: bytes) -> dict:
    """Sections, imports, exports and dylink memory info of a .wasm (enough for the checks)."""
    if data[:8] != b"\0asm\1\0\0\0":
        raise BuildError("not a WASM module")
    info: dict = {"sections": [], "imports": [], "exports": [], "dylink": None}
    i = 8
    while i < len(data):
        sid = data[i]
        size, j = _leb(data, i + 1)
        body_end = j + size
        if sid == 0:
            name, k = _name(data, j)
            info["sections"].append(name)
            if name == "dylink.0":
                while k < body_end:
                    sub = data[k]
                    sub_size, k2 = _leb(data, k + 1)
                    if sub == 1:  # WASM_DYLINK_MEM_INFO
                        mem_size, k3 = _leb(data, k2)
                        mem_align, k3 = _leb(data, k3)
                        table_size, k3 = _leb(data, k3)
                        table_align, k3 = _leb(data, k3)
                        info["dylink"] = {"memory_size": mem_size, "memory_align": mem_align,
                                          "table_size": table_size, "table_align": table_align}
                    k = k2 + sub_size
        else:
            info["sections"].append(sid)
            if sid == 2:  # imports
                n, k = _leb(data, j)
                for _ in range(n):
                    mod, k = _name(data, k)
                    field, k = _name(data, k)
                    kind = data[k]
                    k += 1
                    if kind == 0:  # function: type index
                        _, k = _leb(data, k)
                    elif kind == 1:  # table: reftype + limits
                        k += 1
                        flags = data[k]
                        k += 1
                        _, k = _leb(data, k)
                        if flags & 1:
                            _, k = _leb(data, k)
                    elif kind == 2:  # memory: limits
                        flags = data[k]
                        k += 1
                        _, k = _leb(data, k)
                        if flags & 1:
                            _, k = _leb(data, k)
                        info["memory_shared"] = bool(flags & 2)
                    elif kind == 3:  # global: valtype + mutability
                        k += 2
                    info["imports"].append((mod, field))
            elif sid == 7:  # exports
                n, k = _leb(data, j)
                for _ in range(n):
                    name, k = _name(data, k)
                    k += 1
                    _, k = _leb(data, k)
                    info["exports"].append(name)
        i = body_end
    return info


def check_module(data: bytes, exports: set[str] = frozenset({"run"}), shared: bool = False) -> dict:
    info = inspect_module(data)
    problems = []
    if 11 in info["sections"] or 12 in info["sections"]:
        problems.append("the module has a data section (static data would need memory of its own)")
    dl = info["dylink"]
    if dl is None:
        problems.append("no dylink.0 memory info: not a side module")
    elif dl["memory_size"] or dl["table_size"]:
        problems.append(f"the module asks for memory/table of its own: {dl}")
    extra = set(info["imports"]) - ALLOWED_IMPORTS
    if extra:
        problems.append(f"unexpected imports {sorted(extra)}")
    if set(info["exports"]) != set(exports):
        problems.append(f"exports {sorted(info['exports'])}, expected {sorted(exports)}")
    if bool(info.get("memory_shared")) != shared:
        problems.append(f"memory import shared={info.get('memory_shared')}, expected {shared}")
    if problems:
        raise BuildError("; ".join(problems))
    return info


# ---------------------------------------------------------------- build


def build(out_dir: Path) -> list[Path]:
    """Build every variant into ``out_dir``; returns the .wasm paths."""
    return [build_variant(out_dir, name) for name in VARIANTS]


def build_variant(out_dir: Path, name: str) -> Path:
    clang, lld = find_tool(CLANG_CANDIDATES), find_tool(LLD_CANDIDATES)
    cflags, ldflags, exports, shared = VARIANTS[name]
    sources = sorted(SRC.glob("*.c"))
    with tempfile.TemporaryDirectory(prefix="webinfer-wasm-") as tmp:
        objs = []
        for src in sources:
            obj = Path(tmp) / (src.stem + ".o")
            # relative paths keep the (unused) source names in the objects independent of the checkout
            subprocess.run([clang, *CFLAGS, *cflags, "-c", str(src.relative_to(HERE)), "-o", str(obj)], cwd=HERE,
                           check=True)
            objs.append(obj)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / name
        res = subprocess.run([lld, *LDFLAGS, *ldflags, "--trace-symbol=__stack_pointer", "-o", str(target),
                              *[o.name for o in objs]], cwd=tmp, capture_output=True, text=True)
        if res.returncode:
            raise BuildError(f"link failed:\n{res.stderr}")
        users = sorted({m.group(1) for m in re.finditer(r"^(\S+\.o): reference to __stack_pointer", res.stdout, re.M)})
        if users:
            target.unlink()
            raise BuildError(f"{name}: {', '.join(users)} use the stack in linear memory (a by-value struct or an "
                             "array not kept in registers): the kernels must not own memory")
    check_module(target.read_bytes(), exports, shared)
    return target


def manifest(targets: list[Path]) -> dict:
    clang, lld = find_tool(CLANG_CANDIDATES), find_tool(LLD_CANDIDATES)
    src_hash = hashlib.sha256()
    for src in sorted(SRC.glob("*")):
        src_hash.update(src.name.encode() + b"\0" + src.read_bytes())
    return {"files": {t.name: {"sha256": hashlib.sha256(t.read_bytes()).hexdigest(), "size": t.stat().st_size}
                      for t in targets},
            "sources_sha256": src_hash.hexdigest(), "clang": tool_version(clang), "wasm_ld": tool_version(lld),
            "cflags": CFLAGS, "ldflags": LDFLAGS,
            "variants": {name: {"cflags": v[0], "ldflags": v[1]} for name, v in VARIANTS.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare with the committed file")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    try:
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                stale = [f.name for f in build(Path(tmp))
                         if not (args.out / f.name).exists() or f.read_bytes() != (args.out / f.name).read_bytes()]
            if stale:
                print(f"{', '.join(stale)} in {args.out} are not what the sources build to: "
                      "run python wasm_fallback/build.py", file=sys.stderr)
                return 1
            print(f"{', '.join(VARIANTS)}: reproducible")
            return 0
        targets = build(args.out)
        (args.out / "kernels.json").write_text(json.dumps(manifest(targets), indent=1) + "\n")
        for t in targets:
            print(f"built {t} ({t.stat().st_size} bytes)")
        return 0
    except (BuildError, subprocess.CalledProcessError) as e:
        print(f"wasm build failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
