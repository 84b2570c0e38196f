"""The public, high-level API: load a model, generate text, chat in OpenAI's shape.

>>> import webinfer
>>> engine = webinfer.load()                       # the default model
>>> for piece in engine.generate("The capital of France is", max_tokens=8, temperature=0):
...     print(piece, end="")
>>> engine.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])["choices"][0]
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any, AsyncIterator, Callable, Iterable, Iterator

from ..backends.numpy_backend import NumpyBackend
from ..errors import ChatTemplateError, ContextOverflowError, InvalidArgumentError
from ..formats.gguf import GGUFFile
from ..formats.source import ByteSource
from ..model import load_model
from ..models import resolve_model
from ..tokenizer import Tokenizer
from ..tokenizer.chat_template import ChatTemplate
from .generate import GenerationChunk, GenerationStats, generate
from .sampler import SamplingParams
from .session import Session

DEFAULT_N_CTX = 2048  # KV cache positions; the default model was trained on 8192
BACKENDS = {"numpy": NumpyBackend, "webgpu": None,  # webgpu: backends.webgpu.load_planned (plans, GPU sampling)
            "wasm": None}  # wasm: backends.wasm_plan.load_wasm (WASM SIMD kernels; inside Pyodide only)

ProgressFn = Callable[[dict], None]


class Engine:
    """A loaded model with its tokenizer and one session (KV cache)."""

    def __init__(self, gguf: GGUFFile, *, backend: str = "numpy", n_ctx: int | None = None,
                 progress: ProgressFn | None = None, profile: str | dict | None = None,
                 kv_dtype: str | None = None):
        if backend not in BACKENDS:
            raise InvalidArgumentError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
        self.gguf = gguf
        self.tokenizer = Tokenizer.from_gguf_metadata(gguf.metadata)
        t0 = time.perf_counter()

        def on_tensor(done: int, total: int, n_done: int, n_total: int, name: str) -> None:
            if progress:
                elapsed = time.perf_counter() - t0
                progress({"loaded": done, "total": total, "tensors": n_done, "n_tensors": n_total,
                          "name": name, "elapsed_s": elapsed,
                          "progress": done / total if total else 1.0,
                          "text": f"loading {name}"})

        if backend == "webgpu":  # numpy instead, with a warning, if WebGPU is not usable (profile: capability/)
            from ..backends.webgpu import load_planned

            self.model = load_planned(gguf, on_tensor, profile=profile)
        elif backend == "wasm":  # WasmUnavailableError outside Pyodide: backend="numpy" runs everywhere
            from ..backends.wasm_plan import load_wasm

            self.model = load_wasm(gguf, on_tensor)
        else:
            self.model = load_model(gguf, BACKENDS[backend](), on_tensor)
        self.backend_name = getattr(self.model, "backend_name", backend)
        self.load_s = time.perf_counter() - t0
        self.args = self.model.args
        n_ctx = n_ctx or min(DEFAULT_N_CTX, self.args.context_length)
        self.session = Session(self.model, n_ctx, kv_dtype=kv_dtype)  # kv_dtype: f32 | f16 | int8 | int4 (numpy)
        if hasattr(self.model, "stop_ids"):  # the GPU sampler marks what follows a stop token
            self.model.stop_ids = list(self.tokenizer.eog_ids)
        template = gguf.metadata.get("tokenizer.chat_template")
        self.chat_template = ChatTemplate(template) if isinstance(template, str) else None
        self.last_stats: GenerationStats | None = None
        self.chat = _Chat(self)

    @classmethod
    def load(cls, model: str | os.PathLike | ByteSource | None = None, **kw) -> "Engine":
        """Load a GGUF model from a path, a registry name, a ByteSource, or the default model."""
        if model is not None and not isinstance(model, (str, os.PathLike)):
            return cls(GGUFFile(model), **kw)
        return cls(GGUFFile.open(resolve_model(model)), **kw)

    @property
    def capabilities(self):
        """The capability report (WebGPU adapter, features, limits; JSPI, SIMD, memory in the browser)."""
        from ..capability import detect

        device = getattr(getattr(self.model, "be", None), "device", None)
        return detect(device)

    # --------------------------------------------------------------- text

    def tokenize(self, text: str, *, parse_special: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special=True, parse_special=parse_special)

    def stream(self, prompt: str | list[int], *, max_tokens: int = 256, stop: Iterable[str] | str = (),
               ignore_eos: bool = False, parse_special: bool = False, **sampling: Any) -> Iterator[GenerationChunk]:
        """Stream :class:`GenerationChunk` s for a prompt (text or token ids)."""
        if max_tokens < 1:
            raise InvalidArgumentError(f"max_tokens must be >= 1, got {max_tokens}")
        ids = prompt if isinstance(prompt, list) else self.tokenize(prompt, parse_special=parse_special)
        if not ids:
            raise InvalidArgumentError("the prompt is empty")
        if len(ids) >= self.session.n_ctx:
            raise ContextOverflowError(len(ids), self.session.n_ctx)
        params = SamplingParams(**sampling)
        stops = [stop] if isinstance(stop, str) else list(stop)
        for chunk in generate(self.session, self.tokenizer, ids, max_tokens=max_tokens, sampling=params,
                              stop=stops, ignore_eos=ignore_eos):
            if chunk.stats is not None:
                self.last_stats = chunk.stats
            yield chunk

    def generate(self, prompt: str | list[int], **kw: Any) -> Iterator[str]:
        """Stream the completion of ``prompt`` as text pieces (see :meth:`stream` for options)."""
        for chunk in self.stream(prompt, **kw):
            if chunk.text:
                yield chunk.text

    def complete(self, prompt: str | list[int], **kw: Any) -> str:
        return "".join(self.generate(prompt, **kw))

    async def agenerate(self, prompt: str | list[int], **kw: Any) -> AsyncIterator[str]:
        """Async twin of :meth:`generate`; yields to the event loop between tokens."""
        for chunk in self.stream(prompt, **kw):
            if chunk.text:
                yield chunk.text
            await asyncio.sleep(0)

    # --------------------------------------------------------------- chat

    def apply_chat_template(self, messages: list[dict], *, add_generation_prompt: bool = True) -> str:
        if self.chat_template is None:
            raise ChatTemplateError("this model file has no chat template (tokenizer.chat_template)")
        tok = self.tokenizer
        return self.chat_template.render(
            messages, add_generation_prompt=add_generation_prompt,
            bos_token=tok.id_to_piece(tok.bos_id) if tok.bos_id is not None else "",
            eos_token=tok.id_to_piece(tok.eos_id) if tok.eos_id is not None else "",
        )

    def chat_ids(self, messages: list[dict]) -> list[int]:
        _check_messages(messages)
        text = self.apply_chat_template(messages)
        # The template writes BOS itself where the model wants one.
        return self.tokenizer.encode(text, add_special=False, parse_special=True)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidArgumentError("messages must be a non-empty list of {role, content} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InvalidArgumentError(f"messages[{i}] must be a dict with string 'role' and 'content'")


_OPENAI_SAMPLING = {"temperature", "top_p", "top_k", "min_p", "seed", "repetition_penalty"}


class _Completions:
    def __init__(self, engine: Engine):
        self._engine = engine

    def create(self, *, messages: list[dict], stream: bool = False, max_tokens: int = 256,
               stop: str | list[str] | None = None, model: str | None = None, **opts: Any):
        """OpenAI-shaped chat completion: a response dict, or an iterator of chunk dicts if ``stream``."""
        unknown = set(opts) - _OPENAI_SAMPLING
        if unknown:
            raise InvalidArgumentError(f"unsupported options: {', '.join(sorted(unknown))}")
        if opts.get("temperature") is None:
            opts.pop("temperature", None)
        e = self._engine
        ids = e.chat_ids(messages)
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        name = model or e.args.name or "webinfer"
        chunks = e.stream(ids, max_tokens=max_tokens, stop=stop or (), **opts)
        if stream:
            return self._stream(chunks, cid, created, name)
        text, finish, stats = [], None, None
        for c in chunks:
            text.append(c.text)
            finish, stats = c.finish_reason or finish, c.stats or stats
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                         "finish_reason": finish}],
            "usage": _usage(stats),
        }

    def _stream(self, chunks: Iterator[GenerationChunk], cid: str, created: int, name: str) -> Iterator[dict]:
        def envelope(delta: dict, finish: str | None) -> dict:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        yield envelope({"role": "assistant", "content": ""}, None)
        for c in chunks:
            if c.text:
                yield envelope({"content": c.text}, None)
            if c.finish_reason:
                last = envelope({}, c.finish_reason)
                last["usage"] = _usage(c.stats)
                yield last

    async def acreate(self, **kw: Any):
        """Async twin of :meth:`create` (streamed chunks come as an async iterator)."""
        result = self.create(**kw)
        if not kw.get("stream"):
            return result

        async def agen():
            for chunk in result:
                yield chunk
                await asyncio.sleep(0)
        return agen()


def _usage(stats: GenerationStats | None) -> dict:
    if stats is None:
        return {}
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens, **stats.as_dict()}


class _Chat:
    def __init__(self, engine: Engine):
        self.completions = _Completions(engine)


def load(model: str | os.PathLike | ByteSource | None = None, **kw: Any) -> Engine:
    """Load a model: a GGUF path, a known model name, a ByteSource, or None for the default model."""
    return Engine.load(model, **kw)
