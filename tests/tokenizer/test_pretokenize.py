"""The hand-written pre-tokenizer scanners against the regexes they stand for.

Python's ``re`` has no \\p{L}, but over a fixed alphabet whose classes we
know, each class can be spelt out as a character set.  The original regexes
(from the models' tokenizer.json, as quoted in llama.cpp) then run in ``re``
and must split exactly like the scanners.  No model files are needed.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, strategies as st

from webinfer.tokenizer.chars import classify
from webinfer.tokenizer.pretokenize import SPLITTERS, PRE_SPECS, get_pre_spec
from webinfer.errors import TokenizerError

# letters (incl. contraction letters in both cases), numbers, whitespace,
# punctuation/symbols, a combining mark, controls/format/unassigned
ALPHABET = (
    "aAbsStTmMdDrReEvVlLxwoé中ﬀ"
    "0123456789٣½²"
    " \t\n\r\x0b\x0c\xa0\u3000\x85\u2003"
    "'!.,$+<|`~\"(-"
    "\u0301\u0e31"
    "\x00\x1c\u200b\ufeff\ue000\u0378"
)


def _cls(*names):
    chars = [c for c in ALPHABET if classify(ord(c)) in names]
    return "".join(re.escape(c) for c in chars)


L, N, W, M = _cls("L"), _cls("N"), _cls("W"), _cls("M")
RN = "\\r\\n"

GPT2_RE = re.compile(
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{W}{L}{N}]+|[{W}]+(?![^{W}])|[{W}]+"
)
LLAMA3_RE = re.compile(
    rf"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^{RN}{L}{N}]?[{L}]+|[{N}]{{1,3}}| ?[^{W}{L}{N}]+[{RN}]*"
    rf"|[{W}]*[{RN}]+|[{W}]+(?![^{W}])|[{W}]+"
)
QWEN2_RE = re.compile(
    rf"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^{RN}{L}{N}]?[{L}]+|[{N}]| ?[^{W}{L}{N}]+[{RN}]*"
    rf"|[{W}]*[{RN}]+|[{W}]+(?![^{W}])|[{W}]+"
)
QWEN35_RE = re.compile(
    rf"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^{RN}{L}{N}]?[{L}{M}]+|[{N}]| ?[^{W}{L}{M}{N}]+[{RN}]*"
    rf"|[{W}]*[{RN}]+|[{W}]+(?![^{W}])|[{W}]+"
)


def _isolate(pattern: re.Pattern, pieces: list[str]) -> list[str]:
    """HuggingFace Split(behavior="Isolated"): matches and gaps become pieces."""
    out = []
    for p in pieces:
        pos = 0
        for m in pattern.finditer(p):
            if m.start() > pos:
                out.append(p[pos:m.start()])
            out.append(m.group())
            pos = m.end()
        if pos < len(p):
            out.append(p[pos:])
    return out


def _oracle(name: str, text: str) -> list[str]:
    if name == "gpt2":
        return _isolate(GPT2_RE, [text])
    if name == "llama3":
        return _isolate(LLAMA3_RE, [text])
    if name == "qwen2":
        return _isolate(QWEN2_RE, [text])
    if name == "qwen35":
        return _isolate(QWEN35_RE, [text])
    if name == "starcoder":
        return _isolate(GPT2_RE, _isolate(re.compile(f"[{N}]"), [text]))
    raise AssertionError(name)


FRAGMENTS = ["'s", "'RE", "'ll", "  ", "\r\n", " \n ", "123456", "a", "word", " x", "!!", "é\u0301"]
assert set("".join(FRAGMENTS)) <= set(ALPHABET)
texts = st.text(alphabet=ALPHABET, max_size=40) | st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join)


@pytest.mark.parametrize("name", ["gpt2", "llama3", "qwen2", "qwen35", "starcoder"])
@given(text=texts)
def test_scanner_matches_regex(name, text):
    assert SPLITTERS[name](text) == _oracle(name, text)


@pytest.mark.parametrize("name", sorted(SPLITTERS))
@given(text=st.text(max_size=60))
def test_splits_cover_the_text(name, text):
    words = SPLITTERS[name](text)
    assert "".join(words) == text
    assert all(words)


@pytest.mark.parametrize("text,expected", [
    ("Hello world", ["Hello", " world"]),
    ("I'm  here\n\n", ["I", "'m", " ", " here", "\n\n"]),
    ("x = 12345;", ["x", " =", " 12345", ";"]),
    ("  \tfoo", ["  ", "\t", "foo"]),  # \s+(?!\S), and only " " joins a word
])
def test_gpt2_examples(text, expected):
    assert SPLITTERS["gpt2"](text) == expected


@pytest.mark.parametrize("name,text,expected", [
    ("llama3", "I'M 1234567 (ok)\r\n\n  next", ["I", "'M", " ", "123", "456", "7", " (", "ok", ")\r\n\n", " ", " next"]),
    ("qwen2", "v12 'S", ["v", "1", "2", " '", "S"]),
    ("starcoder", "The year 2024!", ["The", " year", " ", "2", "0", "2", "4", "!"]),
    ("falcon", "a+b=12345...", ["a", "+", "b", "=", "123", "45", "..."]),
    ("deepseek-coder", "int x=10;\n", ["int", " x", "=", "1", "0", ";", "\n"]),
    ("newlines", "a b\n\nc", ["a b", "\n\n", "c"]),
])
def test_other_sets(name, text, expected):
    assert SPLITTERS[name](text) == expected


def test_pre_names():
    assert get_pre_spec("smollm").splitter == "starcoder"
    assert get_pre_spec("llama-bpe").ignore_merges
    assert get_pre_spec(None).splitter == "default"
    assert set(PRE_SPECS) >= {"gpt-2", "llama-bpe", "qwen2", "smollm", "starcoder", "gemma4"}
    with pytest.raises(TokenizerError, match="tekken"):
        get_pre_spec("tekken")
