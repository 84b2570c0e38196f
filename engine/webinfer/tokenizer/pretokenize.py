"""Pre-tokenizers: split text into the "words" that BPE then merges within.

Each GGUF names its split rules with ``tokenizer.ggml.pre``.  llama.cpp maps
every name to a list of regexes that are applied one after the other; each
regex cuts every current piece into its matches and the gaps between them
(HuggingFace's ``Split(behavior="Isolated")``).  We mirror that:

* the big GPT-2 / Llama-3 / Qwen-2 style regexes are hand-written scanners
  (``_scan_*``) over the text and its class string (see :mod:`.chars`), written
  after llama.cpp's own hand-written versions, whose quirks the reference
  vectors encode (e.g. ``\\s+(?!\\S)`` only counts whitespace *inside* the
  current piece);
* small regexes without a scanner in llama.cpp run, as there, on a "collapsed"
  text where each non-ASCII code point is replaced by one byte naming its
  class, so plain ``re`` can run them exactly.

A split is computed as a list of cut offsets: the end of every piece, in order.
:func:`get_pretokenizer` returns a function ``text -> list[str]``.
"""

from __future__ import annotations

import re
from typing import Callable

from ..errors import TokenizerError
from .chars import RE_SPACE, class_string, collapsed_string, wide_string

Splitter = Callable[[str], "list[str]"]

# runs over class strings (pattern.match(cls, pos, endpos))
_L_RUN = re.compile("L+").match
_N_RUN = re.compile("N+").match
_WS_RUN = re.compile("W+").match
_NOT_WLN_RUN = re.compile("[^WLN]+").match
_LM_RUN = re.compile("[LM]+").match
_NOT_WLMN_RUN = re.compile("[^WLMN]+").match

_CONTR2 = frozenset("stmd")
_CONTR3 = frozenset(("re", "ve", "ll"))
_CONTR2_CI = frozenset("stmdSTMD")
_CONTR3_CI = frozenset(a + b for x in ("re", "ve", "ll") for a in (x[0], x[0].upper()) for b in (x[1], x[1].upper()))


# ------------------------------------------------------------------ scanners
#
# A scanner splits text[start:end] and appends the end offset of each piece to
# ``cuts``.  Lookahead never goes past ``end``: llama.cpp scans each piece of
# the previous stage on its own.


def _scan_gpt2(text: str, cls: str, start: int, end: int, cuts: list) -> None:
    """'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"""
    append = cuts.append
    pos = start
    while pos < end:
        ch = text[pos]
        if ch == "'" and pos + 1 < end:
            if text[pos + 1] in _CONTR2:
                pos += 2
                append(pos)
                continue
            if pos + 2 < end and text[pos + 1 : pos + 3] in _CONTR3:
                pos += 3
                append(pos)
                continue
        if ch == " ":
            q = pos + 1
            if q == end:  # a lone trailing space
                append(q)
                return
            c = cls[q]
        else:
            q = pos
            c = cls[pos]
        if c == "L":
            pos = _L_RUN(cls, q, end).end()
        elif c == "N":
            pos = _N_RUN(cls, q, end).end()
        elif c != "W":
            pos = _NOT_WLN_RUN(cls, q, end).end()
        else:
            # \s+(?!\S): a run of 2+ whitespace followed by more text leaves its
            # last character to start the next piece (" word")
            e = _WS_RUN(cls, pos, end).end()
            if e - pos > 1 and e < end:
                e -= 1
            pos = e
        append(pos)


def _make_scan_llama3(max_digits: int, marks: bool):
    """Scanner for the Llama-3 family regex

    ``(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,k}|
    ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+``

    with k = ``max_digits`` (3 for Llama-3, 1 for Qwen-2).  With ``marks``
    (Qwen-3.5) \\p{M} joins \\p{L} in the letter runs and leaves the
    punctuation class.
    """
    letter_run = _LM_RUN if marks else _L_RUN
    other_run = _NOT_WLMN_RUN if marks else _NOT_WLN_RUN
    letters = "LM" if marks else "L"
    not_other = "WLMN" if marks else "WLN"

    def scan(text: str, cls: str, start: int, end: int, cuts: list) -> None:
        append = cuts.append
        pos = start
        while pos < end:
            ch = text[pos]
            c = cls[pos]
            if ch == "'" and pos + 1 < end:
                if text[pos + 1] in _CONTR2_CI:
                    pos += 2
                    append(pos)
                    continue
                if pos + 2 < end and text[pos + 1 : pos + 3] in _CONTR3_CI:
                    pos += 3
                    append(pos)
                    continue
            # [^\r\n\p{L}\p{N}]?\p{L}+
            if c in letters:
                pos = letter_run(cls, pos, end).end()
                append(pos)
                continue
            if c != "N" and ch != "\r" and ch != "\n" and pos + 1 < end and cls[pos + 1] in letters:
                pos = letter_run(cls, pos + 1, end).end()
                append(pos)
                continue
            # \p{N}{1,k}
            if c == "N":
                e = _N_RUN(cls, pos, end).end()
                while pos < e:
                    pos = min(pos + max_digits, e)
                    append(pos)
                continue
            # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            if ch == " ":
                q = pos + 1
                if q == end:
                    append(q)
                    return
                c2 = cls[q]
            else:
                q = pos
                c2 = c
            if c2 not in not_other:
                e = other_run(cls, q, end).end()
                while e < end and (text[e] == "\n" or text[e] == "\r"):
                    e += 1
                pos = e
                append(pos)
                continue
            # whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
            e = _WS_RUN(cls, pos, end).end()
            run = text[pos:e]
            k = max(run.rfind("\n"), run.rfind("\r"))
            if k >= 0:
                e = pos + k + 1
            elif e - pos > 1 and e < end:
                e -= 1
            pos = e
            append(pos)

    return scan


_scan_llama3 = _make_scan_llama3(3, False)
_scan_qwen2 = _make_scan_llama3(1, False)
_scan_qwen35 = _make_scan_llama3(1, True)


# ------------------------------------------------------------------ pipelines


class _Text:
    """A text and its lazily computed class / collapsed / wide strings."""

    __slots__ = ("text", "_cls", "_col", "_wide")

    def __init__(self, text: str):
        self.text = text
        self._cls = self._col = self._wide = None

    @property
    def cls(self) -> str:
        if self._cls is None:
            self._cls = class_string(self.text)
        return self._cls

    @property
    def collapsed(self) -> str:
        if self._col is None:
            self._col = collapsed_string(self.text)
        return self._col

    @property
    def wide(self) -> str:
        if self._wide is None:
            self._wide = wide_string(self.text)
        return self._wide


def _scanner_stage(scan):
    def stage(t: _Text, cuts: list) -> list:
        text, cls = t.text, t.cls
        out: list = []
        prev = 0
        for e in cuts:
            scan(text, cls, prev, e, out)
            prev = e
        return out

    return stage


def _regex_stage(pattern: str, source: str):
    """Isolate the matches of ``pattern`` (run on the collapsed or wide text)."""
    finditer = re.compile(pattern).finditer

    def stage(t: _Text, cuts: list) -> list:
        src = t.collapsed if source == "collapsed" else t.wide
        out: list = []
        append = out.append
        prev = 0
        for e in cuts:
            p = prev
            for m in finditer(src, prev, e):
                s, me = m.span()
                if s > p:
                    append(s)
                append(me)
                p = me
            if p < e:
                append(e)
            prev = e
        return out

    return stage


def _pipeline(*stages) -> Splitter:
    def split(text: str) -> list[str]:
        if not text:
            return []
        t = _Text(text)
        cuts = [len(text)]
        for stage in stages:
            cuts = stage(t, cuts)
        prev = 0
        words = []
        for e in cuts:
            words.append(text[prev:e])
            prev = e
        return words

    return split


def _single_scanner(scan) -> Splitter:
    """Fast path for sets that are one scanner over the whole text."""

    def split(text: str) -> list[str]:
        if not text:
            return []
        cuts: list = []
        scan(text, class_string(text), 0, len(text), cuts)
        prev = 0
        words = []
        for e in cuts:
            words.append(text[prev:e])
            prev = e
        return words

    return split


_N_CHAR = re.compile("N").finditer


def _split_starcoder(text: str) -> list[str]:
    """["\\p{N}", gpt2]: every digit alone, GPT-2 rules in between.

    Used by starcoder, refact, command-r, smollm, codeshell, exaone, minerva.
    """
    if not text:
        return []
    cls = class_string(text)
    n = len(text)
    cuts: list = []
    prev = 0
    for m in _N_CHAR(cls):
        s = m.start()
        if s > prev:
            _scan_gpt2(text, cls, prev, s, cuts)
        prev = s + 1
        cuts.append(prev)
    if prev < n:
        _scan_gpt2(text, cls, prev, n, cuts)
    words = []
    prev = 0
    for e in cuts:
        words.append(text[prev:e])
        prev = e
    return words


# Regexes of llama.cpp's std::regex sets, rewritten for the collapsed text
# (\p{N} -> [\xd1 0-9], \p{L} -> [\xd2 A-Za-z], \p{P} -> [\xd3 + ASCII punct.])
_P_N = "[\\xd10-9]"
_P_L = "[\\xd2A-Za-z]"
_P_P_INNER = "\\xd3!-#%-*,-/:-;?-@\\[-\\]_{}"
_P_P = "[" + _P_P_INNER + "]"

_DEEPSEEK_LETTERS = (
    "A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
    "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481"
    "\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf"
    "\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d"
    "\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4"
    "\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d"
    "\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17"
    "\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb"
    "\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943"
)
_DEEPSEEK_PUNCT = "!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002"
_DEEPSEEK_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"

_split_gpt2 = _single_scanner(_scan_gpt2)
_split_llama3 = _single_scanner(_scan_llama3)
_split_qwen2 = _single_scanner(_scan_qwen2)
_split_qwen35 = _single_scanner(_scan_qwen35)

_split_falcon = _pipeline(
    _regex_stage("[" + _P_P_INNER + "$+<=>^~|`]+", "collapsed"),
    _scanner_stage(_scan_gpt2),
    _regex_stage("[0-9][0-9][0-9]", "wide"),
)

_split_default = _pipeline(
    _regex_stage("[" + _P_P_INNER + "$+<=>^~|]+", "collapsed"),
    _scanner_stage(_scan_gpt2),
    _regex_stage(_P_N + "+", "collapsed"),
    _regex_stage("[0-9][0-9][0-9]", "wide"),
)

_split_deepseek_llm = _pipeline(
    _regex_stage("[\r\n]", "wide"),
    _regex_stage(RE_SPACE + "?[" + _DEEPSEEK_LETTERS + "]+", "wide"),
    _regex_stage(RE_SPACE + "?[" + _DEEPSEEK_PUNCT + "]+", "wide"),
    _regex_stage(RE_SPACE + "+\\Z", "wide"),
    _regex_stage(_DEEPSEEK_CJK, "wide"),
    _regex_stage(_P_N + "+", "collapsed"),
)

_split_deepseek_coder = _pipeline(
    _regex_stage("[\r\n]", "wide"),
    _regex_stage(RE_SPACE + "?" + _P_L + "+", "collapsed"),
    _regex_stage(RE_SPACE + "?" + _P_P + "+", "collapsed"),
    _regex_stage(_DEEPSEEK_CJK, "wide"),
    _regex_stage(_P_N, "collapsed"),
)

_NEWLINE_RUNS = re.compile("\n+|[^\n]+").findall


def _split_newlines(text: str) -> list[str]:
    """[^\\n]+|[\\n]+ (Gemma 4: BPE runs over whole lines)."""
    return _NEWLINE_RUNS(text)


# name -> splitter.  These are llama.cpp's regex sets, named after a model
# that uses them.
SPLITTERS: dict[str, Splitter] = {
    "gpt2": _split_gpt2,
    "llama3": _split_llama3,
    "qwen2": _split_qwen2,
    "qwen35": _split_qwen35,
    "starcoder": _split_starcoder,
    "falcon": _split_falcon,
    "deepseek-llm": _split_deepseek_llm,
    "deepseek-coder": _split_deepseek_coder,
    "default": _split_default,
    "newlines": _split_newlines,
}


class PreSpec:
    """What a ``tokenizer.ggml.pre`` value means (after llama.cpp's table)."""

    __slots__ = ("splitter", "ignore_merges", "add_bos", "force_bos", "no_bos", "escape_whitespace", "byte_encode")

    def __init__(self, splitter: str, *, ignore_merges=False, add_bos=False, force_bos=False, no_bos=False,
                 escape_whitespace=False, byte_encode=True):
        self.splitter = splitter
        self.ignore_merges = ignore_merges  # a word that is a token is taken whole
        self.add_bos = add_bos              # default for add_bos_token when the GGUF lacks it
        self.force_bos = force_bos          # add BOS whatever the GGUF says (llama.cpp's Gemma 4 workaround)
        self.no_bos = no_bos                # the model has no BOS token
        self.escape_whitespace = escape_whitespace  # " " -> U+2581 before splitting
        self.byte_encode = byte_encode      # GPT-2 byte-level alphabet


def _specs() -> dict[str, PreSpec]:
    s: dict[str, PreSpec] = {}

    def add(names, splitter, **kw):
        for n in names.split():
            s[n] = PreSpec(splitter, **kw)

    add("default", "default")
    add("llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano",
        "llama3", ignore_merges=True, add_bos=True)
    add("dbrx smaug-bpe", "llama3")
    add("chatglm-bpe", "llama3", no_bos=True)
    add("glm4 glm5", "llama3", no_bos=True, ignore_merges=True)
    add("deepseek-llm", "deepseek-llm")
    add("deepseek-coder", "deepseek-coder")
    add("falcon", "falcon")
    add("gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert "
        "jina-v1-en jina-v2-code roberta-bpe mpt olmo jais trillion granite-docling exaone4", "gpt2")
    add("starcoder refact command-r smollm codeshell exaone minerva-7b mellum2", "starcoder")
    add("qwen2 deepseek-r1-qwen kormo f2llmv2 stablelm2 hunyuan solar-open grok-2 megrez", "qwen2")
    add("qwen35", "qwen35")
    add("gemma4 granite-embed-multi-311m", "newlines", escape_whitespace=True, byte_encode=False,
        add_bos=True, force_bos=True)
    return s


PRE_SPECS: dict[str, PreSpec] = _specs()


def get_pre_spec(pre: str | None) -> PreSpec:
    """The split rules for a ``tokenizer.ggml.pre`` value (None/'' -> 'default')."""
    if not pre:
        return PRE_SPECS["default"]
    spec = PRE_SPECS.get(pre)
    if spec is None:
        raise TokenizerError(
            f"unsupported pre-tokenizer {pre!r} (tokenizer.ggml.pre); supported: "
            + ", ".join(sorted(PRE_SPECS))
        )
    return spec


def get_splitter(name: str) -> Splitter:
    return SPLITTERS[name]
