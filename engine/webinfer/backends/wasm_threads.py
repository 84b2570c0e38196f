"""Worker threads for the WASM kernels: one shared memory, one program, N threads.

Pyodide's memory is not shared (its module imports an unshared memory), so
threads cannot run on it.  :func:`start_threads` creates a *shared*
``WebAssembly.Memory``, instantiates the threaded kernels
(``kernels_mt.wasm``) on it in this thread and in ``n - 1`` workers, and
returns a pool whose ``run(cmd, nwords)`` executes a program on all of them:
thread ``tid`` does its share of every command (rows of a matmul, heads of
attention) and the threads meet at a barrier after each command
(wasm_fallback/src/barrier.c).  The wasm backend then keeps weights,
activations and the KV cache in that memory (wasm_memory.SharedHeap).

Where it works: a cross-origin isolated page (COOP/COEP headers:
``SharedArrayBuffer`` exists) in a browser, with webinfer's Python in a
worker (a waiting thread sleeps in ``memory.atomic.wait32``, which a page's
main thread may not do); and Node (worker_threads).  Workers only start
while the creating thread returns to its event loop, so starting is async:
``await start_threads()`` before loading the model, then
``Engine(backend="wasm")`` (or ``load_wasm``) picks the pool up.

Control block (the shared memory's first bytes, never handed out by the heap):
  word 0 generation (bumped to start a program)   word 1 program address
  word 2 program length in words                  word 3 workers ready
  word 4 stop                                     words 8-9 the barrier (barrier.c)
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

from .. import _js
from ..errors import WasmUnavailableError

MAX_MEMORY_PAGES = 32768      # 2 GiB: the shared memory's maximum (address space is reserved up front)
INITIAL_MEMORY_PAGES = 256    # 16 MiB; grows as weights arrive
CONTROL_ADDR = 0
START_TIMEOUT_MS = 20000

_WORKER_JS = r"""
"use strict";
const start = (d) => {
  const env = { memory: d.memory, __memory_base: 0, __table_base: 0,
    __indirect_function_table: new WebAssembly.Table({ initial: 0, element: "anyfunc" }),
    __stack_pointer: new WebAssembly.Global({ value: "i32", mutable: true }, 0) };
  const k = new WebAssembly.Instance(d.module, { env }).exports;
  const a = new Int32Array(d.memory.buffer), C = d.ctrl >> 2;
  let gen = Atomics.load(a, C);
  Atomics.add(a, C + 3, 1);
  Atomics.notify(a, C + 3);
  for (;;) {
    for (let i = 0; i < 20000 && Atomics.load(a, C) === gen; i++) {}   // spin briefly (~50 us): the next step may be near
    Atomics.wait(a, C, gen);
    gen = Atomics.load(a, C);
    if (Atomics.load(a, C + 4)) break;
    k.run_thread(Atomics.load(a, C + 1), Atomics.load(a, C + 2), d.tid, d.nth, d.ctrl + 32);
  }
};
if (typeof importScripts === "function") self.onmessage = (e) => start(e.data);
else require("node:worker_threads").parentPort.once("message", start);
"""

_POOL_JS = r"""
async (bytes, nth, initialPages, maxPages, ctrl, timeoutMs, workerSrc) => {
  const memory = new WebAssembly.Memory({ initial: initialPages, maximum: maxPages, shared: true });
  const module = await WebAssembly.compile(bytes);
  const env = { memory, __memory_base: 0, __table_base: 0,
    __indirect_function_table: new WebAssembly.Table({ initial: 0, element: "anyfunc" }),
    __stack_pointer: new WebAssembly.Global({ value: "i32", mutable: true }, 0) };
  const k = (await WebAssembly.instantiate(module, { env })).exports;
  const a = new Int32Array(memory.buffer), C = ctrl >> 2;
  const isNode = typeof process !== "undefined" && !!(process.versions && process.versions.node)
    && typeof importScripts !== "function";
  const workers = [];
  for (let tid = 1; tid < nth; tid++) {
    let w;
    if (isNode) {
      const { Worker } = await import("node:worker_threads");
      w = new Worker(workerSrc, { eval: true });
      w.unref();
    } else {
      w = new Worker(URL.createObjectURL(new Blob([workerSrc], { type: "text/javascript" })));
    }
    w.postMessage({ module, memory, tid, nth, ctrl });
    workers.push(w);
  }
  const t0 = Date.now();
  while (Atomics.load(a, C + 3) < nth - 1) {
    if (Date.now() - t0 > timeoutMs) {
      for (const w of workers) w.terminate();
      throw new Error(`${nth - 1} worker threads did not start in ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  return {
    memory, nth,
    run(cmd, n) {
      if (n <= 0) return 0;
      Atomics.store(a, C + 1, cmd);
      Atomics.store(a, C + 2, n);
      Atomics.add(a, C, 1);
      Atomics.notify(a, C);
      return k.run_thread(cmd, n, 0, nth, ctrl + 32);
    },
    close() {
      Atomics.store(a, C + 4, 1);
      Atomics.add(a, C, 1);
      Atomics.notify(a, C);
      for (const w of workers) w.terminate();
    },
  };
}
"""

_pool = None
_heaps: dict[int, Any] = {}   # id(pool) -> its SharedHeap: every backend on a pool shares one allocator


def threads_possible() -> tuple[bool, str]:
    """Whether worker threads can run here, and why not when they cannot."""
    if not _js.IN_PYODIDE:
        return False, "not inside Pyodide"
    g = _js.js
    if not hasattr(g, "SharedArrayBuffer"):
        return False, "no SharedArrayBuffer (the page is not cross-origin isolated: serve it with COOP/COEP)"
    if hasattr(g, "crossOriginIsolated") and not bool(g.crossOriginIsolated):
        return False, "the page is not cross-origin isolated (serve it with COOP/COEP headers)"
    return True, ""


def default_threads() -> int:
    """The hardware's thread count (navigator.hardwareConcurrency, or the CPU count under Node)."""
    nav = getattr(_js.js, "navigator", None) if _js.IN_PYODIDE else None
    n = int(getattr(nav, "hardwareConcurrency", 0) or 0) if nav is not None else 0
    return max(1, n or os.cpu_count() or 1)


async def start_threads(n: int | None = None) -> Any:
    """Start a pool of ``n`` threads (default: the hardware's) on a new shared memory; returns it.

    The pool becomes the one :func:`current_pool` returns, which the wasm backend
    uses from then on.  Raises :class:`WasmUnavailableError` where threads cannot run.
    """
    global _pool
    ok, why = threads_possible()
    if not ok:
        raise WasmUnavailableError(f"WASM threads are unavailable: {why}")
    n = n or default_threads()
    if _pool is not None and int(_pool.nth) == n:
        return _pool
    stop_threads()
    data = resources.files("webinfer").joinpath("wasm/kernels_mt.wasm").read_bytes()
    make = _js.js.eval("(" + _POOL_JS + ")")
    try:
        _pool = await make(_js.to_js(data), n, INITIAL_MEMORY_PAGES, MAX_MEMORY_PAGES, CONTROL_ADDR,
                           START_TIMEOUT_MS, _WORKER_JS)
    except Exception as e:  # noqa: BLE001 - a JS error: no shared memory, no workers, a CSP that forbids blobs
        raise WasmUnavailableError(f"could not start {n} WASM threads: {e}") from None
    return _pool


async def prepare(cpu_threads: int = 0) -> int:
    """Start threads for the wasm backend where they can run; returns the thread count (1 without).

    ``cpu_threads`` is the profile's field: 0 for the hardware's thread
    count, 1 for none.  Never raises: where threads cannot start, the backend
    runs single-threaded on Pyodide's memory.  Call it (async) before the
    model loads, e.g. in the browser loader before ``Engine(backend="wasm")``.
    """
    n = cpu_threads or default_threads()
    if n <= 1 or not threads_possible()[0]:
        return 1
    try:
        return int((await start_threads(n)).nth)
    except WasmUnavailableError:
        return 1


def current_pool() -> Any:
    """The pool :func:`start_threads` started, or None."""
    return _pool


def shared_heap(pool: Any):
    """The allocator of ``pool``'s shared memory (one per pool, whatever the number of backends on it)."""
    from .wasm_memory import SharedHeap

    key = id(pool)
    if key not in _heaps:
        _heaps[key] = (pool, SharedHeap(pool.memory))   # the pool is kept, so its id stays its own
    return _heaps[key][1]


def stop_threads() -> None:
    """Stop the pool's workers (a backend still using its memory must not run afterwards)."""
    global _pool
    if _pool is not None:
        _pool.close()
        _heaps.pop(id(_pool), None)
        _pool = None
