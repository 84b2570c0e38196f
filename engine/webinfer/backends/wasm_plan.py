"""Planned decoding on the wasm backend: one recorded step, replayed per token.

Recording a forward pass through the backend costs about 360 Python calls
(12 ms a token in Pyodide, a third of the step).  Decode steps differ only
in their token and position, so :class:`WasmPlannedModel` runs the model's
Python graph once per (tokens, logits) shape, keeps the command buffer it
produced, and replays it: write the new token's embedding row into the
step's input buffer, patch the position words (rope, KV store, attention),
run the program (one call into WASM), copy out the logits.  Python work per
token drops to well under a millisecond.

A plan holds the addresses of everything it touches: its activations (kept
alive with it), the weights, the rope tables and the KV cache.  When the
cache grows (doubling, so rarely) its arrays move and the plan is recorded
again.  Prefill (several tokens) runs the graph directly: its Python cost is
shared by all its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ContextOverflowError, WasmKernelError
from .wasm_backend import Recording, WasmBackend, WasmKVCache

PLANNED_MAX_TOKENS = 1   # forward passes of at most this many tokens are planned (decode)


@dataclass(eq=False)
class _Plan:
    words: np.ndarray          # int32 command words
    addr: int
    pos_words: np.ndarray      # indices of the words that hold the position
    rec: Recording             # keeps the activations alive
    cache: WasmKVCache
    cache_version: int
    rope: Any
    input_addr: int
    input_table: Any
    output: Any                # WasmTensor of the logits


class WasmPlannedModel:
    """A LlamaModel on a :class:`WasmBackend` whose decode steps replay a recorded program.

    Stands in for the model inside a Session: same ``args``, ``new_cache``
    and ``forward``; every other attribute is the wrapped model's.
    """

    backend_name = "wasm"

    def __init__(self, model, backend: WasmBackend):
        self.model = model
        self.be = backend
        self.args = model.args
        self._plans: dict[tuple, _Plan] = {}
        self.recorded = 0          # how many steps were recorded (tests, stats)

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def new_cache(self, n_ctx: int, **cache_options):
        return self.model.new_cache(n_ctx, **cache_options)

    def forward(self, ids: Sequence[int], pos0: int, cache, rope, *, n_logits: int = 1) -> np.ndarray:
        t = len(ids)
        if t > PLANNED_MAX_TOKENS or not isinstance(cache, WasmKVCache):
            return self.model.forward(ids, pos0, cache, rope, n_logits=n_logits)
        if pos0 + t > cache.capacity:
            raise ContextOverflowError(pos0 + t, cache.capacity, what="sequence")
        key = (t, n_logits)
        plan = self._plans.get(key)
        if cache.allocated(0) < pos0 + t:
            for layer in range(cache.n_layers):
                cache.reserve(layer, pos0 + t)
        if (plan is None or plan.cache is not cache or plan.cache_version != cache.version
                or plan.rope is not rope):
            logits, plan = self._record(ids, pos0, cache, rope, n_logits)
            if plan is not None:
                self._plans[key] = plan
            return logits
        return self._replay(plan, ids, pos0)

    # ------------------------------------------------------------------ record / replay

    def _record(self, ids, pos0, cache, rope, n_logits):
        be = self.be
        be.flush()
        rec = be.recording = Recording()
        try:
            logits = self.model.forward(ids, pos0, cache, rope, n_logits=n_logits)
        finally:
            be.recording = None
        self.recorded += 1
        if len(rec.programs) != 1 or len(rec.inputs) != 1 or len(rec.outputs) != 1:
            return logits, None   # not a single self-contained program: run this shape unplanned
        words = np.frombuffer(rec.programs[0], dtype=np.int32).copy()
        x, table = rec.inputs[0]
        plan = _Plan(words, be.heap.pin(words), np.asarray(rec.pos_words, dtype=np.int64), rec, cache, cache.version,
                     rope, x.addr, table, rec.outputs[0])
        return logits, plan

    def _replay(self, plan: _Plan, ids, pos0: int) -> np.ndarray:
        be = self.be
        be.flush()
        be.heap.write(plan.input_addr, be.embed_rows(plan.input_table, ids))
        plan.words[plan.pos_words] = pos0
        if be.heap.shared:   # the words live in the shared memory: copy the patched program in
            be.heap.write(plan.addr, plan.words)
        rc = be._run(plan.addr, len(plan.words))
        if rc:
            raise WasmKernelError(f"the kernels rejected command {rc - 1} of a planned step", command=rc - 1)
        return be.read(plan.output)


def load_wasm(gguf, progress=None, *, debug: bool = False, threads: Any = "auto") -> WasmPlannedModel:
    """The model of ``gguf`` on the wasm backend, with planned decoding (what ``Engine(backend="wasm")`` uses).

    ``threads``: a started pool, None (one thread), or "auto": the pool that
    ``await wasm_threads.start_threads()`` started, if any.
    """
    from ..model import load_model
    from .wasm_threads import current_pool

    if threads == "auto":
        threads = current_pool()
    backend = WasmBackend(debug=debug, threads=threads)
    return WasmPlannedModel(load_model(gguf, backend, progress), backend)
