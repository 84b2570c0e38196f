"""decode(encode(s)) gives s back, for any Unicode text.

Byte-level BPE (the default model, Llama-3): exactly ``s``, provided every
byte of ``s``'s UTF-8 has a token.  Llama-3 has all 256; SmolLM2 lacks 21
(0x04 0x06 0x13 0x14 0x16 0x1D, 0xC0 0xC1 and 0xF1-0xFF, i.e. also every code
point from U+40000 up), whose bytes are dropped, as llama.cpp drops them.
SentencePiece (llama-spm): ``s`` with U+2581 read as a space, because the
vocabulary spells spaces with that character and cannot tell them apart.
The dummy space the SPM encoder puts in front is removed again by decode
(llama.cpp and HF do the same), so no leading/trailing space is lost or added.
In both cases with or without BOS/EOS (``skip_special=True`` drops them).

Also: streaming detokenization gives the same text as decoding at once.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings, strategies as st

from webinfer.tokenizer import StreamDecoder

# random text, plus text made of pieces that exercise the tricky paths:
# contractions, whitespace runs, digits, special-token look-alikes, the SPM
# space character, combining marks, emoji split over several tokens
PIECES = ["'s", "'LL", " ", "  ", "\n", "\r\n", "\t", "123", "4", "<|im_start|>", "<|im_end|>", "<s>", "</s>",
          "<|endoftext|>", "\u2581", "e\u0301", "🦙", "😶\u200d🌫️", "\u00a0", "\u3000", "Hello", " world", "中文"]
texts = st.text() | st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=15).map("".join)


def _representable(tok, s):
    """Every UTF-8 byte of s has a token (byte-level BPE vocabularies may lack some)."""
    if tok.kind == "spm":
        return True  # byte fallback tokens <0x00>..<0xFF> are all there
    if not hasattr(tok, "_test_bytes"):
        from webinfer.tokenizer.chars import BYTE_TO_UNICODE

        tok._test_bytes = {b for b in range(256) if tok.piece_to_id(BYTE_TO_UNICODE[b]) is not None}
    return set(s.encode("utf-8")) <= tok._test_bytes


def _expected(tok, s):
    return s.replace("\u2581", " ") if tok.kind == "spm" else s


@pytest.mark.parametrize("fixture", ["smollm", "llama_bpe", "llama_spm"])
@settings(max_examples=150)
@given(s=texts)
def test_roundtrip(fixture, s, request):
    tok = request.getfixturevalue(fixture)
    assume(_representable(tok, s))
    assert tok.decode(tok.encode(s, add_special=False)) == _expected(tok, s)
    assert tok.decode(tok.encode(s, add_special=True), skip_special=True) == _expected(tok, s)


@pytest.mark.parametrize("fixture", ["smollm", "llama_spm"])
@settings(max_examples=100)
@given(s=texts)
def test_roundtrip_parse_special(fixture, s, request):
    """With parse_special, control-token text becomes the token, and is
    rendered back as its text when special tokens are not skipped."""
    tok = request.getfixturevalue(fixture)
    assume(_representable(tok, s))
    ids = tok.encode(s, add_special=False, parse_special=True)
    if tok.kind == "spm":
        # SPM puts a space before every text run that follows a special token
        # (llama.cpp does), so only the text between them survives exactly
        assert tok.decode(ids).replace(" ", "") == s.replace("\u2581", " ").replace(" ", "")
    else:
        assert tok.decode(ids) == s


@pytest.mark.parametrize("fixture", ["smollm", "llama_spm"])
@settings(max_examples=150)
@given(data=st.data())
def test_stream_decoder_matches_decode(fixture, data, request):
    tok = request.getfixturevalue(fixture)
    # any ids at all, including byte tokens that cut UTF-8 characters apart
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=30)
                    | texts.map(lambda s: tok.encode(s, add_special=False)))
    skip = data.draw(st.booleans())
    dec = StreamDecoder(tok, skip_special=skip, strip_leading_space=True)
    streamed = "".join(dec.feed(i) for i in ids) + dec.flush()
    assert streamed == tok.decode(ids, skip_special=skip)


def test_stream_decoder_holds_back_partial_characters(smollm):
    ids = smollm.encode("🦙!", add_special=False)
    assert len(ids) > 2  # the emoji is split over byte-level tokens
    dec = StreamDecoder(smollm)
    outs = [dec.feed(i) for i in ids]
    assert outs[:-2] == [""] * (len(ids) - 2) and outs[-2] == "🦙" and outs[-1] == "!"
    assert dec.flush() == ""
    # an unfinished character comes out as U+FFFD at the end
    dec.feed(ids[0])
    assert dec.flush() == "\ufffd"


def test_stream_decoder_spm_space(llama_spm):
    ids = llama_spm.encode("The capital is Paris", add_special=False)
    cont = StreamDecoder(llama_spm)  # a continuation keeps its spaces
    assert "".join(cont.feed(i) for i in ids[1:]) + cont.flush() == " capital is Paris"
    whole = StreamDecoder(llama_spm, strip_leading_space=True)
    assert "".join(whole.feed(i) for i in ids) + whole.flush() == "The capital is Paris"
