"""Load a GGUF model from a URL inside Pyodide running in a Web Worker.

Used by webinfer's own worker (web/worker.js) and usable directly wherever
Python runs in a dedicated worker, e.g. a JupyterLite notebook::

    import webinfer.browser
    engine = await webinfer.browser.load("/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    async for piece in engine.agenerate("The capital of France is", max_tokens=8, temperature=0):
        print(piece, end="")

The file streams into the GGUF reader and the model loader as it downloads
(see :mod:`.cache`); progress is reported as one merged stream of dicts
``{phase, progress, loaded, total, text, tensors, n_tensors, rate, ...}``.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import _js
from ..formats.gguf import GGUFFile
from .cache import CHUNK_BYTES, CachedHttpSource, HttpRangeSource

PROGRESS_INTERVAL_S = 0.1  # at most 10 progress reports a second (the last one always goes)

ProgressFn = Callable[[dict], None]


class LoadProgress:
    """Merges download progress and the loader's tensor progress into one stream of reports."""

    def __init__(self, emit: ProgressFn | None, source: str):
        self._out = emit
        self.t0 = _js.now_s()
        self.last = 0.0
        self.info = {"phase": "download", "progress": 0.0, "loaded": 0, "total": 0, "tensors": 0, "n_tensors": 0,
                     "rate": 0.0, "network_bytes": 0, "cached_bytes": 0, "source": source}
        self.first_tensor_s: float | None = None

    def download(self, d: dict) -> None:
        i = self.info
        if d.get("phase") == "verify":
            i["phase"] = "verify"
            self.emit(d.get("text", "verifying"), force=True)
            return
        i["loaded"] = d.get("downloaded", i["loaded"])
        i["total"] = d.get("total") or i["total"]
        i["rate"] = round(d.get("rate", 0.0))
        i["network_bytes"] = d.get("network_bytes", 0)
        i["cached_bytes"] = d.get("cached_bytes", 0)
        self.emit()

    def tensor(self, p: dict) -> None:
        i = self.info
        if self.first_tensor_s is None:
            self.first_tensor_s = _js.now_s() - self.t0
        i["phase"] = "tensors"
        i["tensors"], i["n_tensors"] = p["tensors"], p["n_tensors"]
        i["progress"] = round(p["progress"], 4)
        i["name"] = p["name"]
        self.emit(force=p["tensors"] == p["n_tensors"])

    def emit(self, text: str | None = None, force: bool = False) -> None:
        now = _js.now_s()
        if not force and now - self.last < PROGRESS_INTERVAL_S:
            return
        self.last = now
        i = self.info
        if text is None:
            mb = lambda n: f"{n / 1e6:.1f}"  # noqa: E731
            if i["network_bytes"] and i["loaded"] < i["total"]:
                text = f"downloading {mb(i['loaded'])} of {mb(i['total'])} MB ({i['rate'] / 1e6:.1f} MB/s)"
            elif i["source"] == "cache":
                text = "loading from the browser cache"
            else:
                text = "loading"
            if i["n_tensors"]:
                text += f", {i['tensors']}/{i['n_tensors']} tensors"
        i["text"] = text
        i["elapsed_s"] = round(now - self.t0, 3)
        if self._out is not None:
            self._out(dict(i))


async def _load(id: Any, c: dict) -> dict:
    from ..runtime.engine import Engine

    url = c.get("model")
    if not isinstance(url, str) or not url:
        raise InvalidArgumentError("load needs {model: URL of a GGUF file}")
    if S.engine is not None:
        await _unload(id, {})
    heap0 = _js.wasm_heap_bytes()
    t0 = _js.now_s()
    use_cache = c.get("cache", True)
    prog = _LoadProgress(id, "network")
    src = None
    if use_cache:
        try:
            src = await CachedHttpSource.open(url, key=c.get("cacheKey") or url, sha256=c.get("sha256"),
                                              size=c.get("size"), chunk=int(c.get("chunkBytes") or CHUNK_BYTES),
                                              progress=prog.download, verify=c.get("verify", True))
        except _js.StorageUnavailable as e:  # no OPFS (private mode, file locked by another tab): load uncached
            note = f"browser storage unavailable, loading without the cache: {e}"
    if src is None:
        src = HttpRangeSource(url, progress=prog.download)
        if use_cache:
            src.report.events.append(note)
    prog.info["source"] = src.report.source
    prog.info["total"] = src.size
    if src.report.source == "cache":
        prog.info["loaded"] = src.size
    try:
        t_header = _js.now_s()
        gguf = GGUFFile(src)
        header_s = _js.now_s() - t_header
        engine = Engine(gguf, backend=c.get("backend") or "numpy", n_ctx=c.get("n_ctx"), progress=prog.tensor)
        report = src.finish()
    finally:
        src.close()
    prog.info.update(loaded=src.size, progress=1.0, phase="ready")
    prog.emit("ready", force=True)
    load_s = _js.now_s() - t0
    heap1 = _js.wasm_heap_bytes()
    S.engine = engine
    S.load_stats = {
        **report.as_dict(),
        "load_s": round(load_s, 3),
        "header_s": round(header_s, 3),
        "first_tensor_s": round(prog.first_tensor_s or 0.0, 3),
        "file_bytes": src.size,
        "wasm_heap_before_bytes": heap0,
        "wasm_heap_peak_bytes": heap1,  # WASM memory never shrinks: its size now is the peak of the load
    }
    gc.collect()
    return {"model": _model_info(engine, url), "stats": _stats(), "capabilities": await _capabilities()}


async def load_url(url: str, *, backend: str = "numpy", n_ctx: int | None = None, cache: bool = True,
                   cache_key: str | None = None, sha256: str | None = None, size: int | None = None,
                   verify: bool = True, chunk_bytes: int = CHUNK_BYTES, on_progress: ProgressFn | None = None):
    """Download (or read from the browser cache) and load a GGUF model; returns an :class:`Engine`.

    ``cache=False`` reads ranges straight from the network and stores nothing.
    ``engine.load_stats`` tells how the file was obtained and what it cost.
    The source stays open for reads after the load (``engine.gguf.close()``
    releases it); a cached file is then held with a shared read-only handle.
    Needs a dedicated worker (synchronous XHR and OPFS sync handles).
    """
    from ..runtime.engine import Engine

    heap0 = _js.wasm_heap_bytes()
    t0 = _js.now_s()
    prog = LoadProgress(on_progress, "network")
    src = None
    note = None
    if cache:
        try:
            src = await CachedHttpSource.open(url, key=cache_key or url, sha256=sha256, size=size, chunk=chunk_bytes,
                                              progress=prog.download, verify=verify)
        except _js.StorageUnavailable as e:  # no OPFS (private mode, file locked by another tab): load uncached
            note = f"browser storage unavailable, loading without the cache: {e}"
    if src is None:
        src = HttpRangeSource(url, progress=prog.download)
        if note:
            src.report.events.append(note)
    prog.info["source"] = src.report.source
    prog.info["total"] = src.size
    if src.report.source == "cache":
        prog.info["loaded"] = src.size
    try:
        t_header = _js.now_s()
        gguf = GGUFFile(src)
        header_s = _js.now_s() - t_header
        engine = Engine(gguf, backend=backend, n_ctx=n_ctx, progress=prog.tensor)
        report = src.finish()
        if isinstance(src, CachedHttpSource):
            await src.share()  # stays open for the engine (read-only, shared): engine.gguf.close() releases it
    except BaseException:
        src.close()
        raise
    prog.info.update(loaded=src.size, progress=1.0, phase="ready")
    prog.emit("ready", force=True)
    engine.load_stats = {
        **report.as_dict(),
        "load_s": round(_js.now_s() - t0, 3),
        "header_s": round(header_s, 3),
        "first_tensor_s": round(prog.first_tensor_s or 0.0, 3),
        "file_bytes": src.size,
        "wasm_heap_before_bytes": heap0,
        "wasm_heap_peak_bytes": _js.wasm_heap_bytes(),  # WASM memory never shrinks: its size now is the load's peak
    }
    return engine
