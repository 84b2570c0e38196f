"""Recipes: which type each tensor of a model gets.

A plain type name (``Q4_K``) quantizes every matrix, the embedding included,
to that type.  The ``_M``/``_S`` mixes follow llama.cpp's
``llama_tensor_get_type`` for a llama-family model with tied embeddings (the
embedding is also the output head, so it takes the output's type), but
where llama.cpp falls back to a 32-wide type because a row is not a multiple
of 256, webinfer packs rows instead (formats/packing.py) and keeps the
intended type.  The ``W*`` recipes are webinfer's own, tuned on the default
model for a bits-per-weight budget (docs/quantization.md gives the
measurements behind them); they live in data/recipes.json.

1-D tensors (norms, biases) always stay as they are (F32).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..formats.quantize import QUANTIZABLE_TYPES, QuantizeError

_LAYER = re.compile(r"blk\.(\d+)\.(\w+?)\.weight$")


def category(name: str) -> str:
    """``token_embd``, ``output``, ``attn_q`` ... ``ffn_down``, or ``other``."""
    if name in ("token_embd.weight", "output.weight"):
        return name.split(".")[0]
    m = _LAYER.match(name)
    return m.group(2) if m else "other"


def layer_of(name: str) -> int:
    m = _LAYER.match(name)
    return int(m.group(1)) if m else -1


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's choice of layers that get more bits in the _M mixes: the first and last eighth, every third."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass(frozen=True)
class Recipe:
    """Type per tensor: ``default``, overridden per category by a type or a function of (layer, n_layers)."""

    name: str
    default: str
    overrides: dict[str, str | Callable[[int, int], str]] = field(default_factory=dict)
    note: str = ""

    def type_for(self, name: str, n_layers: int) -> str:
        cat = category(name)
        rule = self.overrides.get(cat, self.default)
        if callable(rule):
            return rule(layer_of(name), n_layers)
        return rule


def _more(hi: str, lo: str) -> Callable[[int, int], str]:
    return lambda i, n: hi if use_more_bits(i, n) else lo


def _first(k_of_n: Callable[[int], int], hi: str, lo: str) -> Callable[[int, int], str]:
    return lambda i, n: hi if i < k_of_n(n) else lo


_LLAMA_MIXES = {
    # llama.cpp: LLAMA_FTYPE_MOSTLY_Q4_K_M on a llama model with tied embeddings
    "Q4_K_M": Recipe("Q4_K_M", "Q4_K", {"token_embd": "Q6_K", "attn_v": _more("Q6_K", "Q4_K"),
                                        "ffn_down": _more("Q6_K", "Q4_K")},
                     "llama.cpp's Q4_K_M mix"),
    "Q4_K_S": Recipe("Q4_K_S", "Q4_K", {"token_embd": "Q6_K", "ffn_down": _first(lambda n: n // 8, "Q5_K", "Q4_K")},
                     "llama.cpp's Q4_K_S mix"),
    "Q5_K_M": Recipe("Q5_K_M", "Q5_K", {"token_embd": "Q6_K", "attn_v": _more("Q6_K", "Q5_K"),
                                        "ffn_down": _more("Q6_K", "Q5_K")},
                     "llama.cpp's Q5_K_M mix"),
    "Q3_K_M": Recipe("Q3_K_M", "Q3_K", {"token_embd": "Q6_K", "attn_v": lambda i, n: "Q5_K" if i < 2 else "Q4_K",
                                        "attn_output": "Q4_K",
                                        "ffn_down": lambda i, n: "Q5_K" if i < n // 16 else "Q4_K"},
                     "llama.cpp's Q3_K_M mix"),
    "Q3_K_S": Recipe("Q3_K_S", "Q3_K", {"token_embd": "Q6_K"}, "llama.cpp's Q3_K_S mix"),
    "Q2_K": Recipe("Q2_K", "Q2_K", {"token_embd": "Q6_K", "attn_v": "Q3_K", "attn_output": "Q3_K",
                                    "ffn_down": "Q3_K"},
                   "llama.cpp's Q2_K mix (attn_v, attn_output, ffn_down in Q3_K)"),
}

def _load_own_mixes() -> dict[str, Recipe]:
    """webinfer's budgeted mixes (data/recipes.json: how they were chosen is written there)."""
    data = json.loads((Path(__file__).resolve().parent.parent / "data" / "recipes.json").read_text())
    out = {}
    for name, r in data.items():
        if name.startswith("_"):
            continue
        overrides: dict = {}
        for key, typ in r["overrides"].items():
            _add_override(overrides, r["default"], key, typ)
        out[name] = Recipe(name, r["default"], overrides, r.get("note", ""))
    return out


def _add_override(overrides: dict, default: str, key: str, typ: str) -> None:
    """``key`` is CATEGORY or CATEGORY@A-B (layers A..B); later keys win."""
    cat, _, layers = key.partition("@")
    if not layers:
        overrides[cat] = typ
        return
    lo, _, hi = layers.partition("-")
    lo, hi = int(lo), int(hi or lo)
    prev = overrides.get(cat, default)
    overrides[cat] = lambda i, n, prev=prev: typ if lo <= i <= hi else (prev(i, n) if callable(prev) else prev)


RECIPES: dict[str, Recipe] = {**_LLAMA_MIXES, **_load_own_mixes()}


CATEGORIES = ("token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def get_recipe(spec: str) -> Recipe:
    """A recipe by name, or a plain type (every matrix in it), optionally with per-category overrides.

    ``"Q4_K,token_embd=Q8_0,attn_v=Q6_K"``: Q4_K everywhere except the
    embedding and attn_v.  An override may also name layers:
    ``ffn_down@0-3=Q6_K`` (layers 0 to 3).
    """
    base, *extra = [p.strip() for p in spec.split(",")]
    key = base.upper()
    names = {t.name for t in QUANTIZABLE_TYPES}
    rec = next((r for n, r in RECIPES.items() if n.upper() == key), None)
    if rec is None and key in names:
        rec = Recipe(key, key, {}, f"every matrix {key}")
    if rec is None:
        raise QuantizeError(
            f"unknown quantization type or recipe {spec!r}; types: {', '.join(sorted(names))}; "
            f"recipes: {', '.join(RECIPES)}"
        )
    if not extra:
        return rec
    overrides = dict(rec.overrides)
    for item in extra:
        key, _, typ = item.partition("=")
        cat, _, layers = key.partition("@")
        typ = typ.strip().upper()
        lo, _, hi = layers.partition("-")
        if cat not in CATEGORIES or typ not in names or (layers and not (lo.isdigit() and (hi or lo).isdigit())):
            raise QuantizeError(f"bad override {item!r}: want CATEGORY[@A-B]=TYPE with CATEGORY one of "
                                f"{', '.join(CATEGORIES)} and TYPE one of {', '.join(sorted(names))}")
        _add_override(overrides, rec.default, key, typ)
    return Recipe(spec, rec.default, overrides, rec.note + " with overrides")
