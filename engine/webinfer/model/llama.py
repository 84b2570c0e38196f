"""Llama-family decoder (llama, mistral-style, smollm, qwen2 with QKV bias).

The forward pass reads top to bottom; shapes are [T, ...] for T tokens
starting at position ``pos0``.  Every op goes through the backend, so the same
code runs eagerly on numpy or records a plan on a GPU backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..backends.base import Backend, KVCache, Tensor
from ..errors import ContextOverflowError
from ..formats.gguf import GGUFFile
from .args import ModelArgs, args_from_metadata

ProgressFn = Callable[[int, int, int, int, str], None]  # (bytes_done, bytes_total, tensors_done, n_tensors, name)


@dataclass
class LayerWeights:
    attn_norm: Tensor
    wq: Tensor
    wk: Tensor
    wv: Tensor
    wo: Tensor
    ffn_norm: Tensor
    w_gate: Tensor
    w_up: Tensor
    w_down: Tensor
    bq: Tensor | None = None
    bk: Tensor | None = None
    bv: Tensor | None = None


class LlamaModel:
    """Weights on a backend plus the forward pass.  State (the KV cache) lives in a Session."""

    def __init__(self, args: ModelArgs, backend: Backend, embed: Tensor, layers: list[LayerWeights],
                 output_norm: Tensor, output: Tensor, freq_factors: np.ndarray | None):
        self.args = args
        self.backend = backend
        self.embed_table = embed
        self.layers = layers
        self.output_norm = output_norm
        self.output = output
        self.freq_factors = freq_factors

    # ------------------------------------------------------------------ load

    @classmethod
    def from_gguf(cls, g: GGUFFile, backend: Backend, progress: ProgressFn | None = None) -> "LlamaModel":
        args = args_from_metadata(g.metadata, set(g.tensors))
        total = sum(t.nbytes for t in g)
        done = [0, 0]

        def read(name: str):
            info = g.info(name)
            raw = g.raw(name)
            done[0] += info.nbytes
            done[1] += 1
            if progress:
                progress(done[0], total, done[1], len(g.tensors), name)
            return info, raw

        def matrix(name: str):
            return backend.load_matrix(*read(name))

        def vector(name: str):
            return backend.load_vector(*read(name))

        def optional_vector(name: str):
            return vector(name) if name in g.tensors else None

        embed = backend.load_embedding(*read("token_embd.weight"), also_output=args.tied_embeddings)
        layers = []
        for i in range(args.n_layers):
            b = f"blk.{i}."
            layers.append(LayerWeights(
                attn_norm=vector(b + "attn_norm.weight"),
                wq=matrix(b + "attn_q.weight"), wk=matrix(b + "attn_k.weight"),
                wv=matrix(b + "attn_v.weight"), wo=matrix(b + "attn_output.weight"),
                ffn_norm=vector(b + "ffn_norm.weight"),
                w_gate=matrix(b + "ffn_gate.weight"), w_up=matrix(b + "ffn_up.weight"),
                w_down=matrix(b + "ffn_down.weight"),
                bq=optional_vector(b + "attn_q.bias"), bk=optional_vector(b + "attn_k.bias"),
                bv=optional_vector(b + "attn_v.bias"),
            ))
        output_norm = vector("output_norm.weight")
        output = embed if args.tied_embeddings else matrix("output.weight")
        freq_factors = g.tensor("rope_freqs.weight") if "rope_freqs.weight" in g.tensors else None
        return cls(args, backend, embed, layers, output_norm, output, freq_factors)

    # ------------------------------------------------------------------ state

    def new_cache(self, n_ctx: int, **cache_options: Any) -> tuple[KVCache, Any]:
        """A KV cache of n_ctx positions and the rotary tables for them.

        ``cache_options`` (e.g. ``kv_dtype="int8"``) go to the backend's ``new_kv_cache``.
        """
        return (self.backend.new_kv_cache(self.args, n_ctx, **cache_options),
                self.backend.rope_tables(self.args, n_ctx, self.freq_factors))

    # ------------------------------------------------------------------ forward

    def forward(self, ids: Sequence[int], pos0: int, cache: KVCache, rope: Any, *, n_logits: int = 1) -> np.ndarray:
        """Run tokens ``ids`` at positions pos0.. through the model, filling the cache.

        Returns logits [n_logits, vocab] for the last ``n_logits`` tokens
        (all of them for perplexity, the last one for generation).
        """
        a, be = self.args, self.backend
        t = len(ids)
        if pos0 + t > cache.capacity:
            raise ContextOverflowError(pos0 + t, cache.capacity, what="sequence")
        x = be.embed(self.embed_table, ids)                          # [T, D]
        for i, L in enumerate(self.layers):
            # ---- attention block
            h = be.rmsnorm(x, L.attn_norm, a.norm_eps)               # [T, D]
            q = be.linear(h, L.wq, L.bq)                             # [T, H*hd]
            k = be.linear(h, L.wk, L.bk)                             # [T, Hkv*hd]
            v = be.linear(h, L.wv, L.bv)                             # [T, Hkv*hd]
            q = be.rope(q, rope, pos0, a.n_heads, a.rope.style)      # [T, H, hd]
            k = be.rope(k, rope, pos0, a.n_kv_heads, a.rope.style)   # [T, Hkv, hd]
            attn = be.attention(q, k, v, cache, i, pos0, a)         # [T, H*hd]
            x = be.add(x, be.linear(attn, L.wo))                     # [T, D]
            # ---- feed-forward block (SwiGLU)
            h = be.rmsnorm(x, L.ffn_norm, a.norm_eps)
            ff = be.swiglu(be.linear(h, L.w_gate), be.linear(h, L.w_up))  # [T, F]
            x = be.add(x, be.linear(ff, L.w_down))
        x = be.last_rows(x, n_logits)                                # [n, D]
        x = be.rmsnorm(x, self.output_norm, a.norm_eps)
        return be.to_numpy(be.linear(x, self.output))                # [n, vocab]
