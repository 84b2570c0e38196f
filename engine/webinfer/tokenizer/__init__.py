"""Tokenizers built from GGUF metadata, in pure Python (stdlib + numpy).

SentencePiece-style ("llama") and byte-level BPE ("gpt2", "gemma4")
vocabularies, with llama.cpp's pre-tokenizer rules for each
``tokenizer.ggml.pre``; checked against llama.cpp's tokenizer test vectors.

    from webinfer.formats.gguf import GGUFFile
    from webinfer.tokenizer import Tokenizer
    tok = Tokenizer.from_gguf_metadata(GGUFFile.open(path).metadata)
    ids = tok.encode("Hello", add_special=True)
"""

from .base import Tokenizer
from .stream import StreamDecoder

__all__ = ["Tokenizer", "StreamDecoder"]
