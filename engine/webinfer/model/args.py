"""Model hyperparameters read from GGUF metadata into one dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import GGUFMetadataError


@dataclass(frozen=True)
class RopeConfig:
    """Rotary position embedding, as GGUF describes it.

    ``style`` is ``"norm"`` (ggml's default: rotate adjacent pairs, used by
    llama, whose Q/K weights the converter permuted for it) or ``"neox"``
    (rotate element i with i + n_dims/2: qwen2, gemma, phi3...).
    ``scaling`` is ``"none"``, ``"linear"`` or ``"yarn"``; llama-3.1 style
    per-dimension factors come as a ``rope_freqs.weight`` tensor instead.
    """

    n_dims: int
    theta: float = 10000.0
    style: str = "norm"
    scaling: str = "none"
    factor: float = 1.0
    n_ctx_orig: int = 0
    # yarn only (llama.cpp's defaults)
    ext_factor: float = 1.0
    attn_factor: float = 1.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0


@dataclass(frozen=True)
class ModelArgs:
    """What a Llama-family forward pass needs to know.

    Derived fields (head_dim, n_rep) are computed in ``__post_init__`` so they
    cannot disagree with the fields they come from.
    """

    arch: str
    n_layers: int
    dim: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    context_length: int
    norm_eps: float
    rope: RopeConfig
    head_dim: int = 0
    qkv_bias: bool = False
    tied_embeddings: bool = False
    name: str = ""
    n_rep: int = field(init=False)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        if self.n_heads % self.n_kv_heads:
            raise GGUFMetadataError(
                f"head_count {self.n_heads} is not a multiple of head_count_kv {self.n_kv_heads}"
            )
        object.__setattr__(self, "n_rep", self.n_heads // self.n_kv_heads)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def kv_bytes_per_token(self, bytes_per_elem: int = 4) -> int:
        return 2 * self.n_layers * self.kv_dim * bytes_per_elem


# Architectures whose rotary embedding rotates halves (GGML_ROPE_TYPE_NEOX).
NEOX_ROPE_ARCHS = {"qwen2", "qwen2moe", "qwen3", "phi3", "gemma", "gemma2", "gemma3", "stablelm", "olmo2"}


def _req(md: dict[str, Any], key: str, kind: type | tuple[type, ...] = int):
    if key not in md:
        raise GGUFMetadataError(f"metadata key {key!r} is required but missing")
    v = md[key]
    if kind is int and hasattr(v, "item"):
        v = v.item()
    if not isinstance(v, kind) or isinstance(v, bool):
        raise GGUFMetadataError(f"metadata key {key!r} should be {kind}, got {type(v).__name__}")
    return v


def _positive(key: str, v: int, limit: int) -> int:
    if not 0 < v <= limit:
        raise GGUFMetadataError(f"metadata {key} = {v} is out of range (1..{limit})")
    return v


def args_from_metadata(md: dict[str, Any], tensor_names: set[str] | None = None) -> ModelArgs:
    """Build ModelArgs from a GGUF metadata dict (keys prefixed by the architecture)."""
    arch = md.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFMetadataError("general.architecture is missing")
    p = arch + "."
    n_heads = _positive("head_count", _req(md, p + "attention.head_count"), 4096)
    dim = _positive("embedding_length", _req(md, p + "embedding_length"), 1 << 16)
    head_dim = md.get(p + "attention.key_length", 0) or dim // n_heads
    n_kv = md.get(p + "attention.head_count_kv", n_heads)
    if hasattr(n_kv, "__len__"):  # per-layer lists exist (e.g. openelm); all must agree here
        if len(set(int(x) for x in n_kv)) != 1:
            raise GGUFMetadataError("per-layer head_count_kv is not supported")
        n_kv = int(n_kv[0])
    tokens = md.get("tokenizer.ggml.tokens")
    vocab = md.get(p + "vocab_size") or (len(tokens) if tokens is not None else 0)
    rope_dims = md.get(p + "rope.dimension_count", head_dim)
    scaling = md.get(p + "rope.scaling.type", "none")
    factor = float(md.get(p + "rope.scaling.factor", 1.0) or 1.0)
    if scaling not in ("none", "linear", "yarn"):
        raise GGUFMetadataError(f"rope scaling {scaling!r} is not supported (none, linear, yarn)")
    if scaling == "none" and factor != 1.0:
        scaling = "linear"
    ctx = _positive("context_length", _req(md, p + "context_length"), 1 << 24)
    rope = RopeConfig(
        n_dims=int(rope_dims),
        theta=float(md.get(p + "rope.freq_base", 10000.0)),
        style="neox" if arch in NEOX_ROPE_ARCHS else "norm",
        scaling=scaling,
        factor=factor,
        n_ctx_orig=int(md.get(p + "rope.scaling.original_context_length", ctx)),
        attn_factor=float(md.get(p + "rope.scaling.attn_factor", 1.0)),
    )
    names = tensor_names or set()
    args = ModelArgs(
        arch=arch,
        n_layers=_positive("block_count", _req(md, p + "block_count"), 4096),
        dim=dim,
        n_heads=n_heads,
        n_kv_heads=_positive("head_count_kv", int(n_kv), n_heads),
        ffn_dim=_positive("feed_forward_length", int(_req(md, p + "feed_forward_length")), 1 << 20),
        vocab_size=_positive("vocab_size", int(vocab), 1 << 24),
        context_length=ctx,
        norm_eps=float(md.get(p + "attention.layer_norm_rms_epsilon", 1e-5)),
        rope=rope,
        head_dim=int(head_dim),
        qkv_bias="blk.0.attn_q.bias" in names,
        tied_embeddings=bool(names) and "output.weight" not in names,
        name=str(md.get("general.name", "")),
    )
    if not math.isfinite(args.norm_eps) or args.norm_eps <= 0:
        raise GGUFMetadataError(f"rms epsilon {args.norm_eps} is not a positive number")
    return args
