#!/usr/bin/env python3
"""Browser benchmark of the default model: webinfer in headless Chromium through the script-tag API.

Same protocol as bench/bench_cpython.py (and the peers' scripts): decode =
greedy 128 tokens after "The capital of France is" with end-of-generation
ignored (the prompt's prefill is not in the decode rate); prefill =
bench/prompt256.txt (255 tokens) into an empty KV cache in one call; one
warm-up, then --runs runs, median.  Measured inside the page with the
engine's own stats (performance.now() in the worker).

Also, in a fresh browser profile (empty cache):
- cold start to first token: from navigation start to the first generated
  token (Pyodide boot + wheel install + model download and load + prefill);
- model load from the network, then again from the browser cache (OPFS);
- peak memory: the WASM heap (Pyodide's linear memory never shrinks, so its
  size after load is the load's peak) and the Chromium processes' peak RSS.

Appends one JSON line to bench/results/browser.jsonl (or --out).

    .venv/bin/python bench/bench_browser.py [--runs 2] [--backend numpy|wasm|webgpu] [--isolate] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(HERE))

import chromium  # noqa: E402
import serve  # noqa: E402
from bench_cpython import git_commit, machine, summary  # noqa: E402

MODEL_URL = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
PAGE = """<!doctype html><meta charset="utf-8"><title>webinfer bench</title>
<script src="/webinfer.js"></script><body>bench</body>"""


class RssSampler:
    """Peak RSS of the browser's processes (each process, and all of them summed), sampled every 0.2 s."""

    def __init__(self, root_pid: int):
        import psutil

        self.root = psutil.Process(root_pid)
        self.peak_total = self.peak_one = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                rss = []
                for p in procs:
                    try:
                        rss.append(p.memory_info().rss)
                    except psutil.Error:
                        pass
                self.peak_total = max(self.peak_total, sum(rss))
                self.peak_one = max(self.peak_one, max(rss, default=0))
            except psutil.Error:
                pass
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--isolate", action="store_true", help="serve with COOP/COEP (cross-origin isolated page)")
    ap.add_argument("--backend", default="numpy", help="engine backend in the page: numpy (default), wasm, webgpu")
    ap.add_argument("--out", default=str(HERE / "results" / "browser.jsonl"))
    a = ap.parse_args()

    serve.build_wheel()
    pages = Path(tempfile.mkdtemp(prefix="webinfer-bench-"))
    (pages / "bench.html").write_text(PAGE)
    srv = serve.start(serve.default_mounts() | {"/t/": pages}, isolate=a.isolate)
    browser = chromium.Browser()
    sampler = RssSampler(browser.driver.service.process.pid)
    prompt256 = (HERE / "prompt256.txt").read_text(encoding="utf-8")
    try:
        browser.get(srv.url + "t/bench.html")
        print(f"[bench] {srv.url}t/bench.html in headless Chromium; loading (cold)...", file=sys.stderr)
        cold = browser.run("""
            const t0 = performance.now();
            window.engine = await webinfer.load({model: args[0], pyodideIndexURL: "/pyodide/", backend: args[1]});
            const loaded = performance.now();
            let first = null;
            for await (const p of engine.generate("The capital of France is", {max_tokens: 1, temperature: 0}))
              first = first ?? performance.now();
            return {cold_first_token_s: first / 1000, load_call_s: (loaded - t0) / 1000, stats: engine.stats,
                    caps: engine.capabilities, crossOriginIsolated: self.crossOriginIsolated,
                    loaded_backend: engine.model.backend};
        """, MODEL_URL, a.backend, timeout_s=900)
        print(f"[bench] cold start to first token {cold['cold_first_token_s']:.1f} s; decode runs...", file=sys.stderr)

        def decode_run(n: int) -> dict:
            return browser.run("""
                await engine.reset();
                let text = "";
                for await (const p of engine.generate("The capital of France is",
                                                      {max_tokens: args[0], temperature: 0, ignore_eos: true}))
                  text += p;
                return {text, g: engine.stats.generation};
            """, n, timeout_s=1800)

        def prefill_run() -> dict:
            return browser.run("""
                await engine.reset();
                for await (const p of engine.generate(args[0], {max_tokens: 1, temperature: 0}));
                return engine.stats.generation;
            """, prompt256, timeout_s=1800)

        decode_run(8), prefill_run()  # warm-up
        dec = [decode_run(a.decode_tokens) for _ in range(a.runs)]
        pre = [prefill_run() for _ in range(a.runs)]
        print("[bench] load from the browser cache...", file=sys.stderr)
        cached = browser.run("""
            const mem = (await engine.refreshStats()).memory;
            await engine.unload();
            const t0 = performance.now();
            const e = await webinfer.load({model: args[0], pyodideIndexURL: "/pyodide/", backend: args[1]});
            const wall = (performance.now() - t0) / 1000;
            await e.unload();
            return {wall, stats: e.stats, memory_after_generation: mem};
        """, MODEL_URL, a.backend, timeout_s=900)
    finally:
        sampler.stop()
        browser.quit()
        srv.shutdown()

    load, boot = cold["stats"]["load"], cold["stats"]["boot"]
    cload = cached["stats"]["load"]
    env = cold["caps"]["environment"]
    result = {
        "bench": f"browser-chromium-{a.backend}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "model": MODEL_URL,
        "backend": cold["loaded_backend"],
        "browser": env.get("user_agent"),
        "cross_origin_isolated": cold["crossOriginIsolated"],
        "cold_start_first_token_s": round(cold["cold_first_token_s"], 3),
        "boot_s": round(boot["boot_s"], 3),
        "load_s": load["load_s"],  # network (127.0.0.1) download + parse + dequantize, progressive
        "load_network_mb_per_s": load["network_mb_per_s"],
        "load_cache_s": cload["load_s"],  # from OPFS, sha256 re-verified
        "load_cache_verify_s": round(cload["verify_s"], 3),
        "load_cache_wall_s": round(cached["wall"], 3),  # boot + load, a new worker
        "load_cache_source": cload["source"],
        "ttft_s": summary([d["g"]["ttft_s"] for d in dec]),
        "decode_tokens_per_s": summary([d["g"]["decode_tokens_per_s"] for d in dec]),
        "prefill_tokens_per_s": summary([p["prefill_tokens_per_s"] for p in pre]),
        "prefill_tokens": pre[0]["prompt_tokens"],
        "decode_tokens": a.decode_tokens,
        "model_mb": round(load["file_bytes"] / 1e6, 1),
        "wasm_heap_before_load_mb": round(load["wasm_heap_before_bytes"] / 1e6, 1),
        "wasm_heap_peak_mb": round(load["wasm_heap_peak_bytes"] / 1e6, 1),
        "wasm_heap_after_generation_mb": round(cached["memory_after_generation"]["wasm_heap_bytes"] / 1e6, 1),
        "browser_peak_rss_mb": round(sampler.peak_total / 1e6, 1),
        "browser_peak_rss_one_process_mb": round(sampler.peak_one / 1e6, 1),
        "text": dec[0]["text"][:80],
        "versions": {"webinfer": boot["webinfer_version"], "pyodide": boot["pyodide_version"]},
        "machine": machine(),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
