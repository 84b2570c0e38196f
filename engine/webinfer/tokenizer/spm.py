"""SentencePiece-style BPE ("llama" vocabularies) with scores and byte fallback.

As in llama.cpp's ``llm_tokenizer_spm``: start from single characters and keep
merging the adjacent pair whose concatenation is a token with the highest
score (leftmost on ties); characters left over that are not tokens are emitted
as ``<0xXX>`` byte tokens.  The caller has already replaced spaces by U+2581
and added the dummy prefix.

There is no pre-tokenization, so a whole text would be one merge problem.  To
make caching possible we cut it where no merge can ever cross: between two
characters ``a``, ``b`` such that no token contains ``a + b`` (a merge across
that point would produce a token containing it).  Merges on the two sides are
then independent and the result is identical to merging the whole text.
"""

from __future__ import annotations

import heapq
import re

from ..errors import TokenizerError

_CACHE_LIMIT = 100_000
_SPACE = "\u2581"


class SPM:
    def __init__(self, token_to_id: dict[str, int], scores: list[float], *, unk_id: int | None):
        self.token_to_id = token_to_id
        self.scores = scores
        self.unk_id = unk_id
        self._byte_ids: dict[int, int] = {}
        self._cache: dict[str, list[int]] = {}
        self._splitter = self._make_splitter()

    # ------------------------------------------------------------ chunking

    def _make_splitter(self):
        # Characters x for which some token contains x + U+2581: a cut before
        # U+2581 is safe unless preceded by one of them (or by U+2581).
        before_space = {_SPACE}
        for tok in self.token_to_id:
            i = tok.find(_SPACE, 1)
            while i > 0:
                before_space.add(tok[i - 1])
                i = tok.find(_SPACE, i + 1)
        cls = "".join(re.escape(c) for c in sorted(before_space))
        return re.compile(f"(?<=[^{cls}])(?={_SPACE})").split

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (already whitespace-escaped)."""
        out: list[int] = []
        cache = self._cache
        for chunk in self._splitter(text):
            if not chunk:
                continue
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[chunk] = ids
            out.extend(ids)
        return out

    # ------------------------------------------------------------ merging

    def _encode_chunk(self, s: str) -> list[int]:
        vocab = self.token_to_id
        scores = self.scores
        n_chars = len(s)
        # symbol i covers s[i : i + size[i]]; size 0 = merged into its left
        size = [1] * n_chars
        prev = list(range(-1, n_chars - 1))
        nxt = list(range(1, n_chars + 1))
        nxt[-1] = -1
        heap = []
        for i in range(n_chars - 1):
            tid = vocab.get(s[i : i + 2])
            if tid is not None:
                heap.append((-scores[tid], i, i + 1, 2))
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        while heap:
            _, left, right, n = pop(heap)
            sl, sr = size[left], size[right]
            if sl == 0 or sr == 0 or sl + sr != n:
                continue  # stale: one side has changed since
            size[left] = n
            size[right] = 0
            r2 = nxt[right]
            nxt[left] = r2
            if r2 >= 0:
                prev[r2] = left
            p = prev[left]
            if p >= 0:
                m = size[p] + n
                tid = vocab.get(s[p : p + m])
                if tid is not None:
                    push(heap, (-scores[tid], p, left, m))
            if r2 >= 0:
                m = n + size[r2]
                tid = vocab.get(s[left : left + m])
                if tid is not None:
                    push(heap, (-scores[tid], left, r2, m))
        out: list[int] = []
        i = 0
        while i != -1:
            piece = s[i : i + size[i]]
            tid = vocab.get(piece)
            if tid is not None:
                out.append(tid)
            else:
                for b in piece.encode("utf-8", "surrogatepass"):
                    out.append(self.byte_token(b))
            i = nxt[i]
        return out

    def byte_token(self, b: int) -> int:
        tid = self._byte_ids.get(b)
        if tid is None:
            tid = self.token_to_id.get(f"<0x{b:02X}>")
            if tid is None:
                tid = self.token_to_id.get(chr(b)) if b < 0x80 else None
            if tid is None:
                if self.unk_id is None:
                    raise TokenizerError(
                        f"the vocabulary has no byte token <0x{b:02X}> and no unknown token; "
                        "it cannot encode this text"
                    )
                tid = self.unk_id
            self._byte_ids[b] = tid
        return tid
