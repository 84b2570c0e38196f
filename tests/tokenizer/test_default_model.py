"""The default model's tokenizer (SmolLM2: byte-level BPE, pre-tokenizer
'smollm', which llama.cpp maps to the StarCoder rules: every digit alone,
then the GPT-2 regex)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from webinfer.tokenizer import StreamDecoder

from .conftest import REFERENCE, TEXT_DIR, require


def test_metadata(smollm):
    assert smollm.model == "gpt2" and smollm.pre == "smollm"
    assert smollm.vocab_size == 49152
    assert (smollm.bos_id, smollm.eos_id, smollm.unk_id, smollm.pad_id) == (1, 2, 0, 2)
    assert smollm.add_bos is False and smollm.add_eos is False  # the GGUF says so
    assert smollm.eot_id == smollm.piece_to_id("<|im_end|>") == 2


def test_eog_ids(smollm):
    # llama.cpp's rule: eos, every token spelt like an end-of-turn token
    # (<|endoftext|>, <|im_end|>) and the FIM repo-name token (<reponame>).
    assert smollm.piece_to_id("<|im_end|>") in smollm.eog_ids
    assert {smollm.id_to_piece(i) for i in smollm.eog_ids} == {"<|endoftext|>", "<|im_end|>", "<reponame>"}
    assert smollm.is_eog(2) and not smollm.is_eog(1)


def test_plain_text(smollm):
    ids = smollm.encode("The capital of France is")
    assert ids == [504, 3575, 282, 4649, 314]
    assert [smollm.id_to_piece(i) for i in ids] == ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]
    assert smollm.decode(ids) == "The capital of France is"


def test_digits_are_split(smollm):
    ids = smollm.encode("In 2024, 12345 people")
    pieces = [smollm.id_to_piece(i) for i in ids]
    assert pieces == ["In", "Ġ", "2", "0", "2", "4", ",", "Ġ", "1", "2", "3", "4", "5", "Ġpeople"]


def test_chat_markup(smollm):
    text = "<|im_start|>user\nHi<|im_end|>"
    ids = smollm.encode(text, parse_special=True)
    assert ids == [1, 4093, 198, 26843, 2]
    assert smollm.decode(ids) == text
    assert smollm.decode(ids, skip_special=True) == "user\nHi"
    # without parse_special the markup is ordinary text
    plain = smollm.encode(text, parse_special=False)
    assert 1 not in plain and 2 not in plain
    assert plain[:7] == [44, 108, 306, 79, 3738, 108, 46]  # '<', '|', 'im', '_', 'start', '|', '>'
    assert smollm.decode(plain) == text


def test_special_tokens_split_text(smollm):
    ids = smollm.encode("a<|im_end|><|im_end|>b<|endoftext|>", parse_special=True)
    assert [smollm.id_to_piece(i) for i in ids] == ["a", "<|im_end|>", "<|im_end|>", "b", "<|endoftext|>"]


def test_token_bytes_and_pieces(smollm):
    assert smollm.token_bytes(198) == b"\n"
    assert smollm.token_bytes(314) == b" is"
    assert smollm.token_bytes(2) == b"<|im_end|>"
    assert smollm.piece_to_id("Ġis") == 314
    assert smollm.piece_to_id("no such token") is None
    assert smollm.is_special(2) and not smollm.is_special(314)
    # a byte-level token may be half a character
    ids = smollm.encode("é")
    assert b"".join(smollm.token_bytes(i) for i in ids) == "é".encode()


def test_matches_transformers_reference(smollm):
    """Prompts tokenized by HF transformers (tests/data/reference, made by
    scripts/reference_logits.py) tokenize the same here."""
    data = np.load(require(REFERENCE))
    i = 0
    while f"prompt{i}_text" in data.files:
        text = bytes(data[f"prompt{i}_text"]).decode("utf-8")
        assert smollm.encode(text, add_special=False, parse_special=True) == data[f"prompt{i}_ids"].tolist(), text
        i += 1
    assert i >= 3


def test_alice_token_count_and_speed(smollm):
    """alice29.txt (152089 bytes, ASCII, CRLF line ends kept) is 41933 tokens;
    HF tokenizers, configured as SmolLM2's tokenizer.json with this GGUF's
    vocabulary and merges, gives the same count.  Each CRLF is two tokens
    ("\\r", "\\n"): the \\s+(?!\\S) rule splits the pair."""
    raw = require(TEXT_DIR / "alice29.txt").read_bytes()
    text = raw.decode("utf-8")
    smollm._bpe._cache.clear()  # measure a cold start
    t0 = time.perf_counter()
    ids = smollm.encode(text, add_special=False)
    elapsed = time.perf_counter() - t0
    assert len(ids) == 41933
    assert smollm.decode(ids) == text
    # target is > 100 KB/s (about 2-3 MB/s on the dev machine); keep slack for slow CI
    assert len(raw) / elapsed > 100_000, f"{len(raw) / elapsed / 1000:.0f} KB/s"


def test_stream_decoding(smollm):
    text = "Der Bär 🐻 sagt: 你好!"
    ids = smollm.encode(text)
    dec = StreamDecoder(smollm)
    pieces = [dec.feed(i) for i in ids]
    assert "".join(pieces) + dec.flush() == text
    assert "" in pieces  # something was held back mid-character


@pytest.mark.parametrize("bad", [-1, 49152, 10**9])
def test_out_of_range_ids(smollm, bad):
    from webinfer.errors import TokenizerError

    with pytest.raises(TokenizerError, match="out of range"):
        smollm.decode([1, bad])
    with pytest.raises(TokenizerError):
        smollm.token_bytes(bad)
