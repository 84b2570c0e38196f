"""Tiny random Llama-family models written as GGUF, for oracle tests of the graph.

Deterministic (seeded numpy), so scripts/reference_logits.py (transformers)
and the tests build byte-identical files.  They cover what the default model
does not: a separate output head, QKV biases and NeoX RoPE (qwen2), and RoPE
linear scaling.  Weights are F32 so the comparison is about the graph, not
about quantization.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from webinfer.formats.ggml_types import GGMLType
from webinfer.formats.gguf_writer import GGUFWriter, ValueType

VOCAB = 96
SPECS = {
    # name: (arch, dim, n_layers, n_heads, n_kv_heads, ffn, extra metadata, qkv bias)
    "tiny_llama_untied": ("llama", 64, 2, 4, 2, 96, {"rope.scaling.type": "linear", "rope.scaling.factor": 2.0}, False),
    "tiny_qwen2": ("qwen2", 64, 2, 4, 1, 80, {}, True),
}


def write_tiny_model(name: str, path: Path) -> Path:
    arch, dim, n_layers, n_heads, n_kv, ffn, extra, bias = SPECS[name]
    rng = np.random.default_rng(sum(map(ord, name)))  # stable across runs, unlike hash()
    head_dim = dim // n_heads
    w = GGUFWriter(path)
    md = {
        "general.architecture": arch, "general.name": name,
        f"{arch}.block_count": (n_layers, ValueType.UINT32),
        f"{arch}.context_length": (256, ValueType.UINT32),
        f"{arch}.embedding_length": (dim, ValueType.UINT32),
        f"{arch}.feed_forward_length": (ffn, ValueType.UINT32),
        f"{arch}.attention.head_count": (n_heads, ValueType.UINT32),
        f"{arch}.attention.head_count_kv": (n_kv, ValueType.UINT32),
        f"{arch}.attention.layer_norm_rms_epsilon": (1e-6, ValueType.FLOAT32),
        f"{arch}.rope.freq_base": (10000.0, ValueType.FLOAT32),
        f"{arch}.rope.dimension_count": (head_dim, ValueType.UINT32),
        f"{arch}.vocab_size": (VOCAB, ValueType.UINT32),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(VOCAB)],
        "tokenizer.ggml.token_type": (np.ones(VOCAB, np.int32), None),
        "tokenizer.ggml.merges": ["t 1"],
        "tokenizer.ggml.bos_token_id": (0, ValueType.UINT32),
        "tokenizer.ggml.eos_token_id": (1, ValueType.UINT32),
    }
    for k, v in extra.items():
        md[f"{arch}.{k}"] = (v, ValueType.FLOAT32) if isinstance(v, float) else v
    for k, v in md.items():
        if isinstance(v, tuple):
            w.add_metadata(k, v[0], v[1]) if v[1] is not None else w.add_metadata(k, v[0])
        else:
            w.add_metadata(k, v)

    def t(name: str, *shape: int, scale: float = 0.2, offset: float = 0.0) -> None:
        a = (rng.standard_normal(shape) * scale + offset).astype(np.float32)
        w.add_tensor(name, a, GGMLType.F32, shape)

    t("token_embd.weight", VOCAB, dim, scale=1.0)
    for i in range(n_layers):
        b = f"blk.{i}."
        t(b + "attn_norm.weight", dim, scale=0.1, offset=1.0)
        t(b + "attn_q.weight", n_heads * head_dim, dim)
        t(b + "attn_k.weight", n_kv * head_dim, dim)
        t(b + "attn_v.weight", n_kv * head_dim, dim)
        if bias:
            t(b + "attn_q.bias", n_heads * head_dim)
            t(b + "attn_k.bias", n_kv * head_dim)
            t(b + "attn_v.bias", n_kv * head_dim)
        t(b + "attn_output.weight", dim, n_heads * head_dim)
        t(b + "ffn_norm.weight", dim, scale=0.1, offset=1.0)
        t(b + "ffn_gate.weight", ffn, dim)
        t(b + "ffn_up.weight", ffn, dim)
        t(b + "ffn_down.weight", dim, ffn)
    t("output_norm.weight", dim, scale=0.1, offset=1.0)
    t("output.weight", VOCAB, dim)
    w.write()
    return path


TINY_PROMPT = [3, 17, 42, 5, 88, 61, 23, 9, 70, 14, 2, 33]
