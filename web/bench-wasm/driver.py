# Runs inside Pyodide in web/bench-wasm/worker.js: load the model on the chosen backend and time
# decode and prefill with the engine's own clock (GenerationStats), as llama.cpp times wllama.
# __opts (dict) and __log (a JS function) come from the worker; the last expression is the result.
import json

from webinfer import _js
from webinfer.browser.cache import HttpRangeSource
from webinfer.formats.gguf import GGUFFile
from webinfer.runtime.engine import Engine

o = __opts  # noqa: F821 - set by worker.js
say = __log  # noqa: F821
threads_note = ""
if o["threads"] > 1:   # worker threads on a shared memory: only where the page is cross-origin isolated
    from webinfer.backends import wasm_threads

    ok, why = wasm_threads.threads_possible()
    if ok:
        await wasm_threads.start_threads(o["threads"])  # noqa: F704 - top-level await in runPythonAsync
    else:
        threads_note = why
        say(f"running single-threaded: {why}")
heap0 = _js.wasm_heap_bytes()
t0 = _js.now_s()
engine = Engine(GGUFFile(HttpRangeSource(o["modelURL"])), backend=o["backend"], n_ctx=o["nCtx"])
load_s = _js.now_s() - t0
say(f"loaded on {engine.backend_name} in {load_s:.2f} s, wasm heap {_js.wasm_heap_bytes() / 2**20:.0f} MiB")


def run(prompt, n):
    engine.session.reset()
    text = "".join(c.text for c in engine.stream(prompt, max_tokens=n, temperature=0, ignore_eos=True))
    s = engine.last_stats
    return {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
            "prefill_tokens_per_s": s.prefill_tokens_per_s, "decode_tokens_per_s": s.decode_tokens_per_s,
            "ttft_s": s.ttft_s, "text": text[:160]}


run(o["prompt"], 8)  # warm-up
be = getattr(engine.model, "be", None)
out = {"backend": engine.backend_name, "boot_s": o["boot_s"], "load_s": load_s, "decode": [], "prefill": [],
       "threads": getattr(be, "n_threads", 1), "threads_note": threads_note}
for i in range(o["runs"]):
    r = run(o["prompt"], o["decode"])
    say(f"decode {i + 1}/{o['runs']}: {r['decode_tokens_per_s']:.2f} tok/s")
    out["decode"].append({"tokens_per_s": r["decode_tokens_per_s"], "tokens": r["completion_tokens"], "text": r["text"]})
for i in range(o["runs"]):
    r = run(o["prefillText"], 1)
    say(f"prefill {i + 1}/{o['runs']}: {r['prefill_tokens_per_s']:.2f} tok/s ({r['prompt_tokens']} tokens)")
    out["prefill"].append({"tokens_per_s": r["prefill_tokens_per_s"], "tokens": r["prompt_tokens"]})
out["wasm_heap_bytes"] = _js.wasm_heap_bytes()   # WASM memory never shrinks: this is the peak
out["wasm_heap_before_load_bytes"] = heap0
if be is not None and be.heap.shared:             # the threads' shared memory holds the weights and activations
    out["shared_memory_bytes"] = be.heap.nbytes
json.dumps(out)
