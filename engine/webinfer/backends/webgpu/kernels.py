"""WGSL sources: loading from the package, a tiny preprocessor, the kernel names.

Shaders live in ``wgsl/`` at the repository root (``engine/webinfer/wgsl`` is a
symlink to it, and the wheel carries the files).  Kernels are named
``<op>_<format>`` after the ggml type names (``matvec_q4_1`` reads Q4_1
weights); files starting with ``_`` are pieces that kernels include.

The preprocessor understands exactly::

    #include "file.wgsl"        textual include (each file at most once)
    #define NAME [value]        a flag or a value for #if
    #ifdef NAME / #ifndef NAME / #else / #endif
    const NAME: T = value;      replaced when NAME is given in ``defines``

so every file stays valid-looking WGSL that an editor can highlight, and a
variant is a set of defines chosen by the backend (``RESIDUAL``,
``GATE_UP``, tile sizes...), cached by the device per (name, defines).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from ...errors import WebinferError

# Weight formats with matvec_/matmul_/embed_ kernels (ggml names, lower case in file names).
WEIGHT_FORMATS = ("F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K")

_CONST = re.compile(r"^(\s*const\s+(\w+)\s*:\s*(\w+)\s*=\s*)([^;]+)(;.*)$")


class KernelSourceError(WebinferError, FileNotFoundError):
    """A WGSL file is missing from the package or malformed (#if without #endif...)."""


@lru_cache(maxsize=None)
def _read(filename: str) -> str:
    try:
        return resources.files("webinfer").joinpath("wgsl", filename).read_text()
    except (FileNotFoundError, OSError):
        raise KernelSourceError(f"WGSL file {filename!r} is not in the webinfer package (wgsl/)") from None


def _literal(value, typ: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if typ == "u32":
        return f"{int(value)}u"
    if typ == "i32":
        return f"{int(value)}i"
    if typ == "f32":
        return repr(float(value))
    return str(value)


def preprocess(filename: str, defines: dict | None = None) -> str:
    """The full source of ``filename`` with includes expanded and ``defines`` applied."""
    defs = dict(defines or {})
    seen: set[str] = set()
    out: list[str] = []

    def emit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        stack: list[bool] = []   # for each open #if: is this branch active
        for lineno, line in enumerate(_read(name).splitlines(), 1):
            s = line.strip()
            active = all(stack)
            if s.startswith("#ifdef ") or s.startswith("#ifndef ") or s.startswith("#if "):
                word, arg = s.split(None, 1)
                val = bool(defs.get(arg.strip())) if word == "#if" else arg.strip() in defs
                stack.append(val if word != "#ifndef" else not val)
                continue
            if s == "#else":
                if not stack:
                    raise KernelSourceError(f"{name}:{lineno}: #else without #if")
                stack[-1] = not stack[-1]
                continue
            if s == "#endif":
                if not stack:
                    raise KernelSourceError(f"{name}:{lineno}: #endif without #if")
                stack.pop()
                continue
            if not active:
                continue
            if s.startswith("#include "):
                emit(s.split(None, 1)[1].strip().strip('"'))
                continue
            if s.startswith("#define "):
                parts = s.split(None, 2)
                defs.setdefault(parts[1], parts[2] if len(parts) > 2 else True)
                continue
            m = _CONST.match(line)
            if m and m.group(2) in defs:
                line = m.group(1) + _literal(defs[m.group(2)], m.group(3)) + m.group(5)
            out.append(line)
        if stack:
            raise KernelSourceError(f"{name}: #if without #endif")

    emit(filename)
    return "\n".join(out) + "\n"


def kernel_source(kernel: str, defines: dict | None = None) -> str:
    """The WGSL of kernel ``kernel`` (e.g. ``"matvec_q4_1"``) with a variant's defines."""
    return preprocess(f"{kernel}.wgsl", defines)


def kernel_name(op: str, fmt: str) -> str:
    """``kernel_name("matvec", "Q4_1") == "matvec_q4_1"``."""
    return f"{op}_{fmt.lower()}"


def list_kernels() -> list[str]:
    """Every kernel shipped in the package (files not starting with ``_``)."""
    root = resources.files("webinfer").joinpath("wgsl")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".wgsl") and not p.name.startswith("_"))
