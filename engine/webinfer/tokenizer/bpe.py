"""Byte-pair encoding of single pre-tokenized words.

The merge order is llama.cpp's (and HuggingFace's): repeatedly merge the
adjacent pair with the lowest merge rank, the leftmost one on ties, one pair
at a time.  Results are cached per word, since natural text repeats words a
lot.
"""

from __future__ import annotations

import heapq

from .chars import byte_encode

_NO_RANK = 1 << 62
_CACHE_LIMIT = 200_000  # words; the cache is dropped wholesale past this


def merge_ranks(merges: list[str]) -> dict[str, int]:
    """``"a b" -> rank``; the first occurrence of a duplicate merge wins.

    Keys stay in the GGUF's ``"a b"`` spelling: the pair is looked up as
    ``left + " " + right``, which is unambiguous because symbols never contain
    a space (byte-level BPE spells it U+0120, SPM-style BPE U+2581).
    """
    # dict() keeps the last value for a repeated key: feed it reversed.
    n = len(merges)
    return dict(zip(reversed(merges), range(n - 1, -1, -1)))


_LONG_WORD = 48  # symbols; longer words use the heap version


def bpe_merge(symbols: list[str], ranks: dict[str, int]) -> list[str]:
    """Merge ``symbols`` in place by ``ranks`` and return them.

    Rescans the pair ranks after every merge, which is fastest for ordinary
    words (the scan is min() over a short list, in C); long words go to the
    O(n log n) heap version, which gives the same result.
    """
    n = len(symbols)
    if n < 2:
        return symbols
    if n > _LONG_WORD:
        return _bpe_merge_heap(symbols, ranks)
    get = ranks.get
    pair_rank = [get(symbols[i] + " " + symbols[i + 1], _NO_RANK) for i in range(n - 1)]
    while pair_rank:
        best = min(pair_rank)
        if best == _NO_RANK:
            break
        i = pair_rank.index(best)  # leftmost of the lowest rank
        merged = symbols[i] + symbols[i + 1]
        symbols[i] = merged
        del symbols[i + 1]
        del pair_rank[i]
        if i > 0:
            pair_rank[i - 1] = get(symbols[i - 1] + " " + merged, _NO_RANK)
        if i < len(pair_rank):
            pair_rank[i] = get(merged + " " + symbols[i + 1], _NO_RANK)
    return symbols


def _bpe_merge_heap(symbols: list[str], ranks: dict[str, int]) -> list[str]:
    """llama.cpp's algorithm: a heap of candidate pairs ordered by (rank,
    position); a popped pair is applied only if both sides are unchanged."""
    n = len(symbols)
    sym: list = list(symbols)       # None once merged into the left neighbour
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    get = ranks.get
    heap = []
    for i in range(n - 1):
        r = get(sym[i] + " " + sym[i + 1])
        if r is not None:
            heap.append((r, i, i + 1, sym[i], sym[i + 1]))
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        _, left, right, lt, rt = pop(heap)
        if sym[left] != lt or sym[right] != rt:
            continue  # outdated
        merged = lt + rt
        sym[left] = merged
        sym[right] = None
        r2 = nxt[right]
        nxt[left] = r2
        if r2 >= 0:
            prev[r2] = left
            r = get(merged + " " + sym[r2])
            if r is not None:
                push(heap, (r, left, r2, merged, sym[r2]))
        p = prev[left]
        if p >= 0:
            r = get(sym[p] + " " + merged)
            if r is not None:
                push(heap, (r, p, left, sym[p], merged))
    return [s for s in sym if s is not None]


class BPE:
    """Turns one pre-tokenized word into token ids.

    ``byte_encode``: symbols are the GPT-2 byte-level spelling of the word's
    UTF-8 (GPT-2, Llama-3, Qwen, ...); otherwise the word's own characters
    with ``<0xXX>`` byte tokens as fallback (Gemma 4).
    ``ignore_merges``: a word that is itself a token is emitted whole
    (Llama-3's tokenizer.json sets this).
    ``newline_words_whole``: a word made only of newlines that is a token is
    emitted whole (llama.cpp's Gemma 4 fix).
    """

    def __init__(self, token_to_id: dict[str, int], merges: list[str], *, byte_encode: bool = True,
                 ignore_merges: bool = False, newline_words_whole: bool = False):
        self.token_to_id = token_to_id
        self.ranks = merge_ranks(merges)
        self.byte_encode = byte_encode
        self.ignore_merges = ignore_merges
        self.newline_words_whole = newline_words_whole
        self._cache: dict[str, list[int]] = {}

    def encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            ids = self._encode_word(word)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = ids
        return ids

    def _encode_word(self, word: str) -> list[int]:
        vocab = self.token_to_id
        s = byte_encode(word) if self.byte_encode else word
        if self.ignore_merges or (self.newline_words_whole and not s.strip("\n")):
            tid = vocab.get(s)
            if tid is not None:
                return [tid]
        out: list[int] = []
        for sym in bpe_merge(list(s), self.ranks):
            tid = vocab.get(sym)
            if tid is not None:
                out.append(tid)
            elif self.byte_encode:
                # llama.cpp looks up each UTF-8 byte of the symbol as a
                # one-byte token; only ASCII bytes can match, others are
                # dropped (cannot happen with a complete byte alphabet).
                for ch in sym:
                    if ch < "\x80":
                        t = vocab.get(ch)
                        if t is not None:
                            out.append(t)
            else:
                for b in sym.encode("utf-8", "surrogatepass"):
                    t = vocab.get(f"<0x{b:02X}>")
                    if t is not None:
                        out.append(t)
        return out
