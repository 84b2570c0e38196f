"""Incremental detokenization for streaming generated text.

One token can end in the middle of a UTF-8 character (byte-fallback and
byte-level vocabularies split emoji and CJK into several tokens), so text is
only released once its bytes form complete characters.
"""

from __future__ import annotations

import codecs

from .base import Tokenizer


class StreamDecoder:
    """Feed token ids one at a time, get back the text they complete.

    >>> dec = StreamDecoder(tok)
    >>> "".join(dec.feed(t) for t in ids) + dec.flush() == tok.decode(ids)

    ``skip_special`` drops control tokens (``<|im_end|>``...).
    ``strip_leading_space`` removes the SentencePiece dummy-prefix space from
    the first token, as :meth:`Tokenizer.decode` does for a whole sequence;
    leave it off when streaming a continuation of a prompt, where the first
    token's space is real (" Paris").
    Invalid UTF-8 becomes U+FFFD exactly as in ``bytes.decode(errors="replace")``.
    """

    def __init__(self, tokenizer: Tokenizer, *, skip_special: bool = False, strip_leading_space: bool = False):
        self.tokenizer = tokenizer
        self.skip_special = skip_special
        self._strip = strip_leading_space and tokenizer._strip_prefix
        self._first = True
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, id: int) -> str:
        """Add token ``id``; return the newly completed text (maybe '')."""
        tok = self.tokenizer
        special = tok.is_special(id)
        if special and self.skip_special:
            return ""
        data = tok.token_bytes(id)
        if self._first:
            self._first = False
            if self._strip and not special and data[:1] == b" ":
                data = data[1:]
        return self._dec.decode(data)

    def flush(self) -> str:
        """End of stream: return what is held back (an incomplete character
        becomes U+FFFD) and reset."""
        out = self._dec.decode(b"", final=True)
        self._dec.reset()
        self._first = True
        return out
