"""Character classes and the GPT-2 byte <-> unicode mapping.

The pre-tokenizers need the regex classes ``\\p{L}``, ``\\p{N}``, ``\\s`` ...,
which Python's ``re`` lacks (and the ``regex`` module is not available in
Pyodide).  Instead every code point is mapped once to a one-letter class and
texts are turned into "class strings" with :meth:`str.translate`, which runs in
C; the scanners then work on those strings.

The classes follow llama.cpp's ``unicode_cpt_flags`` (which is what the
reference test vectors were checked against), not Python's ``str.isspace``:

* whitespace is llama.cpp's fixed set below (it has U+0085 and U+00A0 but, unlike
  ``str.isspace``, not the ASCII separators U+001C..U+001F);
* otherwise the first letter of the Unicode general category decides:
  ``L`` letter, ``N`` number, ``P`` punctuation, ``S`` symbol, ``M`` mark,
  ``Z`` separator, ``C`` control/format/private use/surrogate, ``U`` unassigned.

The Unicode version is whatever this Python's :mod:`unicodedata` has (14.0 on
CPython 3.11); llama.cpp's tables may be newer, which only matters for code
points assigned since.
"""

from __future__ import annotations

import unicodedata

# llama.cpp's unicode_set_whitespace (the Unicode White_Space property).
WHITESPACE_CODEPOINTS = frozenset(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680]
    + list(range(0x2000, 0x200B))
    + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)

# What C's isspace() accepts: llama.cpp uses it for the lstrip/rstrip attributes
# of special tokens, and std::regex's \s matches it.
C_SPACE = " \t\n\v\f\r"


def classify(cp: int) -> str:
    """One-letter class of a code point (see the module docstring)."""
    if cp in WHITESPACE_CODEPOINTS:
        return "W"
    cat = unicodedata.category(chr(cp))
    if cat == "Cn":
        return "U"
    return cat[0]


class _ClassTable(dict):
    """code point -> class letter, filled lazily (translate() calls __missing__)."""

    def __missing__(self, cp: int) -> str:
        c = classify(cp)
        self[cp] = c
        return c


CLASS_TABLE = _ClassTable()
for _cp in range(128):
    CLASS_TABLE[_cp] = classify(_cp)


def class_string(text: str) -> str:
    """``text`` with every character replaced by its class letter."""
    return text.translate(CLASS_TABLE)


# ---------------------------------------------------------------- collapsed text
#
# llama.cpp runs the pre-tokenizer regexes that have no hand-written scanner
# through std::regex on a "collapsed" text: ASCII stays as is, non-ASCII
# whitespace becomes \x0b and every other non-ASCII code point becomes one byte
# naming its category (0xD1 number, 0xD2 letter, 0xD3 punctuation, 0xD4 mark,
# 0xD5 symbol, 0xD0 anything else).  \p{X} in the regex then becomes a class of
# that byte plus the ASCII members of X.  We do the same with Python's re.

_COLLAPSE = {"N": "\xd1", "L": "\xd2", "P": "\xd3", "M": "\xd4", "S": "\xd5", "W": "\x0b"}


class _CollapseTable(dict):
    def __missing__(self, cp: int) -> str:
        c = chr(cp) if cp < 128 else _COLLAPSE.get(classify(cp), "\xd0")
        self[cp] = c
        return c


COLLAPSE_TABLE = _CollapseTable()


def collapsed_string(text: str) -> str:
    return text.translate(COLLAPSE_TABLE)


class _WideTable(dict):
    """For regexes without \\p{..}: llama.cpp runs std::wregex on the code points
    with non-ASCII whitespace replaced by \\x0b (std::wregex's \\s is ASCII-only)."""

    def __missing__(self, cp: int) -> str:
        c = "\x0b" if cp > 0x7F and cp in WHITESPACE_CODEPOINTS else chr(cp)
        self[cp] = c
        return c


WIDE_TABLE = _WideTable()


def wide_string(text: str) -> str:
    return text.translate(WIDE_TABLE)


# std::regex's \s (C locale): the six ASCII spaces; non-ASCII whitespace has
# already been turned into \x0b by the tables above.
RE_SPACE = "[\\t\\n\\x0b\\x0c\\r ]"


# ---------------------------------------------------------------- GPT-2 bytes
#
# Byte-level BPE vocabularies spell every byte as a printable code point:
# printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100...


def _bytes_to_unicode() -> list[str]:
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out = [""] * 256
    for b in keep:
        out[b] = chr(b)
    n = 0
    for b in range(256):
        if not out[b]:
            out[b] = chr(256 + n)
            n += 1
    return out


BYTE_TO_UNICODE: list[str] = _bytes_to_unicode()
UNICODE_TO_BYTE: dict[str, int] = {c: b for b, c in enumerate(BYTE_TO_UNICODE)}
# latin-1 decoded bytes -> byte-level spelling, for str.translate
_LATIN1_TO_BYTELEVEL = {b: c for b, c in enumerate(BYTE_TO_UNICODE)}


def byte_encode(word: str) -> str:
    """The byte-level spelling of ``word``'s UTF-8 bytes.

    Lone surrogates (possible in a Python str, impossible in UTF-8) are passed
    through as their 3-byte encodings rather than raising.
    """
    return word.encode("utf-8", "surrogatepass").decode("latin-1").translate(_LATIN1_TO_BYTELEVEL)


def byte_decode(text: str) -> bytes:
    """Inverse of :func:`byte_encode` for one token's text.

    A character outside the byte alphabet (some vocabularies mark added tokens
    as normal) stands for its own UTF-8 bytes.
    """
    get = UNICODE_TO_BYTE.get
    out = bytearray()
    for ch in text:
        b = get(ch)
        if b is None:
            out += ch.encode("utf-8", "surrogatepass")
        else:
            out.append(b)
    return bytes(out)
