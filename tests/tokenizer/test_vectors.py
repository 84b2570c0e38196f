"""llama.cpp's tokenizer test vectors (test-tokenizer-0), for every vocabulary
we claim to support.

Each ``ggml-vocab-NAME.gguf.inp`` holds inputs separated by
``\\n__ggml_vocab_test__\\n``; line i of ``.out`` holds the expected ids of
input i.  As in test-tokenizer-0.cpp the inputs are tokenized with
``add_special=False, parse_special=False`` (user-defined tokens still match).
"""

from __future__ import annotations

import pytest

from .conftest import require, vocab_path, vocab_tokenizer

# Every vocabulary with vectors that passes.  Not here: bert-bge (WordPiece)
# and the vocabularies without .out files (aquila, baichuan, gpt-neox,
# nomic-bert-moe); see test_errors.py for the unsupported types.
CLAIMED = [
    "gpt-2", "llama-bpe", "qwen2", "qwen35", "llama-spm", "phi-3", "starcoder", "refact",
    "command-r", "deepseek-llm", "deepseek-coder", "falcon", "mpt", "gemma-4",
]

SEP = b"\n__ggml_vocab_test__\n"


def read_cases(name: str) -> list[tuple[str, list[int]]]:
    """Inputs and expected ids, split exactly like test-tokenizer-0.cpp."""
    path = require(vocab_path(name))
    raw = path.with_name(path.name + ".inp").read_bytes()
    inputs = []
    pos = 0
    while pos < len(raw):
        k = raw.find(SEP, pos)
        if k < 0:
            inputs.append(raw[pos:])
            break
        inputs.append(raw[pos:k])
        pos = k + len(SEP)
    lines = path.with_name(path.name + ".out").read_text(encoding="utf-8").split("\n")
    assert len(lines) >= len(inputs), f"{name}: fewer outputs than inputs"
    return [(s.decode("utf-8"), [int(x) for x in line.split()]) for s, line in zip(inputs, lines)]


@pytest.mark.parametrize("name", CLAIMED)
def test_encode_matches_llama_cpp(name):
    tok = vocab_tokenizer(name)
    cases = read_cases(name)
    assert len(cases) >= 40
    failures = []
    for text, expected in cases:
        got = tok.encode(text, add_special=False, parse_special=False)
        if got != expected:
            failures.append(f"{text[:60]!r}\n   got {got[:20]}\n   exp {expected[:20]}")
    assert not failures, f"{len(failures)}/{len(cases)} {name} vectors differ:\n" + "\n".join(failures[:5])


@pytest.mark.parametrize("name", CLAIMED)
def test_decode_roundtrip(name):
    """The expected ids decode to the input (U+2581 reads as a space where
    the vocabulary spells spaces with it), and so do our own ids."""
    tok = vocab_tokenizer(name)
    spaces_escaped = tok.kind == "spm" or name == "gemma-4"
    for text, expected in read_cases(name):
        want = text.replace("\u2581", " ") if spaces_escaped else text
        assert tok.decode(expected) == want
        assert tok.decode(tok.encode(text, add_special=True), skip_special=True) == want


@pytest.mark.parametrize("name", CLAIMED)
def test_add_special(name):
    tok = vocab_tokenizer(name)
    ids = tok.encode("Hello world", add_special=True)
    plain = tok.encode("Hello world", add_special=False)
    head = [tok.bos_id] if tok.add_bos else []
    tail = [tok.eos_id] if tok.add_eos else []
    assert ids == head + plain + tail
    assert tok.encode("", add_special=False) == []
    assert tok.encode("", add_special=True) == head + tail


def test_bos_defaults():
    """add_bos as llama.cpp decides it: SPM yes, Llama-3 BPE yes, GPT-2 no,
    Gemma 4 forced on."""
    assert vocab_tokenizer("llama-spm").add_bos is True
    assert vocab_tokenizer("llama-bpe").add_bos is True
    assert vocab_tokenizer("gpt-2").add_bos is False
    assert vocab_tokenizer("gemma-4").add_bos is True


@pytest.mark.parametrize("name,expected", [
    ("llama-bpe", {"<|end_of_text|>", "<|eot_id|>"}),
    ("qwen2", {"<|endoftext|>", "<|im_end|>", "</s>"}),   # llama.cpp counts Qwen's plain "</s>" too
    ("phi-3", {"</s>", "<|endoftext|>", "<|end|>"}),
    ("gemma-4", {"<eos>", "<turn|>", "<|tool_response>"}),
    ("llama-spm", {"</s>"}),
])
def test_eog_ids(name, expected):
    tok = vocab_tokenizer(name)
    assert {tok.id_to_piece(i) for i in tok.eog_ids} == expected
