"""Bad or unsupported metadata, bad ids, and the special-token mechanics,
on small vocabularies built in the test (no model files needed)."""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.errors import TokenizerError
from webinfer.tokenizer import Tokenizer
from webinfer.tokenizer.chars import BYTE_TO_UNICODE

from .conftest import load_metadata, vocab_path


def tiny_bpe(**over) -> dict:
    """A byte-level BPE vocabulary: 256 byte tokens, a few merges, specials."""
    tokens = list(BYTE_TO_UNICODE) + ["he", "ll", "hell", "hello", "Ġw", "Ġwo", "<|end|>", "<|user|>", "<mask>"]
    types = [1] * (len(tokens) - 3) + [3, 3, 4]
    md = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array(types, dtype=np.int32),
        "tokenizer.ggml.merges": ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"],
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": len(tokens) - 3,
    }
    md.update(over)
    return {k: v for k, v in md.items() if v is not None}


def tiny_spm(**over) -> dict:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁", "h", "i", "▁h", "▁hi", "hi"]
    types = [2, 3, 3] + [6] * 256 + [1] * 6
    scores = [0.0] * 259 + [-1.0, -2.0, -2.0, -1.5, -0.5, -3.0]
    md = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array(types, dtype=np.int32),
        "tokenizer.ggml.scores": np.array(scores, dtype=np.float32),
    }
    md.update(over)
    return {k: v for k, v in md.items() if v is not None}


# ----------------------------------------------------------------- metadata


@pytest.mark.parametrize("md,match", [
    ({}, "tokenizer.ggml.model"),
    ({"tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": ["a"]}, "unsupported tokenizer model 'bert'"),
    ({"tokenizer.ggml.model": "t5", "tokenizer.ggml.tokens": ["a"]}, "unsupported tokenizer model 't5'"),
    ({"tokenizer.ggml.model": 3}, "must be a string"),
    (tiny_bpe(**{"tokenizer.ggml.pre": "tekken"}), "unsupported pre-tokenizer 'tekken'"),
    (tiny_bpe(**{"tokenizer.ggml.merges": None}), "merges"),
    (tiny_bpe(**{"tokenizer.ggml.tokens": None}), "tokenizer.ggml.tokens"),
    (tiny_bpe(**{"tokenizer.ggml.tokens": [1, 2, 3]}), "array of strings"),
    (tiny_bpe(**{"tokenizer.ggml.tokens": []}), "empty"),
    (tiny_bpe(**{"tokenizer.ggml.token_type": np.array([1, 1], dtype=np.int32)}), "2 entries"),
    (tiny_spm(**{"tokenizer.ggml.scores": np.zeros(3, dtype=np.float32)}), "scores"),
    (tiny_bpe(**{"tokenizer.ggml.add_bos_token": "yes"}), "must be a bool"),
    (tiny_bpe(**{"tokenizer.ggml.bos_token_id": "x"}), "must be an integer"),
    (tiny_bpe(**{"tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.bos_token_id": None,
                 "tokenizer.ggml.pre": "chatglm-bpe"}), "BOS"),
])
def test_bad_metadata(md, match):
    with pytest.raises(TokenizerError, match=match):
        Tokenizer.from_gguf_metadata(md)


def test_error_is_value_error():
    assert issubclass(TokenizerError, ValueError)
    with pytest.raises(ValueError):
        Tokenizer.from_gguf_metadata({"tokenizer.ggml.model": "rwkv", "tokenizer.ggml.tokens": ["a"]})


@pytest.mark.parametrize("name", ["bert-bge", "nomic-bert-moe"])
def test_unsupported_real_vocabularies(name):
    """WordPiece (BERT) and Unigram (T5) vocabularies are not implemented."""
    with pytest.raises(TokenizerError, match="unsupported tokenizer model"):
        Tokenizer.from_gguf_metadata(load_metadata(vocab_path(name)))


def test_bad_arguments():
    tok = Tokenizer.from_gguf_metadata(tiny_bpe())
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(TokenizerError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(TokenizerError, match="integer"):
        tok.decode(["a"])
    with pytest.raises(TokenizerError):
        tok.id_to_piece(-1)
    assert tok.decode(np.array([256, 257], dtype=np.int64)) == "hell"
    with pytest.raises(TokenizerError, match="integer"):
        tok.decode([1.0])


def test_out_of_range_special_ids_are_ignored():
    tok = Tokenizer.from_gguf_metadata(tiny_bpe(**{"tokenizer.ggml.eot_token_id": 10**6}))
    assert tok.eot_id == tok.piece_to_id("<|end|>")  # guessed from the text instead


# ----------------------------------------------------------------- mechanics


def test_tiny_bpe():
    tok = Tokenizer.from_gguf_metadata(tiny_bpe())
    ids = tok.encode("hello wo")
    assert [tok.id_to_piece(i) for i in ids] == ["hello", "Ġwo"]
    assert tok.decode(ids) == "hello wo"
    assert tok.add_bos is False
    assert tok.eog_ids == {tok.piece_to_id("<|end|>")}  # eos, also spelt like an end-of-turn token


def test_parse_special_and_user_defined():
    tok = Tokenizer.from_gguf_metadata(tiny_bpe())
    end, user, mask = (tok.piece_to_id(t) for t in ("<|end|>", "<|user|>", "<mask>"))
    # control tokens only with parse_special; user-defined tokens always
    assert end not in tok.encode("a<|end|>b")
    assert tok.encode("a<|end|>b", parse_special=True)[1] == end
    assert tok.encode("a<mask>b")[1] == mask
    assert tok.decode(tok.encode("<|user|>hi<|end|>", parse_special=True), skip_special=True) == "hi"


def test_lstrip_attribute_from_model_name():
    # llama.cpp gives <mask> lstrip for jina-v2 vocabularies: spaces before it go
    tok = Tokenizer.from_gguf_metadata(tiny_bpe(**{"tokenizer.ggml.pre": "jina-v2-es"}))
    mask = tok.piece_to_id("<mask>")
    assert tok.encode("he  <mask>") == tok.encode("he") + [mask]


def test_rstrip_for_phi3():
    # ... and rstrip to Phi-3's special tokens: spaces after them go
    tok = Tokenizer.from_gguf_metadata(tiny_bpe(**{"general.name": "Phi3 mini"}))
    user = tok.piece_to_id("<|user|>")
    assert tok.encode("<|user|>  he", parse_special=True) == [user] + tok.encode("he")


def test_tiny_spm():
    tok = Tokenizer.from_gguf_metadata(tiny_spm())
    assert (tok.bos_id, tok.eos_id, tok.unk_id, tok.add_bos, tok.add_space_prefix) == (1, 2, 0, True, True)
    ids = tok.encode("hi hi")
    assert [tok.id_to_piece(i) for i in ids] == ["<s>", "▁hi", "▁hi"]
    assert tok.decode(ids) == "<s> hi hi"
    assert tok.decode(ids, skip_special=True) == "hi hi"
    # byte fallback for characters without a token
    ids = tok.encode("é", add_special=False)
    assert [tok.id_to_piece(i) for i in ids] == ["▁", "<0xC3>", "<0xA9>"]
    assert tok.decode(ids) == "é"
    # text after a special token gets the dummy space again (llama.cpp)
    assert tok.encode("<s>hi", parse_special=True, add_special=False) == [1, tok.piece_to_id("▁hi")]


def test_spm_without_scores_or_types():
    tok = Tokenizer.from_gguf_metadata(tiny_spm(**{"tokenizer.ggml.scores": None, "tokenizer.ggml.token_type": None}))
    assert tok.decode(tok.encode("hi", add_special=False)) == "hi"
