"""A tiny tied-embedding llama whose width (64) is not a multiple of 256, written once per session."""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.formats.ggml_types import GGMLType
from webinfer.formats.gguf_writer import GGUFWriter, ValueType

DIM, N_LAYERS, N_HEADS, N_KV, FFN, VOCAB = 64, 2, 2, 1, 128, 128  # head_dim 32


def write_tiny_tied(path) -> None:
    rng = np.random.default_rng(5)
    w = GGUFWriter(path)
    a = "llama"
    for k, v, t in [
        ("general.architecture", a, None), ("general.name", "tiny_tied", None),
        (f"{a}.block_count", N_LAYERS, ValueType.UINT32), (f"{a}.context_length", 256, ValueType.UINT32),
        (f"{a}.embedding_length", DIM, ValueType.UINT32), (f"{a}.feed_forward_length", FFN, ValueType.UINT32),
        (f"{a}.attention.head_count", N_HEADS, ValueType.UINT32),
        (f"{a}.attention.head_count_kv", N_KV, ValueType.UINT32),
        (f"{a}.attention.layer_norm_rms_epsilon", 1e-5, ValueType.FLOAT32),
        (f"{a}.rope.freq_base", 10000.0, ValueType.FLOAT32),
        (f"{a}.rope.dimension_count", DIM // N_HEADS, ValueType.UINT32),
        (f"{a}.vocab_size", VOCAB, ValueType.UINT32),
        ("tokenizer.ggml.model", "gpt2", None), ("tokenizer.ggml.pre", "gpt-2", None),
        ("tokenizer.ggml.tokens", [f"t{i}" for i in range(VOCAB)], None),
        ("tokenizer.ggml.merges", ["t 1"], None),
    ]:
        w.add_metadata(k, v, t) if t is not None else w.add_metadata(k, v)

    def t(name, *shape, scale=0.08, offset=0.0):  # small: errors do not blow up through the layers
        w.add_tensor(name, (rng.standard_normal(shape) * scale + offset).astype(np.float32), GGMLType.F32, shape)

    hd = DIM // N_HEADS
    t("token_embd.weight", VOCAB, DIM, scale=1.0)
    for i in range(N_LAYERS):
        b = f"blk.{i}."
        t(b + "attn_norm.weight", DIM, scale=0.1, offset=1.0)
        t(b + "attn_q.weight", N_HEADS * hd, DIM)
        t(b + "attn_k.weight", N_KV * hd, DIM)
        t(b + "attn_v.weight", N_KV * hd, DIM)
        t(b + "attn_output.weight", DIM, N_HEADS * hd)
        t(b + "ffn_norm.weight", DIM, scale=0.1, offset=1.0)
        t(b + "ffn_gate.weight", FFN, DIM)
        t(b + "ffn_up.weight", FFN, DIM)
        t(b + "ffn_down.weight", DIM, FFN)
    t("output_norm.weight", DIM, scale=0.1, offset=1.0)
    w.write()


@pytest.fixture(scope="session")
def tiny_tied(tmp_path_factory):
    path = tmp_path_factory.mktemp("quant") / "tiny_tied.gguf"
    write_tiny_tied(path)
    return path
