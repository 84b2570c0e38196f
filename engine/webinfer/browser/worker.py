"""The Python side of the worker protocol: web/worker.js hands every message to :func:`handle`.

Messages are ``{kind, id, content}``.  Requests from the page:

    load          {model, backend?, cacheKey?, cache?, sha256?, size?, n_ctx?, chunkBytes?, verify?}
    generate      {prompt, options: {max_tokens, temperature, top_p, top_k, min_p, seed, stop,
                                     repetition_penalty, ignore_eos}}
    chat          {body: OpenAI chat.completions.create body (messages, stream, max_tokens, ...)}
    abort         {target: id of a running generate/chat}
    reset         {}   (empty the KV cache: the next prompt is prefilled from scratch)
    stats         {}
    capabilities  {}
    unload        {}

Replies carry the request's id: any number of ``progress`` (load) or
``chunk`` (generate: ``{text, token_id}``; chat: an OpenAI chunk object),
then exactly one ``return`` (the result) or ``throw``
(``{name, message, ...fields}``: the Python exception's class name, its
message, and the attributes it carries such as ``status`` and ``url``).

One model per worker; requests that use it run one at a time, in order.
Between generated tokens the loop yields to the event loop, which is when an
``abort`` message gets in.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import time
from typing import Any

from .. import _js
from ..errors import InvalidArgumentError, WebinferError
from ..formats.gguf import GGUFFile
from .cache import CHUNK_BYTES, CachedHttpSource, HttpRangeSource

PROGRESS_INTERVAL_S = 0.1  # at most 10 progress messages a second (the last one always goes)
GENERATE_OPTIONS = {"max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop",
                    "repetition_penalty", "ignore_eos"}
CHAT_IGNORED = {"stream_options", "model", "n"}  # accepted for OpenAI compatibility (n must be 1)


class _State:
    engine: Any = None
    load_stats: dict | None = None
    capabilities: dict | None = None
    last_generation: dict | None = None
    aborted: set = set()
    running: set = set()
    lock: asyncio.Lock | None = None


S = _State()


def _reply(kind: str, id: Any, content: Any = None) -> None:
    _js.post_message({"kind": kind, "id": id, "content": content})


def _error_content(e: BaseException) -> dict:
    out = {"name": type(e).__name__, "message": str(e) or type(e).__name__}
    for attr in ("status", "url", "offset", "needed", "available", "expected", "got", "n_tokens", "n_ctx"):
        v = getattr(e, attr, None)
        if isinstance(v, (int, float, str)):
            out[attr] = v
    if not isinstance(e, WebinferError):
        import traceback

        out["traceback"] = "".join(traceback.format_exception(e))[-4000:]
    return out


async def handle(kind: str, id: Any, content: Any = None) -> None:
    """Run one request and post its replies; never raises (errors become a ``throw`` reply)."""
    content = _js.to_py(content) or {}
    if kind == "abort":
        target = content.get("target")
        if target in S.running:
            S.aborted.add(target)
        _reply("return", id, {"aborted": target in S.running})
        return
    handler = HANDLERS.get(kind)
    try:
        if handler is None:
            raise InvalidArgumentError(f"unknown request kind {kind!r}; known: {', '.join(sorted(HANDLERS))}, abort")
        if S.lock is None:
            S.lock = asyncio.Lock()
        async with S.lock:
            result = await handler(id, content)
        _reply("return", id, result)
    except BaseException as e:  # noqa: BLE001 - everything must reach the page
        _reply("throw", id, _error_content(e))


# ------------------------------------------------------------------ loading


class _LoadProgress:
    """Merges download progress and the loader's tensor progress into one stream of messages."""

    def __init__(self, id: Any, source: str):
        self.id = id
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
        _reply("progress", self.id, dict(i))


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


def _model_info(engine, url: str) -> dict:
    a = engine.args
    return {"url": url, "name": a.name, "architecture": engine.gguf.architecture, "n_layers": a.n_layers,
            "vocab_size": a.vocab_size, "n_ctx": engine.session.n_ctx, "backend": engine.backend_name,
            "chat_template": engine.chat_template is not None}


def _need_engine():
    if S.engine is None:
        raise InvalidArgumentError("no model is loaded: call webinfer.load({model}) first")
    return S.engine


# --------------------------------------------------------------- generation


def _generation_kwargs(opts: dict) -> dict:
    unknown = set(opts) - GENERATE_OPTIONS
    if unknown:
        raise InvalidArgumentError(f"unknown generate options: {', '.join(sorted(unknown))}; "
                                   f"known: {', '.join(sorted(GENERATE_OPTIONS))}")
    kw = {k: v for k, v in opts.items() if v is not None}
    if "stop" in kw and isinstance(kw["stop"], str):
        kw["stop"] = [kw["stop"]]
    for k in ("max_tokens", "top_k", "seed"):
        if k in kw:
            if isinstance(kw[k], float) and kw[k].is_integer():
                kw[k] = int(kw[k])
            if not isinstance(kw[k], int) or isinstance(kw[k], bool):
                raise InvalidArgumentError(f"{k} must be an integer, got {kw[k]!r}")
    return kw


async def _generate(id: Any, c: dict) -> dict:
    engine = _need_engine()
    prompt = c.get("prompt")
    if not isinstance(prompt, str):
        raise InvalidArgumentError("generate needs a prompt string")
    kw = _generation_kwargs(c.get("options") or {})
    finish, n, t0 = None, 0, time.perf_counter()
    S.running.add(id)
    try:
        stream = engine.stream(prompt, **kw)
        for chunk in stream:
            if chunk.text:
                _reply("chunk", id, {"text": chunk.text, "token_id": chunk.token_id})
            n += 1
            if chunk.finish_reason:
                finish = chunk.finish_reason
                break
            await asyncio.sleep(0)  # let an abort message in
            if id in S.aborted:
                stream.close()
                finish = "abort"
                break
    finally:
        S.running.discard(id)
        S.aborted.discard(id)
    _record_generation(engine, finish, n, time.perf_counter() - t0)
    return {"finish_reason": finish, "stats": _stats()}


def _record_generation(engine, finish: str | None, n: int, elapsed: float) -> None:
    s = engine.last_stats
    if finish == "abort" or s is None:
        S.last_generation = {"completion_tokens": n, "elapsed_s": round(elapsed, 3), "finish_reason": finish}
    else:
        S.last_generation = {**s.as_dict(), "finish_reason": finish, "elapsed_s": round(elapsed, 3)}
    engine.last_stats = None


async def _chat(id: Any, c: dict) -> dict:
    engine = _need_engine()
    body = dict(c.get("body") or {})
    if body.get("n", 1) != 1:
        raise InvalidArgumentError("only n=1 is supported")
    stream = bool(body.pop("stream", False))
    for k in CHAT_IGNORED:
        body.pop(k, None)
    if "messages" not in body:
        raise InvalidArgumentError("chat.completions.create needs messages: [{role, content}, ...]")
    for k in ("max_tokens", "seed", "top_k"):
        if isinstance(body.get(k), float) and body[k].is_integer():
            body[k] = int(body[k])
    chunks = engine.chat.completions.create(stream=True, **body)
    S.running.add(id)
    text, finish, usage, head, n, t0 = [], None, {}, None, 0, time.perf_counter()
    try:
        for ch in chunks:
            head = head or ch
            choice = ch["choices"][0]
            piece = choice["delta"].get("content")
            if piece:
                text.append(piece)
            n += 1
            if choice.get("finish_reason"):
                finish, usage = choice["finish_reason"], ch.get("usage", {})
            if stream:
                _reply("chunk", id, ch)
            await asyncio.sleep(0)
            if id in S.aborted:
                chunks.close()
                finish = "abort"
                break
    finally:
        S.running.discard(id)
        S.aborted.discard(id)
    _record_generation(engine, finish, n, time.perf_counter() - t0)
    if finish != "abort" and usage:
        S.last_generation = {k: usage[k] for k in usage if k != "total_tokens"} | {
            "finish_reason": finish, "elapsed_s": round(time.perf_counter() - t0, 3)}
    if stream:
        return {"finish_reason": finish, "usage": usage, "stats": _stats()}
    return {"id": head["id"], "object": "chat.completion", "created": head["created"], "model": head["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                         "finish_reason": finish}],
            "usage": usage, "stats": _stats()}


# -------------------------------------------------------------- the rest


async def _reset(id: Any, c: dict) -> dict:
    _need_engine().session.reset()
    return {}


def _kv_cache_bytes() -> int | None:
    nbytes = getattr(S.engine.session.cache, "nbytes", None) if S.engine is not None else None
    if callable(nbytes):
        nbytes = nbytes()
    return int(nbytes) if nbytes is not None else None


def _stats() -> dict:
    return {"load": S.load_stats, "generation": S.last_generation,
            "memory": {"wasm_heap_bytes": _js.wasm_heap_bytes(), "kv_cache_bytes": _kv_cache_bytes()}}


async def _stats_handler(id: Any, c: dict) -> dict:
    return _stats()


async def _capabilities() -> dict:
    """What this browser offers (detected once per worker) and which backend the engine runs on."""
    if S.capabilities is None:
        from ..runtime.engine import BACKENDS

        caps: dict[str, Any] = {"environment": _js.environment(), "backends": sorted(BACKENDS)}
        try:  # capability/: the WebGPU adapter, features and limits, and the profile they select
            from ..capability import detect

            report = detect()
            if inspect.isawaitable(report):
                report = await report
            caps["detected"] = report.as_dict() if hasattr(report, "as_dict") else report
        except Exception as e:  # noqa: BLE001 - detection must never break loading
            caps["detect_error"] = f"{type(e).__name__}: {e}"
        caps["storage"] = await _js.storage_estimate()
        S.capabilities = caps
    backend = S.engine.backend_name if S.engine is not None else None
    return {**S.capabilities, "backend": backend}


async def _capabilities_handler(id: Any, c: dict) -> dict:
    return await _capabilities()


async def _unload(id: Any, c: dict) -> dict:
    S.engine = None
    S.load_stats = S.last_generation = None
    gc.collect()
    return {}


HANDLERS = {
    "load": _load,
    "generate": _generate,
    "chat": _chat,
    "reset": _reset,
    "stats": _stats_handler,
    "capabilities": _capabilities_handler,
    "unload": _unload,
}
