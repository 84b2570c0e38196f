"""The WebGPU backend: WGSL kernels on quantized weights, planned decode, sampling on the GPU.

Modules, bottom up: ``kernels`` (WGSL sources and variants), ``weights``
(the aligned upload layout), ``graph`` (what the model's ops record),
``planner`` (kernels, fusion, buffers), ``backend`` (the Backend contract),
``decode`` (plans replayed per token, GPU sampling, run-ahead, numpy fallback).
:func:`load_planned` is what ``Engine(backend="webgpu")`` calls.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Callable

from ...errors import GPUError
from .backend import WebGPUBackend
from .decode import BackendFallbackWarning, DeviceLogits, PlannedModel

log = logging.getLogger("webinfer")


def _precompile(backend: WebGPUBackend, model) -> None:
    """Build the pipelines the model will use now, so a shader the device rejects fails at load.

    (The matvec variants depend on widths and fusions; the decode plan, built
    when the session makes its cache, compiles them, still at load time.)"""
    fmts = {backend_weight.fmt for backend_weight in _matrices(model)}
    for fmt in sorted(fmts):
        f = fmt.lower()
        mm = {"ROWWISE": 1} if backend.matmul_rowwise else {}
        backend.pipeline(f"matmul_{f}", mm)
        backend.pipeline(f"matmul_{f}", {"RESIDUAL": 1, **mm})
    backend.pipeline(f"embed_{model.embed_table.fmt.lower()}")
    for k in ("rmsnorm_f32", "rope_store_f32", "attention_f32", "attention_combine_f32", "swiglu_f32", "add_f32",
              "argmax_f32", "sample_f32"):
        backend.pipeline(k)


def _matrices(model):
    yield model.output
    for L in model.layers:
        yield from (L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down)


def _resolve_profile(profile, device):
    """A Profile from None (chosen for this device), a name, a dict {"name": ..., field: value}, or a Profile."""
    from ...capability import Profile, choose_profile, detect

    if isinstance(profile, Profile):
        return profile
    if profile is None or isinstance(profile, str):
        return choose_profile(detect(device), profile)
    overrides = dict(profile)
    return choose_profile(detect(device), overrides.pop("name", None), **overrides)


def load_planned(gguf, progress=None, *, device=None, profile=None,
                 on_fallback: Callable[[str], None] | None = None, fallback: bool = True):
    """The model of ``gguf`` on WebGPU as a :class:`PlannedModel`, or on numpy if WebGPU fails here.

    ``profile`` (a capability.Profile) sets the attention splits and the
    readback batch; by default it is chosen from this device's report.
    With ``fallback=False`` GPU errors propagate instead.
    """
    from ...backends.numpy_backend import NumpyBackend
    from ...model import load_model

    def numpy_model():
        return load_model(gguf, NumpyBackend())

    try:
        t0 = time.perf_counter()
        if device is None:
            from ...devices import open_device

            device = open_device()
        profile = _resolve_profile(profile, device)
        backend = WebGPUBackend(device, attn_splits=profile.attn_splits, matvec_lanes=profile.matvec_lanes,
                                 matvec_wg=profile.matvec_workgroup, matmul=profile.matmul,
                                 matvec_xshared=profile.matvec_x == "shared", matvec_unroll=profile.matvec_unroll)
        model = load_model(gguf, backend, progress)
        # Q/K/V and gate/up stacked now, so decode runs them as one matvec each (planner.py)
        backend.stack_groups([[L.wq, L.wk, L.wv] for L in model.layers if L.bq is None]
                             + [[L.w_gate, L.w_up] for L in model.layers])
        _precompile(backend, model)
        log.info("webgpu: %s, weights %.1f MB, loaded in %.2f s", device.info.describe(), backend.weight_bytes / 1e6,
                 time.perf_counter() - t0)
        pm = PlannedModel(model, backend, readback_batch=profile.readback_batch, numpy_fallback=numpy_model,
                          on_fallback=on_fallback)
        pm.profile = profile
        return pm
    except GPUError as e:
        if not fallback:
            raise
        msg = f"WebGPU is not usable here ({type(e).__name__}: {e}); running on the numpy backend"
        log.warning(msg)
        warnings.warn(msg, BackendFallbackWarning, stacklevel=2)
        if on_fallback:
            on_fallback(msg)
        model = load_model(gguf, NumpyBackend(), progress)
        model.fallback_reason = msg
        return model


__all__ = ["BackendFallbackWarning", "DeviceLogits", "PlannedModel", "WebGPUBackend", "load_planned"]
