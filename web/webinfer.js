// GENERATED from webinfer.mjs by scripts/build_web.py: edit webinfer.mjs, then run that script.
// <script src="webinfer.js"></script> defines window.webinfer = {load, cache, WebinferError, ...}.
(function () {
"use strict";
const __webinferScriptURL = (typeof document !== "undefined" && document.currentScript && document.currentScript.src) ||
  (typeof location !== "undefined" ? location.href : "");
// webinfer: LLM inference in the browser. Python (Pyodide) runs the model in a
// dedicated Web Worker; this module is the page's side.
//
//   import * as webinfer from "./webinfer.mjs";      // or <script src="webinfer.js">
//   const engine = await webinfer.load({ model: "models/SmolLM2-135M-Instruct.Q4_1.gguf",
//                                        onProgress: (p) => console.log(p.text) });
//   for await (const piece of engine.generate("The capital of France is", { max_tokens: 16 }))
//     out.textContent += piece;
//
// This file is the source; web/webinfer.js (the script-tag build) is generated
// from it by scripts/build_web.py. Errors are WebinferError objects whose
// `name` says what happened (DownloadError, StorageQuotaError, IntegrityError,
// InvalidArgumentError, ContextOverflowError, AbortError, TimeoutError,
// BootError, WorkerError, ...) and whose message says what to do.

const VERSION = "0.1.0";
const PYODIDE_VERSION = "0.27.7";
const PYODIDE_CDN_URL = `https://cdn.jsdelivr.net/pyodide/v${PYODIDE_VERSION}/full/`;

// Each wait is bounded. Boot/load/generation are *stall* timeouts: the clock
// restarts at every message from the worker (progress, chunk), so a slow but
// moving download never times out, and a stuck one does.
const DEFAULT_TIMEOUTS = {
  boot: 180000,     // Pyodide + numpy + the wheel: ~13 MB from the CDN
  load: 120000,     // between two progress messages while loading the model
  generate: 300000, // between two tokens (a long prompt's prefill comes first)
  request: 60000,   // small requests: stats, reset, unload
};

const OPFS_FOLDER = "webinfer";

class WebinferError extends Error {
  constructor(message, { name = "WebinferError", cause, ...fields } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = name;
    Object.assign(this, fields);
  }
}

const abortError = (what) => new WebinferError(`${what} was aborted`, { name: "AbortError" });

function scriptBase() {
  return new URL(".", __webinferScriptURL).href;
}

function absolute(url, base) {
  return new URL(url, base || (typeof document !== "undefined" ? document.baseURI : self.location.href)).href;
}

function makeWorker(workerURL) {
  const sameOrigin = new URL(workerURL).origin === self.location.origin;
  if (sameOrigin) return new Worker(workerURL, { name: "webinfer" });
  // A worker script must be same-origin: bootstrap a cross-origin one (a CDN) from a blob.
  const blob = new Blob([`importScripts(${JSON.stringify(workerURL)});`], { type: "text/javascript" });
  return new Worker(URL.createObjectURL(blob), { name: "webinfer" });
}

// ------------------------------------------------------------------ transport

class Rpc {
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map();
    this.dead = null;
    worker.onmessage = (ev) => this._dispatch(ev.data || {});
    worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.terminate(new WebinferError(`the webinfer worker failed: ${ev.message || "unknown error"} ` +
        "(this often means the tab ran out of memory)", { name: "WorkerError" }));
    };
    worker.onmessageerror = () => this.terminate(new WebinferError("a message from the worker could not be read",
      { name: "WorkerError" }));
  }

  // Send a request; returns {id, promise}. onProgress/onChunk get the intermediate replies.
  request(kind, content, { onProgress, onChunk, timeoutMs = DEFAULT_TIMEOUTS.request } = {}) {
    if (this.dead) return { id: 0, promise: Promise.reject(this.dead) };
    const id = this.nextId++;
    let entry;
    const promise = new Promise((resolve, reject) => {
      entry = { kind, resolve, reject, onProgress, onChunk, timeoutMs, timer: null };
    });
    entry.touch = () => {
      clearTimeout(entry.timer);
      entry.timer = setTimeout(() => {
        const err = new WebinferError(`no answer from the webinfer worker for ${timeoutMs / 1000} s during ` +
          `"${kind}"; it was stopped`, { name: "TimeoutError" });
        this.terminate(err);
      }, timeoutMs);
    };
    entry.touch();
    this.pending.set(id, entry);
    this.worker.postMessage({ kind, id, content });
    return { id, promise };
  }

  // Fire and forget (abort): no reply is awaited.
  send(kind, content) {
    if (!this.dead) this.worker.postMessage({ kind, id: this.nextId++, content });
  }

  _dispatch({ kind, id, content }) {
    const p = this.pending.get(id);
    if (!p) return;
    p.touch();
    if (kind === "progress") p.onProgress?.(content);
    else if (kind === "chunk") p.onChunk?.(content);
    else if (kind === "return" || kind === "throw") {
      clearTimeout(p.timer);
      this.pending.delete(id);
      if (kind === "return") p.resolve(content);
      else p.reject(new WebinferError(content?.message || "unknown error in the worker", content || {}));
    }
  }

  terminate(reason) {
    if (this.dead) return;
    this.dead = reason || new WebinferError("the engine was unloaded", { name: "UnloadedError" });
    this.worker.terminate();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.dead);
    }
    this.pending.clear();
  }
}

// An async iterator fed by pushes (chunks from the worker).
class ChunkStream {
  constructor(onReturn) {
    this.items = [];
    this.waiters = [];
    this.done = false;
    this.error = null;
    this.onReturn = onReturn; // called when the consumer stops early (break)
  }
  push(v) {
    if (this.done) return;
    const w = this.waiters.shift();
    if (w) w.resolve({ value: v, done: false });
    else this.items.push(v);
  }
  end() {
    this._finish(null);
  }
  fail(e) {
    this._finish(e);
  }
  _finish(e) {
    if (this.done) return;
    this.done = true;
    this.error = e;
    for (const w of this.waiters.splice(0)) e ? w.reject(e) : w.resolve({ value: undefined, done: true });
  }
  next() {
    if (this.items.length) return Promise.resolve({ value: this.items.shift(), done: false });
    if (this.done) return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
  return() {
    if (!this.done) {
      this.onReturn?.();
      this._finish(null);
    }
    this.items = [];
    return Promise.resolve({ value: undefined, done: true });
  }
  [Symbol.asyncIterator]() {
    return this;
  }
}

// ---------------------------------------------------------------------- engine

class Engine {
  constructor(rpc, { model, stats, capabilities, boot }, timeouts) {
    this._rpc = rpc;
    this._timeouts = timeouts;
    this.model = model;
    this.capabilities = capabilities;
    this._stats = { ...stats, boot };
    const create = (body, options) => this._chatCreate(body, options);
    this.chat = { completions: { create } };
  }

  // The latest numbers: {boot, load, generation, memory}; refreshed after each request.
  get stats() {
    return this._stats;
  }

  _update(result) {
    if (result && result.stats) this._stats = { ...result.stats, boot: this._stats.boot };
  }

  // Stream a completion of `prompt` as text pieces: `for await (const piece of engine.generate(...))`.
  // options: max_tokens, temperature, top_p, top_k, min_p, seed, stop, repetition_penalty,
  // ignore_eos, plus signal (AbortSignal), onToken(piece) and timeoutMs.
  generate(prompt, options = {}) {
    const { signal, onToken, timeoutMs, ...sampling } = options;
    return this._stream("generate", { prompt, options: sampling }, { signal, timeoutMs, what: "generate()",
      map: (c) => { onToken?.(c.text); return c.text; } });
  }

  // The whole completion as one string (same options as generate).
  async complete(prompt, options = {}) {
    let text = "";
    for await (const piece of this.generate(prompt, options)) text += piece;
    return text;
  }

  // OpenAI-shaped: resolves to a response, or with stream: true to an async iterable of chunks.
  async _chatCreate(body = {}, { signal, timeoutMs } = {}) {
    if (!body || !Array.isArray(body.messages)) {
      throw new WebinferError("chat.completions.create needs {messages: [{role, content}, ...]}",
        { name: "InvalidArgumentError" });
    }
    const stream = this._stream("chat", { body }, { signal, timeoutMs, what: "chat.completions.create()",
      map: (c) => c });
    if (body.stream) return stream;
    for await (const _ of stream); // non-streamed: the worker sends no chunks, only the result
    return stream.result;
  }

  _stream(kind, content, { signal, timeoutMs, what, map }) {
    if (signal?.aborted) {
      const s = new ChunkStream();
      s.fail(abortError(what));
      return s;
    }
    let id = 0;
    const abort = () => this._rpc.send("abort", { target: id });
    const stream = new ChunkStream(abort);
    const req = this._rpc.request(kind, content, {
      onChunk: (c) => stream.push(map(c)),
      timeoutMs: timeoutMs ?? this._timeouts.generate,
    });
    id = req.id;
    const onAbort = () => { abort(); stream.fail(abortError(what)); };
    signal?.addEventListener("abort", onAbort, { once: true });
    req.promise.then(
      (r) => { this._update(r); stream.result = r; stream.finishReason = r?.finish_reason ?? r?.choices?.[0]?.finish_reason;
               if (stream.finishReason === "abort") stream.fail(abortError(what)); else stream.end(); },
      (e) => stream.fail(e),
    ).finally(() => signal?.removeEventListener("abort", onAbort));
    return stream;
  }

  // Forget the conversation held in the KV cache.
  async reset() {
    await this._rpc.request("reset", {}, { timeoutMs: this._timeouts.request }).promise;
  }

  // Ask the worker for fresh stats (memory included).
  async refreshStats() {
    const s = await this._rpc.request("stats", {}, { timeoutMs: this._timeouts.request }).promise;
    this._update({ stats: s });
    return this.stats;
  }

  // Free the model and stop the worker; pending requests reject with UnloadedError.
  async unload() {
    if (this._rpc.dead) return;
    try {
      await this._rpc.request("unload", {}, { timeoutMs: 5000 }).promise;
    } catch { /* stopping anyway */ }
    this._rpc.terminate();
  }
}

// ------------------------------------------------------------------------ load

// Start a worker, boot Python in it, and load a GGUF model. Options:
//   model            URL of a .gguf file (required)
//   onProgress(p)    {phase, progress 0..1, loaded, total, text, tensors, n_tensors, rate (bytes/s), ...}
//   pyodideIndexURL  Pyodide 0.27.7 dist (default: the official CDN)
//   wheelURL         the webinfer wheel (default: wheel/webinfer-VERSION-py3-none-any.whl next to this file)
//   workerURL        worker.js (default: next to this file)
//   cache            keep the download in the browser's storage (OPFS) and reuse it (default true)
//   cacheKey         storage key (default: the model URL); sha256, size: expected, checked when given
//   verify           re-hash a cached copy before use when a sha256 is known (default true)
//   backend          "numpy" (default: float32 weights, runs everywhere), "wasm" (WASM SIMD kernels on the
//                    quantized weights), "webgpu"; engine.model.backend says which one loaded
//   n_ctx            context length (default 2048); chunkBytes: range request size (default 4 MiB)
//   signal           AbortSignal: aborting stops the worker; timeouts: {boot, load, generate, request} in ms
async function load(options = {}) {
  const { model, onProgress, signal, timeouts: userTimeouts, baseURL, cache = true, cacheKey, sha256, size,
    verify = true, n_ctx, chunkBytes, backend = "numpy" } = options;
  if (typeof model !== "string" || !model) {
    throw new WebinferError("webinfer.load needs {model: URL of a GGUF file}", { name: "InvalidArgumentError" });
  }
  if (typeof Worker === "undefined") {
    throw new WebinferError("this browser has no Web Workers", { name: "UnsupportedBrowserError" });
  }
  const timeouts = { ...DEFAULT_TIMEOUTS, ...(userTimeouts || {}) };
  const base = baseURL || scriptBase();
  const pyodideIndexURL = absolute(options.pyodideIndexURL || PYODIDE_CDN_URL).replace(/\/?$/, "/");
  const wheelURL = absolute(options.wheelURL || `wheel/webinfer-${VERSION}-py3-none-any.whl`, base);
  const workerURL = absolute(options.workerURL || "worker.js", base);
  if (signal?.aborted) throw abortError("webinfer.load()");

  const rpc = new Rpc(makeWorker(workerURL));
  const onAbort = () => rpc.terminate(abortError("webinfer.load()"));
  signal?.addEventListener("abort", onAbort, { once: true });
  // While Python boots (seconds), check that the model URL answers: a 404 fails now, not after the boot.
  preflight(absolute(model), timeouts.request).then((err) => err && rpc.terminate(err));
  try {
    const boot = await rpc.request("boot", { pyodideIndexURL, wheelURL }, { onProgress, timeoutMs: timeouts.boot }).promise;
    const res = await rpc.request("load", {
      model: absolute(model), backend, cache, cacheKey: cacheKey ? String(cacheKey) : undefined, sha256, size, verify,
      n_ctx, chunkBytes,
    }, { onProgress, timeoutMs: timeouts.load }).promise;
    return new Engine(rpc, { ...res, boot }, timeouts);
  } catch (e) {
    rpc.terminate(e);
    throw e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

// An HTTP error for the model URL, as a WebinferError; null when it answers (or when we cannot
// tell, e.g. a network error: the worker's download reports that with more detail).
async function preflight(url, timeoutMs) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const r = await fetch(url, { headers: { Range: "bytes=0-0" }, signal: ctl.signal, cache: "no-store" });
    r.body?.cancel();
    if (r.status >= 400) {
      return new WebinferError(`HTTP ${r.status} fetching ${url}: ` +
        (r.status === 404 ? "check the model URL" : "the server answered with an error"),
        { name: "DownloadError", status: r.status, url });
    }
  } catch { /* unknown: let the worker find out */ } finally {
    clearTimeout(timer);
  }
  return null;
}

// ----------------------------------------------------------------------- cache

async function opfsFolder(create) {
  const root = await navigator.storage.getDirectory();
  try {
    return await root.getDirectoryHandle(OPFS_FOLDER, { create });
  } catch (e) {
    if (e.name === "NotFoundError") return null;
    throw e;
  }
}

async function cacheName(key) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return "model-" + [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 32);
}

// The browser-side store of downloaded models (OPFS, folder "webinfer").
const cache = {
  // [{url, key, size, stored, complete, sha256}] of every model kept.
  async list() {
    const dir = await opfsFolder(false);
    if (!dir) return [];
    const out = [];
    for await (const [name, handle] of dir.entries()) {
      if (!name.endsWith(".json") || handle.kind !== "file") continue;
      try {
        const meta = JSON.parse(await (await handle.getFile()).text());
        if (meta.url) out.push(meta);
      } catch { /* a record being written: skip */ }
    }
    return out;
  },
  // Delete one model (by the URL or cacheKey it was loaded with). Fails if a worker has it open.
  async delete(urlOrKey) {
    const dir = await opfsFolder(false);
    if (!dir) return false;
    const name = await cacheName(absolute(urlOrKey));
    let found = false;
    for (const ext of [".gguf", ".json"]) {
      for (const n of new Set([name, await cacheName(String(urlOrKey))])) {
        try { await dir.removeEntry(n + ext); found = true; } catch (e) { if (e.name !== "NotFoundError") throw e; }
      }
    }
    return found;
  },
  // Delete everything webinfer stored.
  async clear() {
    const root = await navigator.storage.getDirectory();
    try { await root.removeEntry(OPFS_FOLDER, { recursive: true }); } catch (e) { if (e.name !== "NotFoundError") throw e; }
  },
};

globalThis.webinfer = { VERSION, PYODIDE_VERSION, PYODIDE_CDN_URL, DEFAULT_TIMEOUTS, WebinferError, load, cache };
})();
