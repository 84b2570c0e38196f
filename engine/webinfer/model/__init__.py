"""Model architectures and the loader that picks one from a GGUF file."""

from __future__ import annotations

from ..errors import UnsupportedModelError
from ..formats.gguf import GGUFFile
from .args import ModelArgs, args_from_metadata
from .llama import LlamaModel

# general.architecture -> model class.  Every entry here runs the same
# Llama-family graph; differences (rope style, QKV bias) come from metadata.
ARCHITECTURES = {
    "llama": LlamaModel,
    "qwen2": LlamaModel,
}


def load_model(g: GGUFFile, backend, progress=None) -> LlamaModel:
    arch = g.architecture
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise UnsupportedModelError(
            f"model architecture {arch!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    return cls.from_gguf(g, backend, progress)


__all__ = ["ARCHITECTURES", "LlamaModel", "ModelArgs", "args_from_metadata", "load_model"]
