"""Reading a vocabulary out of GGUF metadata, the way llama.cpp does.

Besides the token list this decides the per-token attributes (control,
user-defined, byte, ...), the special token ids and the end-of-generation set,
including llama.cpp's guesses from token texts for GGUFs that do not say
(``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>`` ...).  Matching llama.cpp
matters: the same GGUF must stop generating at the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TokenizerError

# token attributes (bit flags, as llama.cpp's llama_token_attr)
UNDEFINED = 0
UNKNOWN = 1 << 0
UNUSED = 1 << 1
NORMAL = 1 << 2
CONTROL = 1 << 3
USER_DEFINED = 1 << 4
BYTE = 1 << 5
LSTRIP = 1 << 7
RSTRIP = 1 << 8

# GGUF tokenizer.ggml.token_type values -> attributes
_TYPE_TO_ATTR = {1: NORMAL, 2: UNKNOWN, 3: CONTROL, 4: USER_DEFINED, 5: UNUSED, 6: BYTE}

SPM, BPE = "spm", "bpe"

# Token texts that llama.cpp takes for end-of-turn when the GGUF names none,
# in our order of preference (llama.cpp takes whichever its hash map yields
# first).
_EOT_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\uff5cend\u2581of\u2581sentence\uff5c>", "<end_of_utterance>",
)
_EOM_TEXTS = ("<|eom_id|>",)
_FIM_TEXTS = {
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uff5cfim\u2581begin\uff5c>", "<PRE>",
                "\u2581<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uff5cfim\u2581hole\uff5c>", "<SUF>",
                "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uff5cfim\u2581end\uff5c>", "<MID>",
                "\u2581<MID>", "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
# Texts of tokens that end generation (llama.cpp's list).
_EOG_TEXTS = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[",
))

_ID_KEYS = {
    "bos": "tokenizer.ggml.bos_token_id",
    "eos": "tokenizer.ggml.eos_token_id",
    "eot": "tokenizer.ggml.eot_token_id",
    "eom": "tokenizer.ggml.eom_token_id",
    "unk": "tokenizer.ggml.unknown_token_id",
    "sep": "tokenizer.ggml.seperator_token_id",  # sic: the GGUF key is misspelt
    "pad": "tokenizer.ggml.padding_token_id",
    "mask": "tokenizer.ggml.mask_token_id",
    "fim_pre": "tokenizer.ggml.fim_pre_token_id",
    "fim_suf": "tokenizer.ggml.fim_suf_token_id",
    "fim_mid": "tokenizer.ggml.fim_mid_token_id",
    "fim_pad": "tokenizer.ggml.fim_pad_token_id",
    "fim_rep": "tokenizer.ggml.fim_rep_token_id",
    "fim_sep": "tokenizer.ggml.fim_sep_token_id",
}
_DEPRECATED_FIM_KEYS = {
    "fim_pre": "tokenizer.ggml.prefix_token_id",
    "fim_suf": "tokenizer.ggml.suffix_token_id",
    "fim_mid": "tokenizer.ggml.middle_token_id",
}


@dataclass
class Vocab:
    kind: str                      # SPM or BPE
    model: str                     # tokenizer.ggml.model
    pre: str | None                # tokenizer.ggml.pre
    tokens: list[str]
    attrs: list[int]
    scores: list[float]
    token_to_id: dict[str, int]
    merges: list[str]
    ids: dict[str, int | None]     # bos, eos, eot, eom, unk, sep, pad, mask, fim_*
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    eog_ids: set[int] = field(default_factory=set)
    special_ids: list[int] = field(default_factory=list)  # for partitioning, longest text first


def _get_list_of_str(md: dict, key: str, required: bool) -> list[str] | None:
    v = md.get(key)
    if v is None:
        if required:
            raise TokenizerError(f"GGUF metadata has no {key}; it carries no usable tokenizer")
        return None
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if not isinstance(v, (list, tuple)) or not all(isinstance(t, str) for t in v):
        raise TokenizerError(f"GGUF metadata {key} must be an array of strings")
    return list(v)


def _get_numeric_array(md: dict, key: str, n: int, kind) -> list | None:
    v = md.get(key)
    if v is None:
        return None
    try:
        arr = np.asarray(v)
    except Exception as e:  # pragma: no cover - defensive
        raise TokenizerError(f"GGUF metadata {key} is not a numeric array") from e
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TokenizerError(f"GGUF metadata {key} must be a 1-D numeric array, got {arr.dtype} {arr.shape}")
    if len(arr) < n:
        raise TokenizerError(f"GGUF metadata {key} has {len(arr)} entries for {n} tokens")
    return arr[:n].astype(kind).tolist()


def _get_bool(md: dict, key: str) -> bool | None:
    v = md.get(key)
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
        return bool(v)
    raise TokenizerError(f"GGUF metadata {key} must be a bool, got {v!r}")


def _get_int(md: dict, key: str) -> int | None:
    v = md.get(key)
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TokenizerError(f"GGUF metadata {key} must be an integer, got {v!r}")
    return int(v)


def load_vocab(md: dict[str, Any], pre_spec_for) -> Vocab:
    """Parse ``md`` (GGUF metadata).  ``pre_spec_for(pre)`` resolves pre-tokenizer names."""
    if not isinstance(md, dict):
        raise TokenizerError("metadata must be a dict (GGUFFile.metadata)")
    model = md.get("tokenizer.ggml.model")
    if model is None:
        raise TokenizerError("GGUF metadata has no tokenizer.ggml.model; it carries no tokenizer")
    if not isinstance(model, str):
        raise TokenizerError(f"tokenizer.ggml.model must be a string, got {model!r}")
    pre = md.get("tokenizer.ggml.pre")
    if pre is not None and not isinstance(pre, str):
        raise TokenizerError(f"tokenizer.ggml.pre must be a string, got {pre!r}")

    # llama.cpp's per-model defaults
    if model == "llama":
        kind = SPM
        ids: dict[str, int | None] = {"bos": 1, "eos": 2, "unk": 0}
        add_bos, add_eos, add_space_prefix = True, False, True
        force_bos = False
    elif model in ("gpt2", "gemma4"):
        kind = BPE
        ids = {"bos": 11, "eos": 11} if model == "gpt2" else {}
        add_bos, add_eos, add_space_prefix = False, False, False
        if model == "gemma4":
            pre = "gemma4"
        spec = pre_spec_for(pre)
        add_bos = spec.add_bos
        force_bos = spec.force_bos
        if spec.no_bos:
            ids["bos"] = None
    else:
        raise TokenizerError(
            f"unsupported tokenizer model {model!r} (tokenizer.ggml.model); "
            "webinfer supports 'llama' (SentencePiece), 'gpt2' and 'gemma4' (BPE)"
        )

    tokens = _get_list_of_str(md, "tokenizer.ggml.tokens", required=True)
    n = len(tokens)
    if n == 0:
        raise TokenizerError("tokenizer.ggml.tokens is empty")
    # llama.cpp renames empty tokens so that they stay unique
    tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]

    types = _get_numeric_array(md, "tokenizer.ggml.token_type", n, np.int64)
    attrs = [NORMAL] * n if types is None else [_TYPE_TO_ATTR.get(t, UNDEFINED) for t in types]
    scores = _get_numeric_array(md, "tokenizer.ggml.scores", n, np.float64)
    if scores is None:
        scores = [0.0] * n

    merges: list[str] = []
    if kind == BPE:
        merges = _get_list_of_str(md, "tokenizer.ggml.merges", required=False)
        if merges is None:
            raise TokenizerError(f"GGUF metadata has no tokenizer.ggml.merges, which a {model!r} tokenizer needs")

    token_to_id = {t: i for i, t in enumerate(tokens)}  # a repeated text maps to its last id

    # special ids: defaults out of range are dropped, metadata ids out of range ignored
    for k in list(ids):
        if ids[k] is not None and ids[k] >= n:
            ids[k] = None
    for name, key in _ID_KEYS.items():
        v = _get_int(md, key)
        if v is None and name in _DEPRECATED_FIM_KEYS:
            v = _get_int(md, _DEPRECATED_FIM_KEYS[name])
        if v is not None and 0 <= v < n:
            ids[name] = v
        else:
            ids.setdefault(name, None)

    b = _get_bool(md, "tokenizer.ggml.add_bos_token")
    if b is not None:
        add_bos = b
    b = _get_bool(md, "tokenizer.ggml.add_eos_token")
    if b is not None:
        add_eos = b
    b = _get_bool(md, "tokenizer.ggml.add_space_prefix")
    if b is not None:
        add_space_prefix = b
    if force_bos:
        add_bos = True
    if add_bos and ids["bos"] is None:
        raise TokenizerError("the tokenizer should add a BOS token but the GGUF names none (tokenizer.ggml.bos_token_id)")
    if add_eos and ids["eos"] is None:
        raise TokenizerError("the tokenizer should add an EOS token but the GGUF names none (tokenizer.ggml.eos_token_id)")

    v = Vocab(kind=kind, model=model, pre=pre, tokens=tokens, attrs=attrs, scores=scores,
              token_to_id=token_to_id, merges=merges, ids=ids, add_bos=add_bos, add_eos=add_eos,
              add_space_prefix=add_space_prefix)
    _guess_special_tokens(v)
    _find_eog(v)
    _build_special_cache(v, md)
    return v


def _mark_control(v: Vocab, tid: int) -> None:
    # llama.cpp: "control-looking token ... was not control-type ... overridden"
    v.attrs[tid] |= CONTROL


def _guess_special_tokens(v: Vocab) -> None:
    """EOT, EOM and FIM ids from token texts when the metadata names none."""
    t2i = v.token_to_id
    for name, texts in (("eot", _EOT_TEXTS), ("eom", _EOM_TEXTS), *_FIM_TEXTS.items()):
        if v.ids.get(name) is not None:
            continue
        for text in texts:
            tid = t2i.get(text)
            if tid is not None:
                v.ids[name] = tid
                _mark_control(v, tid)
                break
    # control tokens named "unused..." are unused
    for i, t in enumerate(v.tokens):
        if v.attrs[i] & CONTROL and "unused" in t:
            v.attrs[i] |= UNUSED


def _find_eog(v: Vocab) -> None:
    eog: set[int] = set()
    for name in ("fim_pad", "fim_rep", "fim_sep"):
        if v.ids.get(name) is not None:
            eog.add(v.ids[name])
    t2i = v.token_to_id
    for text in _EOG_TEXTS:
        tid = t2i.get(text)
        if tid is not None:
            eog.add(tid)
            _mark_control(v, tid)
    # gpt-oss: these always render
    for text in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):
        tid = t2i.get(text)
        if tid is not None:
            v.attrs[tid] = USER_DEFINED
    for name in ("eos", "eot", "eom"):
        if v.ids.get(name) is not None:
            eog.add(v.ids[name])
    texts = {v.tokens[i]: i for i in eog}
    # gpt-oss / solar-open: "<|end|>" ends a message, not the generation
    if "<|end|>" in texts and (("<|return|>" in texts and "<|call|>" in texts)
                                or ("<|calls|>" in texts and "<|flush|>" in texts)):
        eog.discard(texts["<|end|>"])
        v.attrs[texts["<|end|>"]] = USER_DEFINED
    # gemma4 / plamo: "</s>" is a normal token there
    if "</s>" in texts and ("<|tool_response>" in texts or "<|plamo:eos|>" in texts):
        eog.discard(texts["</s>"])
        v.attrs[texts["</s>"]] = NORMAL
    v.eog_ids = eog


def _build_special_cache(v: Vocab, md: dict) -> None:
    special = [i for i, a in enumerate(v.attrs) if a & (CONTROL | USER_DEFINED | UNKNOWN)]
    special.sort(key=lambda i: -len(v.tokens[i].encode("utf-8", "surrogatepass")))
    v.special_ids = special

    # llama.cpp sets whitespace-stripping attributes by model name
    name = str(md.get("general.name") or "").lower()
    arch = str(md.get("general.architecture") or "")
    pre = v.pre or ""
    t2i = v.token_to_id
    if any(s in pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or \
            any(s in arch for s in ("nomic-bert-moe", "jina-bert-v3")):
        if "<mask>" in t2i:
            v.attrs[t2i["<mask>"]] |= LSTRIP
    elif "phi-3" in name or "phi3" in name:
        for i in special:
            v.attrs[i] |= RSTRIP
        if "</s>" in t2i:
            v.attrs[t2i["</s>"]] |= RSTRIP
        for text in ("<unk>", "<s>", "<|endoftext|>"):
            if text in t2i:
                v.attrs[t2i[text]] &= ~RSTRIP
    elif "modern-bert" in name and "[MASK]" in t2i:
        v.attrs[t2i["[MASK]"]] |= LSTRIP
