"""Random quantized weights and synthetic Llama GGUF files, for kernel tests and benchmarks.

Random bytes are valid blocks of every ggml type once the f16 scale fields
are set to sane values, so no quantizer is needed: the reference is
``formats.quants.dequantize`` of the same bytes (bit-exact with gguf-py).
:func:`write_synthetic_llama` writes a model of any shape (e.g. a 1B-class
Llama with random Q4_0 weights for the GPU benchmark) without a tokenizer
beyond a placeholder vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...formats.ggml_types import BLOCK_LAYOUTS, GGMLType

# byte offsets of the f16 scale fields in each block, and a typical magnitude
_SCALE_FIELDS = {
    "Q4_0": [(0, 1.0 / 8)], "Q4_1": [(0, 1.0 / 8), (2, -1.0)], "Q5_0": [(0, 1.0 / 16)],
    "Q8_0": [(0, 1.0 / 127)], "Q4_K": [(0, 1.0 / 8 / 40), (2, 1.0 / 40)], "Q6_K": [(208, 1.0 / 32 / 60)],
    "Q5_1": [(0, 1.0 / 16), (2, -1.0)], "Q5_K": [(0, 1.0 / 16 / 40), (2, 1.0 / 40)],
    "Q2_K": [(80, 1.0 / 2 / 8), (82, 1.0 / 8)], "Q3_K": [(108, 1.0 / 4 / 32)],
}


def random_tensor(fmt: str, shape: tuple[int, ...], rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Raw GGUF bytes (uint8) of a random ``fmt`` tensor of numpy ``shape`` with values of about ``scale``."""
    n = int(np.prod(shape))
    if fmt == "F32":
        return (rng.standard_normal(n) * scale).astype("<f4").view(np.uint8)
    if fmt == "F16":
        return (rng.standard_normal(n) * scale).astype("<f2").view(np.uint8)
    layout = BLOCK_LAYOUTS[GGMLType[fmt]]
    nb = n // layout.block_elems
    blocks = rng.integers(0, 256, size=(nb, layout.block_bytes), dtype=np.uint8)
    for off, mag in _SCALE_FIELDS[fmt]:
        v = (rng.uniform(0.5, 1.5, nb) * mag * scale).astype("<f2")
        blocks[:, off : off + 2] = v.view(np.uint8).reshape(nb, 2)
    return blocks.reshape(-1)


def write_synthetic_llama(path: str | Path, *, dim: int, n_layers: int, n_heads: int, n_kv_heads: int, ffn: int,
                          vocab: int, fmt: str = "Q4_0", embed_fmt: str = "Q8_0", output_fmt: str | None = None,
                          context_length: int = 4096, seed: int = 0, tied: bool = False,
                          arch: str = "llama") -> Path:
    """A llama-family GGUF with random ``fmt`` weights (norms F32 near 1); returns ``path``.

    ``arch="qwen2"`` adds Q/K/V biases and uses NeoX RoPE, as that family does.
    Matrix widths must be multiples of the formats' block sizes (256 for K-quants).
    """
    from ...formats.gguf_writer import GGUFWriter, ValueType

    rng = np.random.default_rng(seed)
    head_dim = dim // n_heads
    w = GGUFWriter(Path(path))
    a = arch
    md = {
        "general.architecture": a, "general.name": f"synthetic-{a}-{dim}x{n_layers}-{fmt}",
        f"{a}.block_count": (n_layers, ValueType.UINT32),
        f"{a}.context_length": (context_length, ValueType.UINT32),
        f"{a}.embedding_length": (dim, ValueType.UINT32),
        f"{a}.feed_forward_length": (ffn, ValueType.UINT32),
        f"{a}.attention.head_count": (n_heads, ValueType.UINT32),
        f"{a}.attention.head_count_kv": (n_kv_heads, ValueType.UINT32),
        f"{a}.attention.layer_norm_rms_epsilon": (1e-5, ValueType.FLOAT32),
        f"{a}.rope.freq_base": (10000.0, ValueType.FLOAT32),
        f"{a}.rope.dimension_count": (head_dim, ValueType.UINT32),
        f"{a}.vocab_size": (vocab, ValueType.UINT32),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(vocab)],
        "tokenizer.ggml.token_type": np.ones(vocab, np.int32),
        "tokenizer.ggml.merges": ["t 1"],
        "tokenizer.ggml.bos_token_id": (0, ValueType.UINT32),
        "tokenizer.ggml.eos_token_id": (1, ValueType.UINT32),
    }
    for k, v in md.items():
        if isinstance(v, tuple):
            w.add_metadata(k, v[0], v[1])
        else:
            w.add_metadata(k, v)

    def mat(name: str, rows: int, cols: int, f: str, scale: float) -> None:
        w.add_tensor(name, random_tensor(f, (rows, cols), rng, scale), GGMLType[f], (rows, cols))

    def norm(name: str, n: int) -> None:
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32), GGMLType.F32, (n,))

    # scales keep activations O(1) through the random layers
    mat("token_embd.weight", vocab, dim, embed_fmt, 1.0)
    for i in range(n_layers):
        b = f"blk.{i}."
        norm(b + "attn_norm.weight", dim)
        mat(b + "attn_q.weight", n_heads * head_dim, dim, fmt, dim ** -0.5)
        mat(b + "attn_k.weight", n_kv_heads * head_dim, dim, fmt, dim ** -0.5)
        mat(b + "attn_v.weight", n_kv_heads * head_dim, dim, fmt, dim ** -0.5)
        if arch == "qwen2":
            for name, n in (("attn_q.bias", n_heads * head_dim), ("attn_k.bias", n_kv_heads * head_dim),
                            ("attn_v.bias", n_kv_heads * head_dim)):
                w.add_tensor(b + name, (0.1 * rng.standard_normal(n)).astype(np.float32), GGMLType.F32, (n,))
        mat(b + "attn_output.weight", dim, n_heads * head_dim, fmt, 0.5 * dim ** -0.5)
        norm(b + "ffn_norm.weight", dim)
        mat(b + "ffn_gate.weight", ffn, dim, fmt, dim ** -0.5)
        mat(b + "ffn_up.weight", ffn, dim, fmt, dim ** -0.5)
        mat(b + "ffn_down.weight", dim, ffn, fmt, 0.5 * ffn ** -0.5)
    norm("output_norm.weight", dim)
    if not tied:
        mat("output.weight", vocab, dim, output_fmt or fmt, dim ** -0.5)
    w.write()
    return Path(path)
