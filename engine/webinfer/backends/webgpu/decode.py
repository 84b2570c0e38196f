"""Planned decoding: one recorded step replayed per token, sampling on the GPU.

:class:`PlannedModel` stands in for a ``LlamaModel`` inside a ``Session``
(same ``args``, ``new_cache`` and ``forward``).  The first forward pass of a
shape (T tokens, n logits) runs ``model.forward`` once in record mode and
plans it; later ones replay the plan and never run the Python graph again.

``forward`` returns :class:`DeviceLogits`, a lazy handle: nothing is
submitted until somebody needs a result.

- ``np.asarray(logits)`` submits and reads the logits back (any sampler works);
- ``logits.sample_on_device(sampler)`` (called by ``runtime.sampler.Sampler``)
  appends the argmax or top-k/top-p kernel to the same submit and reads back
  4 bytes: the token id.  The kernel also writes the token into the next
  step's input and advances the position on the GPU, so the next
  ``forward([token])`` needs no write at all: one ``device.run`` (one submit,
  one Python-to-JS crossing in the browser) per token.
- With ``readback_batch = k > 1`` (slow readback, e.g. Firefox), a sample
  records k (step, sample) pairs in that one submit and reads k token ids;
  the next k-1 ``forward`` calls find their results already computed.  The
  sampling kernel marks tokens sampled after a stop token, and the host
  stops running ahead after one.

If the GPU fails (device lost, a pipeline that does not build), the model
switches to the numpy backend: it reloads the weights from the GGUF file,
re-evaluates the tokens the cache held, and carries on; the text generated
so far is kept because the session and generator never notice.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ...devices.base import Readback
from ...errors import GPUError
from .backend import OUT_RING, WebGPUBackend
from .planner import Plan, pack

log = logging.getLogger("webinfer")

MAX_PLANS = 8            # cached plans (decode + recent prefill lengths); each owns its activations
GPU_MAX_TOP_K = 256      # sample_f32.wgsl keeps at most this many candidates
AFTER_STOP = 0x80000000  # _commit.wgsl marks tokens sampled after a stop token
MAX_STOP_IDS = 8


class BackendFallbackWarning(RuntimeWarning):
    """The WebGPU backend failed and generation continues on numpy (the message says why)."""


@dataclass(eq=False)
class _Sampled:
    """A token the GPU sampled: unknown to the host until read back."""

    n: int                 # index in the OUT ring sequence (STEP.n_out when it was sampled)
    value: int | None = None


@dataclass(eq=False)
class _Run:
    plan: Plan
    pos0: int
    ids: tuple


class DeviceLogits:
    """Logits [rows, vocab] that live on the GPU until read; rows of a forward pass's output."""

    def __init__(self, pm: "PlannedModel", run: _Run | None, rows: slice, n_rows: int,
                 sampled: int | None = None, key: tuple | None = None, single: bool = False):
        self._pm = pm
        self._run = run
        self._rows = rows
        self._n = n_rows
        self._sampled = sampled        # known next token (run-ahead); run is None then
        self._key = key                # (ids, pos0) of a run-ahead forward, to recompute its logits
        self._single = single          # one row indexed out: a 1-D vector

    @property
    def shape(self) -> tuple:
        vocab = self._pm.args.vocab_size
        return (vocab,) if self._single else (len(range(*self._rows.indices(self._n))), vocab)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item):
        rows = range(*self._rows.indices(self._n))
        if isinstance(item, slice) and not self._single:
            sub = rows[item]
            return DeviceLogits(self._pm, self._run, slice(sub.start, sub.stop, sub.step), self._n,
                                self._sampled, self._key)
        if isinstance(item, int) and not self._single:
            i = rows[item]
            return DeviceLogits(self._pm, self._run, slice(i, i + 1), self._n, self._sampled, self._key, True)
        return np.asarray(self)[item]

    def __array__(self, dtype=None, copy=None):
        out = self._pm._read_logits(self)[self._rows]
        if self._single:
            out = out[0]
        return out.astype(dtype) if dtype is not None else out

    def sample_on_device(self, sampler) -> int | None:
        """The next token sampled on the GPU, or None when only the CPU can do it (then read the logits)."""
        return self._pm._sample(self, sampler)


class PlannedModel:
    """A model on the WebGPU backend that plans each forward shape once (see the module docstring)."""

    def __init__(self, model, backend: WebGPUBackend, *, readback_batch: int = 1,
                 numpy_fallback: Callable[[], object] | None = None,
                 on_fallback: Callable[[str], None] | None = None):
        self.model = model
        self.args = model.args
        self.be = backend
        self.device = backend.device
        self.readback_batch = max(1, int(readback_batch))
        self.stop_ids: list[int] = []
        self._numpy_fallback = numpy_fallback
        self._on_fallback = on_fallback
        self.fallback_reason: str | None = None
        self._np = None                      # (model, cache, rope) after a fallback
        self._plans: OrderedDict = OrderedDict()
        self._pending: list[_Run | tuple] = []   # runs and ("sample", plan, mode) not yet submitted
        self._state: tuple | None = None     # (pos0, n_tokens, ids) the GPU will hold after what is queued
        self._latest: _Run | None = None     # the run whose logits are in its plan's output buffer
        self._n_out = 0                      # STEP.n_out after what is queued
        self._ahead: list[tuple[int, int, int]] = []   # (token, pos, next token): forwards already done
        self._stopped = False
        self._seeds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._sample_params: tuple | None = None
        self._sample_uniform = None
        self.history: list[int] = []        # token at each position, as fed to forward
        self._n_ctx = 0
        self._cache = None
        self._rope = None

    # ------------------------------------------------------------------ Session-facing API

    @property
    def backend_name(self) -> str:
        if self._np is not None:
            return "numpy (WebGPU fallback)"
        return f"webgpu ({self.device.info.describe()})"

    def new_cache(self, n_ctx: int):
        """A device KV cache of n_ctx positions; the decode step is recorded and planned here, once."""
        self._n_ctx = n_ctx
        self._cache, self._rope = self.model.new_cache(n_ctx)
        self._reset_state()
        self.warm_up()
        return self._cache, self._rope

    def forward(self, ids: Sequence[int], pos0: int, cache, rope, *, n_logits: int = 1):
        ids = tuple(int(i) for i in ids)
        del self.history[pos0:]
        self.history.extend(ids)
        if self._np is not None:
            m, c, r = self._np
            return m.forward(ids, pos0, c, r, n_logits=n_logits)
        try:
            return self._forward(ids, pos0, cache, rope, n_logits)
        except GPUError as e:
            return self._fall_back(e, n_logits)

    def warm_up(self) -> None:
        """Record and plan the decode step now (every pipeline compiles here, not mid-generation)."""
        if self._cache is None:
            raise RuntimeError("call new_cache first")
        self._get_plan(1, 1, self._cache, self._rope, pos0=0)

    # ------------------------------------------------------------------ planning

    def _get_plan(self, t: int, n_logits: int, cache, rope, pos0: int) -> Plan:
        key = (t, n_logits, id(cache))
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        self.be.record_only = True
        try:
            graph = self.model.forward([0] * t, min(pos0, cache.capacity - t), cache, rope, n_logits=n_logits)
        finally:
            self.be.record_only = False
        plan = self.be.plan(graph, label=f"T={t}")
        self._plans[key] = plan
        while len(self._plans) > MAX_PLANS:
            victim = next((k for k in self._plans if k[0] != 1), None)   # never the decode plan
            if victim is None:
                break
            self._flush()
            old = self._plans.pop(victim)
            if self._latest is not None and self._latest.plan is old:
                self._latest = None
            self.be.free_plan(old)
        return plan

    def _reset_state(self) -> None:
        self._pending = []
        self._state = None
        self._latest = None
        self._ahead = []

    # ------------------------------------------------------------------ forward

    def _forward(self, ids: tuple, pos0: int, cache, rope, n_logits: int):
        if self._ahead:
            tok, pos, nxt = self._ahead[0]
            if (tok, pos) == (ids[0], pos0) and len(ids) == 1 and n_logits == 1:
                self._ahead.pop(0)
                return DeviceLogits(self, None, slice(0, 1), 1, sampled=nxt, key=(ids, pos0))
            self._ahead = []
            self._state = None                  # the GPU ran ahead on other tokens
        plan = self._get_plan(len(ids), n_logits, cache, rope, pos0)
        run = _Run(plan, pos0, ids)
        if not self._state_is(pos0, ids):
            if self._pending:
                self._flush()                   # queued runs must see their own Step
            self.be.write_step(pos0, len(ids), ids, reset=True)
            self._n_out = 0
            self._stopped = False
        self._pending.append(run)
        self._state = (pos0 + len(ids), None, None)   # after this run: unknown until sampled
        self._latest = run
        return DeviceLogits(self, run, slice(0, n_logits), n_logits)

    def _state_is(self, pos0: int, ids: tuple) -> bool:
        s = self._state
        if s is None or s[0] != pos0 or s[1] != len(ids) or s[2] is None:
            return False
        return all((x.value if isinstance(x, _Sampled) else x) == y for x, y in zip(s[2], ids))

    def _flush(self, readback: Sequence[Readback] = ()) -> list[np.ndarray]:
        programs = []
        for item in self._pending:
            if isinstance(item, _Run):
                programs.append(item.plan.program)
            else:
                programs.append(item[1])
        self._pending = []
        if not programs and not readback:
            return []
        return self.device.run(programs, readback=readback)

    # ------------------------------------------------------------------ results

    def _read_logits(self, d: DeviceLogits) -> np.ndarray:
        if self._np is not None:
            return self._np_logits_for(d)
        try:
            if d._run is None or d._run is not self._latest:
                return self._recompute(d)
            buf, off, n = d._run.plan.logits_region()
            (raw,) = self._flush([Readback(buf, off, n)])
            out = d._run.plan.output
            return raw.view(np.float32).reshape(out.rows, out.cols)
        except GPUError as e:
            self._fall_back(e, d._n)
            return self._np_logits_for(d)

    def _recompute(self, d: DeviceLogits) -> np.ndarray:
        """Logits of a forward whose output buffer was reused since: run it again (KV writes are idempotent)."""
        ids, pos0 = d._key if d._run is None else (d._run.ids, d._run.pos0)
        self._flush()
        self._ahead = []
        plan = self._get_plan(len(ids), d._n, self._cache, self._rope, pos0)
        out = self.be.execute(plan, pos0, ids)
        self._state = (pos0 + len(ids), None, None)
        self._latest = None
        return out

    def _sample_mode(self, sampler) -> str | None:
        p = sampler.params
        if p.repetition_penalty != 1.0 and p.repeat_last_n:
            return None                                       # needs the history: CPU
        if p.greedy:
            return "argmax"
        if not 1 <= p.top_k <= GPU_MAX_TOP_K:
            return None                                       # top_k 0 = whole vocabulary: CPU
        return "sample"

    def _sampler_uniform(self, sampler, mode: str, l_off: int):
        p = sampler.params
        seed = self._seeds.get(sampler)
        if seed is None:
            seed = (p.seed if p.seed is not None else int(sampler.rng.integers(0, 2**32))) & 0xFFFFFFFF
            self._seeds[sampler] = seed
        stops = list(self.stop_ids[:MAX_STOP_IDS]) + [0] * (MAX_STOP_IDS - min(len(self.stop_ids), MAX_STOP_IDS))
        inv_t = 1.0 / p.temperature if p.temperature > 0 else 1.0
        words = pack(self.args.vocab_size, l_off, OUT_RING, min(len(self.stop_ids), MAX_STOP_IDS), stops,
                     int(p.top_k), float(p.top_p), float(p.min_p), float(inv_t), seed, 0, 0, 0)
        return words

    def _sampler_program(self, plan: Plan, mode: str, sampler):
        from ...devices.base import BufferUsage, Dispatch

        buf, off, _ = plan.logits_region()
        words = self._sampler_uniform(sampler, mode, off // 4)
        dev = self.device
        prog = plan.samplers.get(mode)
        if prog is None:
            uni = dev.create_buffer(256, BufferUsage.UNIFORM | BufferUsage.COPY_DST, f"{mode} params")
            plan.buffers.append(uni)
            kernel = "argmax_f32" if mode == "argmax" else "sample_f32"
            pipe = self.be.pipeline(kernel)
            bg = dev.bind_group(pipe, [buf, self.be.step_buffer, self.be.ids_buffer, self.be.out_buffer,
                                       (uni, 0, words.size * 4)], label=kernel)
            prog = plan.samplers[mode] = (dev.prepare([Dispatch(pipe, bg, (1, 1, 1), kernel)], kernel), uni, None)
        program, uni, last = prog
        if last is None or not np.array_equal(last, words):
            dev.write_buffer(uni, words)             # lands before the submit this sample joins
            plan.samplers[mode] = (program, uni, words)
        return program

    def _sample(self, d: DeviceLogits, sampler) -> int | None:
        if self._np is not None:
            return None
        rows = range(*d._rows.indices(d._n))
        if len(rows) != 1 or rows[0] != d._n - 1:
            return None                                       # not the last token's logits
        if d._run is None:
            return d._sampled
        if d._run is not self._latest:
            return None
        mode = self._sample_mode(sampler)
        if mode is None:
            return None
        try:
            return self._sample_gpu(d._run, mode, sampler)
        except GPUError as e:
            self._fall_back(e, 1)
            return None

    def _sample_gpu(self, run: _Run, mode: str, sampler) -> int:
        k = 1 if self._stopped else self.readback_batch
        k = max(1, min(k, self._n_ctx - (run.pos0 + len(run.ids))))   # room left in the context
        decode = self._get_plan(1, 1, self._cache, self._rope, run.pos0) if k > 1 else None
        first = self._n_out
        self._pending.append(("sample", self._sampler_program(run.plan, mode, sampler)))
        for _ in range(k - 1):
            self._pending.append(_Run(decode, 0, ()))
            self._pending.append(("sample", self._sampler_program(decode, mode, sampler)))
        self._n_out += k
        # the OUT ring region of these k tokens (it may wrap)
        regions = []
        at = first % OUT_RING
        left = k
        while left:
            n = min(left, OUT_RING - at)
            regions.append(Readback(self.be.out_buffer, at * 4, n * 4))
            left -= n
            at = 0
        raw = self._flush(regions)
        toks = np.concatenate([r.view(np.uint32) for r in raw]).astype(np.int64)
        stopped = bool((toks & AFTER_STOP).any()) or any(int(t) in self.stop_ids for t in toks[:-1])
        toks = [int(t) & ~AFTER_STOP for t in toks]
        self._stopped = stopped
        pos = run.pos0 + len(run.ids)
        self._ahead = [(toks[i], pos + i, toks[i + 1]) for i in range(k - 1)]
        self._state = (pos + k - 1, 1, (toks[-1],))
        self._latest = None if k > 1 else run
        return toks[0]

    # ------------------------------------------------------------------ fallback

    def _fall_back(self, err: Exception, n_logits: int):
        """Continue on numpy: rebuild the cache from the history; returns logits of the last forward."""
        if self._numpy_fallback is None:
            raise err
        reason = f"{type(err).__name__}: {err}"
        self.fallback_reason = reason
        msg = f"WebGPU failed ({reason}); continuing on the numpy backend"
        log.warning(msg)
        warnings.warn(msg, BackendFallbackWarning, stacklevel=3)
        if self._on_fallback:
            self._on_fallback(msg)
        try:
            model = self._numpy_fallback()
        except Exception as e2:  # noqa: BLE001 -- e.g. the model file was closed after loading
            raise GPUError(f"{msg}, but the numpy backend could not load the model ({type(e2).__name__}: {e2}); "
                           f"keep the model file open to allow the fallback") from err
        cache, rope = model.new_cache(self._n_ctx)
        self._np = (model, cache, rope)
        self._pending = []
        self._ahead = []
        logits = None
        hist = list(self.history)
        step = 256
        for a in range(0, len(hist), step):
            chunk = hist[a : a + step]
            logits = model.forward(chunk, a, cache, rope, n_logits=min(n_logits, len(chunk)))
        self._np_last = logits
        return logits

    def _np_logits_for(self, d: DeviceLogits) -> np.ndarray:
        # the numpy model has just evaluated the whole history: its last logits are this forward's
        if d._run is None and d._key is not None:
            ids, pos0 = d._key
            m, c, r = self._np
            return m.forward(list(ids), pos0, c, r, n_logits=1)
        return self._np_last
