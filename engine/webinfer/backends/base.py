"""The contract between a model graph and the device that runs it.

An architecture module (``model/llama.py``) describes its forward pass as a
sequence of calls on a :class:`Backend`.  The numpy backend runs each call
eagerly; a GPU backend can run the same calls to record a plan once and
replay it every step.  Tensors are opaque to the model: whatever the backend
returns from ``load_*`` or an op is handed back to it unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from ..formats.gguf import TensorInfo
from ..model.args import ModelArgs

Tensor = Any  # backend-specific handle (np.ndarray on the numpy backend)


class KVCache(Protocol):
    n_layers: int
    capacity: int   # positions that fit (the context length)

    def nbytes(self) -> int: ...


class Backend(Protocol):
    name: str

    # ---- weights (called once per tensor while loading)
    def load_matrix(self, info: TensorInfo, raw: np.ndarray) -> Tensor: ...
    def load_vector(self, info: TensorInfo, raw: np.ndarray) -> Tensor: ...
    def load_embedding(self, info: TensorInfo, raw: np.ndarray, *, also_output: bool) -> Tensor: ...

    # ---- state
    def new_kv_cache(self, args: ModelArgs, n_ctx: int) -> KVCache: ...
    def rope_tables(self, args: ModelArgs, n_ctx: int, freq_factors: np.ndarray | None) -> Any: ...

    # ---- ops; x is [T, D] activations for T tokens at positions pos0..pos0+T-1
    def embed(self, table: Tensor, ids: Sequence[int]) -> Tensor: ...
    def rmsnorm(self, x: Tensor, w: Tensor, eps: float) -> Tensor: ...
    def linear(self, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor: ...
    def rope(self, x: Tensor, tables: Any, pos0: int, n_heads: int, style: str) -> Tensor: ...
    def attention(self, q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: int, pos0: int, args: ModelArgs) -> Tensor: ...
    def swiglu(self, gate: Tensor, up: Tensor) -> Tensor: ...
    def add(self, a: Tensor, b: Tensor) -> Tensor: ...
    def last_rows(self, x: Tensor, n: int) -> Tensor: ...
    def to_numpy(self, x: Tensor) -> np.ndarray: ...
