"""Command buffers for the WASM kernels (wasm_fallback/src/program.c).

A program is a flat run of int32 words; each command is
``[opcode, n_words, arg...]``.  Pointers are byte addresses in the memory
the kernels run on, floats go as their bit patterns.  ``OPS`` is the one
table of opcodes and argument names on the Python side; it must match the
enum in program.c (the tests check every opcode against the kernels).
"""

from __future__ import annotations

import struct
from array import array

# name -> (opcode, argument names); keep in step with program.c
OPS: dict[str, tuple[int, tuple[str, ...]]] = {
    "rmsnorm": (1, ("x", "w", "out", "T", "D", "eps")),
    "quant": (2, ("x", "T", "K", "qx", "dx", "sx", "isx")),
    "matmul_q": (3, ("type", "w", "rows", "K", "T", "qx", "dx", "sx", "isx", "y", "ldy")),
    "matmul_f32": (4, ("w", "rows", "K", "x", "T", "y", "ldy")),
    "rope": (5, ("x", "T", "H", "hd", "half", "cos", "sin", "pos0", "neox")),
    "kv_store": (6, ("k", "v", "kc", "vc", "cap", "T", "pos0", "Hkv", "hd")),
    "attention": (7, ("q", "kc", "vc", "cap", "T", "pos0", "H", "Hkv", "hd", "scale", "out", "scratch",
                      "scratch_stride")),
    "swiglu": (8, ("g", "u", "out", "T", "n")),
    "add": (9, ("a", "b", "T", "n")),
    "add_rows": (10, ("y", "b", "T", "n")),
}
FLOAT_ARGS = {"eps", "scale"}
NO_BARRIER = 1 << 16   # opcode flag: threads need not meet after this command (program.c)
# ops whose threads each take the same share of the T tokens (program.c): a chain of them on the
# same tokens needs no barrier in between; matmuls split rows, attention heads
TOKEN_SPLIT = {"rmsnorm", "quant", "rope", "kv_store", "swiglu", "add", "add_rows"}
# word offset (from a command's first word) of the position argument of the ops that take one
POS_WORD = {op: 2 + names.index("pos0") for op, (_, names) in OPS.items() if "pos0" in names}
QBLOCK = 32  # elements per quantized-activation block (act_quant.c)

_F32 = struct.Struct("<f")
_I32 = struct.Struct("<i")


def f32_bits(x: float) -> int:
    """The int32 whose bits are the float32 ``x``."""
    return _I32.unpack(_F32.pack(x))[0]


def _signed(v: int) -> int:
    """Addresses >= 2 GiB arrive as large ints; the command words are int32."""
    return v - (1 << 32) if v >= 1 << 31 else v


class Program:
    """A growing command buffer; ``emit`` appends one command."""

    __slots__ = ("words", "n_commands")

    def __init__(self):
        self.words = array("i")
        self.n_commands = 0

    def emit(self, op: str, *args: int) -> int:
        """Append a command; returns the index of its first word."""
        code, names = OPS[op]
        assert len(args) == len(names), (op, args)
        start = len(self.words)
        self.words.append(code)
        self.words.append(2 + len(args))
        self.words.extend([_signed(a) for a in args])
        self.n_commands += 1
        return start

    def clear(self) -> None:
        del self.words[:]
        self.n_commands = 0

    def __len__(self) -> int:
        return self.n_commands

    def commands(self):
        """Decoded commands as (op name, {arg: value}) pairs (for debugging and the debug checks)."""
        by_code = {code: (name, names) for name, (code, names) in OPS.items()}
        w, i = self.words, 0
        while i < len(w):
            code = w[i] & ~NO_BARRIER
            name, names = by_code.get(code, (f"unknown opcode {code}", ()))
            n = max(2, w[i + 1])
            vals = [v & 0xFFFFFFFF for v in w[i + 2 : i + n]]
            yield name, dict(zip(names, vals))
            i += n
