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
from .cache import CHUNK_BYTES
from .loader import load_url

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


async def _load(id: Any, c: dict) -> dict:
    url = c.get("model")
    if not isinstance(url, str) or not url:
        raise InvalidArgumentError("load needs {model: URL of a GGUF file}")
    if S.engine is not None:
        await _unload(id, {})
    engine = await load_url(url, backend=c.get("backend") or "numpy", n_ctx=c.get("n_ctx"), cache=c.get("cache", True),
                            cache_key=c.get("cacheKey"), sha256=c.get("sha256"), size=c.get("size"),
                            verify=c.get("verify", True), chunk_bytes=int(c.get("chunkBytes") or CHUNK_BYTES),
                            on_progress=lambda p: _reply("progress", id, p))
    S.engine = engine
    S.load_stats = engine.load_stats
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
    if S.engine is not None:
        S.engine.gguf.close()  # the model file's storage handle
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
