"""The :class:`Tokenizer`: text <-> token ids for a GGUF's vocabulary.

Encoding follows llama.cpp's ``llama_tokenize`` step by step, because its
behaviour (not HuggingFace's) is what a GGUF's users expect and what the
reference vectors check:

1. cut the text at special tokens, longest first.  User-defined tokens are
   always cut out; control tokens only with ``parse_special``;
2. SentencePiece vocabularies: prefix each text piece that starts the text or
   follows a special token with a space (if ``add_space_prefix``), spell
   spaces as U+2581, merge by score;
   BPE vocabularies: pre-tokenize each text piece into words, merge each word;
3. ``add_special`` adds BOS/EOS as the metadata asks.

Decoding joins the tokens' bytes and decodes them as UTF-8 with replacement
characters, so a sequence cut inside a character never raises.
"""

from __future__ import annotations

import operator
from typing import Any, Iterable

from ..errors import TokenizerError
from . import vocab as V
from .bpe import BPE
from .chars import C_SPACE, byte_decode
from .pretokenize import get_pre_spec, get_splitter
from .spm import SPM

_SPACE = "\u2581"


class Tokenizer:
    """A tokenizer built from GGUF metadata (see :meth:`from_gguf_metadata`).

    Attributes: ``vocab_size``, ``bos_id``, ``eos_id``, ``eot_id``, ``eom_id``,
    ``unk_id``, ``pad_id`` (``None`` when absent), ``eog_ids`` (every token that
    ends generation, as llama.cpp determines it), ``add_bos``, ``add_eos``,
    ``add_space_prefix``, ``model`` (``tokenizer.ggml.model``), ``pre``.
    """

    def __init__(self, vocab: V.Vocab):
        self._v = vocab
        self.model = vocab.model
        self.pre = vocab.pre
        self.kind = vocab.kind
        self.vocab_size = len(vocab.tokens)
        ids = vocab.ids
        self.bos_id: int | None = ids.get("bos")
        self.eos_id: int | None = ids.get("eos")
        self.eot_id: int | None = ids.get("eot")
        self.eom_id: int | None = ids.get("eom")
        self.unk_id: int | None = ids.get("unk")
        self.pad_id: int | None = ids.get("pad")
        self.special_ids: dict[str, int | None] = dict(ids)
        self.eog_ids: set[int] = set(vocab.eog_ids)
        self.add_bos: bool = vocab.add_bos
        self.add_eos: bool = vocab.add_eos
        self.add_space_prefix: bool = vocab.add_space_prefix
        self._tokens = vocab.tokens
        self._attrs = vocab.attrs
        self._t2i = vocab.token_to_id

        specials = vocab.special_ids
        self._specials_all = [(i, self._tokens[i], self._attrs[i]) for i in specials]
        self._specials_text = [s for s in self._specials_all if not s[2] & (V.CONTROL | V.UNKNOWN)]

        if vocab.kind == V.SPM:
            self._spm = SPM(vocab.token_to_id, vocab.scores, unk_id=self.unk_id)
            self._bpe = None
            # the dummy prefix the encoder adds is taken off again when decoding
            self._strip_prefix = self.add_space_prefix
            self._escape = True
        else:
            spec = get_pre_spec(vocab.pre)
            self._spm = None
            self._bpe = BPE(vocab.token_to_id, vocab.merges, byte_encode=spec.byte_encode,
                            ignore_merges=spec.ignore_merges,
                            newline_words_whole=(spec.splitter == "newlines"))
            vocab.merges = []  # the ranks dict has them now
            self._split = get_splitter(spec.splitter)
            self._escape = spec.escape_whitespace
            self._strip_prefix = False
        self._byte_level = vocab.kind == V.BPE and self._bpe.byte_encode
        self._pieces: list[bytes | None] = [None] * self.vocab_size

    @classmethod
    def from_gguf_metadata(cls, metadata: dict[str, Any]) -> "Tokenizer":
        """Build the tokenizer described by a GGUF's ``tokenizer.*`` metadata.

        Raises :class:`~webinfer.errors.TokenizerError` for missing or malformed
        metadata and for tokenizer types webinfer does not implement.
        """
        return cls(V.load_vocab(metadata, get_pre_spec))

    # ------------------------------------------------------------------ encode

    def encode(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``.

        ``add_special``: add BOS/EOS where the model's metadata asks for them.
        ``parse_special``: turn the text of control tokens (``<|im_start|>``)
        into those tokens; otherwise it is encoded as plain text.
        User-defined tokens are always matched, as in llama.cpp.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, not {type(text).__name__}")
        out: list[int] = []
        if add_special and self.add_bos:
            out.append(self.bos_id)
        fragments = self._partition(text, parse_special) if text else []
        if self._spm is not None:
            spm = self._spm
            prev_special = True  # the text start counts as "after a special token"
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    prev_special = True
                    continue
                if self.add_space_prefix and prev_special:
                    frag = " " + frag
                out += spm.encode(frag.replace(" ", _SPACE))
                prev_special = False
        else:
            bpe = self._bpe
            cache = bpe._cache
            split = self._split
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    continue
                if self._escape:
                    frag = frag.replace(" ", _SPACE)
                for word in split(frag):
                    ids = cache.get(word)
                    if ids is None:
                        ids = bpe.encode_word(word)
                    out += ids
        if add_special and self.add_eos:
            out.append(self.eos_id)
        return out

    def _partition(self, text: str, parse_special: bool) -> list:
        """Cut ``text`` into str pieces and special token ids.

        Special tokens are searched longest first, each in every text piece
        left by the longer ones (llama.cpp's ``tokenizer_st_partition``).
        """
        frags: list = [text]
        for tid, tok, attr in (self._specials_all if parse_special else self._specials_text):
            if tok not in text:  # pieces are substrings of text
                continue
            new: list = []
            for frag in frags:
                if isinstance(frag, int) or tok not in frag:
                    new.append(frag)
                    continue
                pos = 0
                n = len(frag)
                while True:
                    k = frag.find(tok, pos)
                    if k < 0:
                        break
                    left = frag[pos:k]
                    if attr & V.LSTRIP:
                        left = left.rstrip(C_SPACE)
                    if left:
                        new.append(left)
                    new.append(tid)
                    pos = k + len(tok)
                    if attr & V.RSTRIP:
                        while pos < n and frag[pos] in C_SPACE:
                            pos += 1
                if pos < n:
                    new.append(frag[pos:])
            frags = new
        return frags

    # ------------------------------------------------------------------ decode

    def _check_id(self, tid: int) -> int:
        if type(tid) is not int:
            try:
                tid = operator.index(tid)  # numpy integers; not floats or strings
            except TypeError:
                raise TokenizerError(f"token id must be an integer, got {tid!r}") from None
        if not 0 <= tid < self.vocab_size:
            raise TokenizerError(f"token id {tid} is out of range (vocabulary has {self.vocab_size} tokens)")
        return tid

    def token_bytes(self, id: int) -> bytes:
        """The raw bytes token ``id`` stands for (one token may hold part of a
        UTF-8 character).  Control tokens give their text, e.g. b"<|im_end|>";
        unused/undefined tokens give b""."""
        id = self._check_id(id)
        piece = self._pieces[id]
        if piece is None:
            piece = self._pieces[id] = self._make_piece(id)
        return piece

    def _make_piece(self, tid: int) -> bytes:
        text = self._tokens[tid]
        attr = self._attrs[tid]
        if attr & (V.UNKNOWN | V.CONTROL | V.USER_DEFINED):
            return text.encode("utf-8", "surrogatepass")
        if attr & V.NORMAL:
            if self._byte_level:
                return byte_decode(text)
            return text.replace(_SPACE, " ").encode("utf-8", "surrogatepass")
        if attr & V.BYTE:
            # "<0xAB>"
            try:
                return bytes([int(text[3:5], 16)])
            except ValueError:
                return b""
        return b""  # unused / undefined tokens render as nothing (llama.cpp)

    def is_special(self, id: int) -> bool:
        """True for control and unknown tokens (those ``skip_special`` drops)."""
        return bool(self._attrs[self._check_id(id)] & (V.CONTROL | V.UNKNOWN))

    def is_eog(self, id: int) -> bool:
        return id in self.eog_ids

    def decode(self, ids: Iterable[int], *, skip_special: bool = False) -> str:
        """Text of ``ids``: their bytes joined, decoded as UTF-8 (invalid
        sequences become U+FFFD).

        ``skip_special`` drops control and unknown tokens (BOS, ``<|im_end|>``...).
        llama.cpp's optional clean-up of spaces before punctuation is not
        applied: the text is exactly the tokens' bytes.
        For SentencePiece vocabularies that add a dummy space prefix, one
        leading space of the first token is removed (after dropped special
        tokens), so ``decode(encode(s)) == s`` as in llama.cpp/HF.
        """
        ids = [self._check_id(t) for t in ids]
        attrs = self._attrs
        if skip_special:
            ids = [t for t in ids if not attrs[t] & (V.CONTROL | V.UNKNOWN)]
        parts = [self.token_bytes(t) for t in ids]
        if self._strip_prefix and parts and parts[0][:1] == b" " and not attrs[ids[0]] & (V.CONTROL | V.UNKNOWN):
            parts[0] = parts[0][1:]
        return b"".join(parts).decode("utf-8", "replace")

    # ------------------------------------------------------------------ pieces

    def id_to_piece(self, id: int) -> str:
        """The token's text as stored in the vocabulary (e.g. 'Ġthe', '▁the', '<0x0A>')."""
        return self._tokens[self._check_id(id)]

    def piece_to_id(self, s: str) -> int | None:
        """The id of the token whose vocabulary text is ``s``, or None."""
        return self._t2i.get(s)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"<Tokenizer {self.model}/{self.pre or 'default'} vocab={self.vocab_size} "
                f"bos={self.bos_id} eos={self.eos_id} eog={sorted(self.eog_ids)}>")
