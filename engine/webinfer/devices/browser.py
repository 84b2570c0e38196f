"""The device over the browser's ``navigator.gpu``, through Pyodide's FFI (``webinfer._js``).

Works in a page and in a dedicated Worker (where webinfer's runtime runs).
Blocking calls (adapter, device, pipelines, readback) wait on promises with
``run_sync``, which needs JSPI (on by default in Chromium; ``_js.can_wait``).

The hot path costs one Python-to-JS call per :meth:`run`: a prepared
program is a JS array ``[op, ...]`` built once, and a small JS function
(``_ENCODER``) walks it, encodes every dispatch, submits once and starts the
readback; Python then waits once for the mapped bytes.

Pitfalls of WebGPU through Pyodide's FFI (seen, and why the code is so):

1. Descriptors must be plain JS objects: ``to_js(d)`` makes a ``Map``, which
   WebGPU silently misreads (a 64-byte buffer came out 2 bytes long).
   Always ``_js.js_object(d)`` (``to_js(..., dict_converter=Object.fromEntries)``).
2. ``writeBuffer`` wants a flat typed array; a 2-D numpy array converts to an
   Array of arrays and fails.  We pass a ``Uint8Array`` view of the numpy
   bytes in the WASM heap (``_js.heap_bytes``): no copy on the Python side,
   and ``writeBuffer`` copies it before returning.
3. Readback: ``mapAsync`` (awaited), ``getMappedRange`` copied out with
   ``slice`` before ``unmap`` (the range is detached by unmap), then
   ``to_bytes`` into Python.  The encoder function does the map in JS.
4. A Python callable that JS calls later (the ``device.lost`` handler) must
   be wrapped with ``create_proxy`` and kept alive, or the proxy is destroyed
   and the promise never resolves: a silent hang.  Every wait has a timeout
   (``_js.wait``).
5. ``requestDevice()`` without ``requiredLimits`` gives the spec defaults
   (a 128 MiB storage binding); we ask for the adapter's own limits.
6. Errors do not throw: a failed create returns an invalid object and
   reports through error scopes.  Each create call here runs inside a
   validation and an out-of-memory scope whose results are awaited, so the
   failing step is named; pipelines use ``createComputePipelineAsync`` and
   ``getCompilationInfo`` for the WGSL messages.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import _js
from ..errors import (DeviceLostError, GPUError, GPUOutOfMemoryError, GPUUnavailableError, GPUValidationError,
                      ShaderCompileError)
from .base import (COPY_ALIGN, OPTIONAL_FEATURES, REQUESTED_LIMITS, AdapterInfo, BindGroup, Buffer, BufferUsage,
                   Copy, Device, Dispatch, Pipeline, Program, Readback, align)

# JS: (device, programs, readbacks, staging) -> Promise<Uint8Array> | null
# programs: Array of prepared arrays; op [0, pipeline, bindGroup, x, y, z] or [1, src, srcOff, dst, dstOff, size]
# readbacks: Array of [buffer, offset, nbytes (a multiple of 4)], copied back to back into staging.
_ENCODER = ("device", "programs", "readbacks", "staging", """
const enc = device.createCommandEncoder();
let pass = null, last = null;
for (const prog of programs) {
  for (const op of prog) {
    if (op[0] === 0) {
      if (pass === null) { pass = enc.beginComputePass(); last = null; }
      if (op[1] !== last) { pass.setPipeline(op[1]); last = op[1]; }
      pass.setBindGroup(0, op[2]);
      pass.dispatchWorkgroups(op[3], op[4], op[5]);
    } else {
      if (pass !== null) { pass.end(); pass = null; }
      enc.copyBufferToBuffer(op[1], op[2], op[3], op[4], op[5]);
    }
  }
}
if (pass !== null) pass.end();
let total = 0;
for (const r of readbacks) { enc.copyBufferToBuffer(r[0], r[1], staging, total, r[2]); total += r[2]; }
device.queue.submit([enc.finish()]);
if (readbacks.length === 0) return null;
return staging.mapAsync(GPUMapMode.READ, 0, total).then(() => {
  const out = new Uint8Array(staging.getMappedRange(0, total).slice(0));
  staging.unmap();
  return out;
});
""")

# JS: (device, fn) -> Promise<[validationMessage | null, oomMessage | null, value]>: fn() inside two error scopes
_SCOPED = ("device", "fn", """
device.pushErrorScope('out-of-memory');
device.pushErrorScope('validation');
let value = null, thrown = null;
try { value = fn(); } catch (e) { thrown = String((e && e.message) || e); }
return device.popErrorScope().then((v) => device.popErrorScope().then((o) =>
  [thrown || (v ? v.message : null), o ? o.message : null, value]));
""")

# JS: (device, code, label, constants) -> Promise<{ok, pipeline, messages}>
_PIPELINE = ("device", "code", "label", "constants", """
const module = device.createShaderModule({code, label});
return module.getCompilationInfo().then((info) => {
  const errors = info.messages.filter((m) => m.type === 'error')
    .map((m) => `${label}:${m.lineNum}:${m.linePos}: ${m.message}`);
  if (errors.length) return {ok: false, messages: errors.join('\\n')};
  const compute = {module, entryPoint: 'main'};
  if (constants) compute.constants = constants;
  return device.createComputePipelineAsync({layout: 'auto', compute, label})
    .then((pipeline) => ({ok: true, pipeline}), (e) => ({ok: false, messages: String((e && e.message) || e)}));
});
""")

WAIT_S = 60.0          # longest wait for the GPU before the device is declared hung


class BrowserDevice(Device):
    kind = "browser"

    @classmethod
    def create(cls, power_preference: str = "high-performance") -> "BrowserDevice":
        """Request an adapter and a device with the adapter's limits (blocks; needs JSPI)."""
        if not _js.IN_PYODIDE:
            raise GPUUnavailableError("the browser device needs Pyodide (navigator.gpu)")
        js = _js.js
        if not _js.can_wait():
            raise GPUUnavailableError("WebGPU from Python needs JSPI to wait for the GPU (run_sync); "
                                      "this browser or context does not offer it")
        gpu = getattr(js.navigator, "gpu", None)
        if gpu is None:
            raise GPUUnavailableError("navigator.gpu is missing: WebGPU is disabled or unsupported in this browser")
        try:
            adapter = _js.wait(gpu.requestAdapter(_js.js_object({"powerPreference": power_preference})),
                               timeout_s=WAIT_S, what="requestAdapter")
        except _js.JsRejection as e:
            raise GPUUnavailableError(f"requestAdapter failed: {e}") from None
        if adapter is None:
            raise GPUUnavailableError("navigator.gpu.requestAdapter() found no adapter")
        return cls(adapter)

    def __init__(self, adapter):
        super().__init__()
        js = _js.js
        self._adapter = adapter
        info = getattr(adapter, "info", None)

        def field(name: str) -> str:
            v = getattr(info, name, "") if info is not None else ""
            return "" if v is None else str(v)

        fallback = bool(getattr(info, "isFallbackAdapter", False) or getattr(adapter, "isFallbackAdapter", False))
        self.info = AdapterInfo(vendor=field("vendor"), architecture=field("architecture"), device=field("device"),
                                description=field("description"), backend="browser",
                                adapter_type="cpu" if fallback else "", is_fallback=fallback)
        self.adapter_features = frozenset(str(f) for f in js.Array.from_(adapter.features))
        self.adapter_limits = {k: int(getattr(adapter.limits, k)) for k in REQUESTED_LIMITS
                               if getattr(adapter.limits, k, None) is not None}
        want = [f for f in OPTIONAL_FEATURES if f in self.adapter_features]
        desc = _js.js_object({"requiredFeatures": want, "requiredLimits": dict(self.adapter_limits),
                              "label": "webinfer"})
        try:
            self._device = _js.wait(adapter.requestDevice(desc), timeout_s=WAIT_S, what="requestDevice")
        except _js.JsRejection as e:
            raise GPUUnavailableError(f"the adapter refused a device: {e}") from None
        self.features = frozenset(str(f) for f in js.Array.from_(self._device.features))
        self.limits = {k: int(getattr(self._device.limits, k)) for k in REQUESTED_LIMITS
                       if getattr(self._device.limits, k, None) is not None}

        def on_lost(lost_info):
            self.lost_reason = f"{lost_info.reason}: {lost_info.message}"

        self._lost_proxy = _js.create_proxy(on_lost)       # pitfall 4: kept alive with the device
        self._device.lost.then(self._lost_proxy)
        self._encoder = _js.js_function(*_ENCODER)
        self._scoped = _js.js_function(*_SCOPED)
        self._make_pipeline = _js.js_function(*_PIPELINE)
        self._fns: dict = {}
        self._staging: Buffer | None = None
        self._queue = self._device.queue

    # ------------------------------------------------------------------ errors

    def _checked(self, step: str, fn_src: tuple, *args):
        """Run a JS create call inside error scopes; raise the named error, else return its value."""
        self.check_alive(step)
        fn = self._fns.get(fn_src)
        if fn is None:
            fn = self._fns[fn_src] = _js.js_function(*fn_src)
        bound = fn.bind(None, *args)
        try:
            v_msg, oom_msg, value = _js.wait(self._scoped(self._device, bound), timeout_s=WAIT_S, what=step)
        except _js.JsRejection as e:
            raise self._error(str(e), step) from None
        if oom_msg:
            raise GPUOutOfMemoryError(str(oom_msg), step=step)
        if v_msg:
            raise self._error(str(v_msg), step)
        return value

    def _error(self, msg: str, step: str) -> GPUError:
        if self.lost_reason is not None or "lost" in msg.lower():
            return DeviceLostError(f"the GPU device was lost ({self.lost_reason or msg})",
                                   reason=self.lost_reason or msg, step=step)
        return GPUValidationError(msg, step=step)

    # ------------------------------------------------------------------ memory

    def create_buffer(self, nbytes: int, usage: int = int(BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST),
                      label: str = "") -> Buffer:
        size = max(align(int(nbytes), COPY_ALIGN), COPY_ALIGN)
        desc = _js.js_object({"size": size, "usage": int(usage), "label": label})
        h = self._checked(f"create buffer {label!r} of {size} bytes",
                          ("device", "desc", "return device.createBuffer(desc);"), self._device, desc)
        self.stats.buffers_created += 1
        return Buffer(h, size, int(usage), label)

    def write_buffer(self, buf: Buffer, data: np.ndarray, offset: int = 0) -> None:
        self.check_alive("write buffer")
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)     # pitfall 2: flat bytes
        if raw.size % COPY_ALIGN:
            raw = np.concatenate([raw, np.zeros(COPY_ALIGN - raw.size % COPY_ALIGN, np.uint8)])
        self._queue.writeBuffer(buf.handle, int(offset), _js.heap_bytes(raw))
        self.stats.writes += 1
        self.stats.bytes_written += raw.size

    def destroy_buffer(self, buf: Buffer) -> None:
        if not buf.destroyed:
            buf.destroyed = True
            buf.handle.destroy()

    # ------------------------------------------------------------------ programs

    def _create_pipeline(self, name: str, source: str, constants: dict) -> Pipeline:
        self.check_alive(f"create pipeline {name}")
        consts = _js.js_object(dict(constants)) if constants else None
        try:
            r = _js.wait(self._make_pipeline(self._device, source, name, consts), timeout_s=WAIT_S,
                         what=f"compile {name}")
        except _js.JsRejection as e:
            raise self._error(str(e), f"create pipeline {name}") from None
        if not r.ok:
            if self.lost_reason is not None:
                raise self._error(str(r.messages), f"create pipeline {name}")
            raise ShaderCompileError(str(r.messages), shader=name, step=f"create pipeline {name}")
        return Pipeline(r.pipeline, name, r.pipeline.getBindGroupLayout(0))

    def bind_group(self, pipeline: Pipeline, bindings, label: str = "") -> BindGroup:
        entries = []
        items = bindings.items() if isinstance(bindings, dict) else enumerate(bindings)
        for i, b in items:
            if isinstance(b, Buffer):
                entries.append({"binding": i, "resource": {"buffer": b.handle, "offset": 0, "size": b.size}})
            else:
                buf, off, size = b
                entries.append({"binding": i, "resource": {"buffer": buf.handle, "offset": int(off),
                                                           "size": int(size)}})
        desc = _js.js_object({"layout": pipeline.layout, "entries": entries, "label": label or pipeline.name})
        h = self._checked(f"create bind group for {pipeline.name}",
                          ("device", "desc", "return device.createBindGroup(desc);"), self._device, desc)
        self.stats.bind_groups_created += 1
        return BindGroup(h, pipeline)

    def prepare(self, steps, label: str = "") -> Program:
        ops = []
        for s in steps:
            if isinstance(s, Dispatch):
                ops.append(_js.js_array([0, s.pipeline.handle, s.bind_group.handle, *s.counts]))
            else:
                ops.append(_js.js_array([1, s.src.handle, s.src_offset, s.dst.handle, s.dst_offset, s.size]))
        return Program(list(steps), _js.js_array(ops), label)

    def _staging_buffer(self, nbytes: int) -> Buffer:
        if self._staging is None or self._staging.size < nbytes:
            if self._staging is not None:
                self.destroy_buffer(self._staging)
            self._staging = self.create_buffer(max(align(nbytes, 4096), 4096),
                                               BufferUsage.MAP_READ | BufferUsage.COPY_DST, "readback")
        return self._staging

    def run(self, programs: Sequence[Program], readback: Sequence[Readback] = ()) -> list[np.ndarray]:
        self.check_alive("submit")
        spans, rb, at = [], [], 0
        for r in readback:
            n = align(r.nbytes, COPY_ALIGN)
            rb.append(_js.js_array([r.buffer.handle, int(r.offset), n]))
            spans.append((at, r.nbytes))
            at += n
        staging = self._staging_buffer(at) if readback else None
        # the one crossing: JS encodes every dispatch, submits, and maps the readback
        promise = self._encoder(self._device, _js.js_array([p.native for p in programs]), _js.js_array(rb),
                                staging.handle if staging is not None else None)
        st = self.stats
        st.submits += 1
        st.runs += 1
        st.dispatches += sum(p.n_dispatches for p in programs)
        if not readback:
            return []
        try:
            data = _js.wait(promise, timeout_s=WAIT_S, what="GPU work and readback")
        except _js.JsRejection as e:
            raise self._error(str(e), "readback") from None
        mem = np.frombuffer(data.to_bytes(), dtype=np.uint8)              # pitfall 3: one copy into Python
        st.reads += len(spans)
        st.bytes_read += sum(n for _, n in spans)
        return [mem[a : a + n].copy() for a, n in spans]

    def synchronize(self) -> None:
        self.check_alive("synchronize")
        _js.wait(self._queue.onSubmittedWorkDone(), timeout_s=WAIT_S, what="onSubmittedWorkDone")

    def destroy(self) -> None:
        try:
            self._device.destroy()
        finally:
            if self.lost_reason is None:
                self.lost_reason = "destroyed"
