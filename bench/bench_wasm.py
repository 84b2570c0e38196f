#!/usr/bin/env python3
"""webinfer's WASM SIMD backend side by side with wllama in the same headless Chromium.

    .venv/bin/python bench/bench_wasm.py [--runs 3] [--decode 128] [--rounds 1] [--only webinfer,wllama]

Each target gets a fresh headless Chromium (scripts/chromium.py) on
web/bench-wasm/ served by scripts/serve.py: webinfer on its wasm backend
(Pyodide in a worker, the model read with HTTP range requests) and wllama
3.13.0 (llama.cpp in WASM, from the asset cache) on the same GGUF, with the
peers' protocol (shared/peers/bench.html: n_ctx 1024, greedy decode of 128
tokens after "The capital of France is" ignoring EOS, a 255-token prefill,
a warm-up, 3 runs; each engine's own clock).  Single-threaded on a plain
page; the "-2t" targets run on a cross-origin isolated (COOP/COEP) page with
two threads.  Peak memory is the largest resident set of the page's renderer
process (it hosts the workers, so both engines' WASM heaps), sampled from
outside every 0.2 s.  Prints a table with the ratios and writes
bench/results/wasm-<time>.json.  Rounds alternate the engines so that the
load of a busy machine falls on both.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")
MODEL_URL = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
WLLAMA_DIR = CACHE / "npm" / "wllama-3.13.0"
PAGE_TIMEOUT_S = 1800
SAMPLE_S = 0.2

# name -> (query string, cross-origin isolated)
TARGETS = {
    "wllama": ("engine=wllama&threads=1", False),
    "webinfer": ("engine=webinfer&backend=wasm&threads=1", False),
    "wllama-2t": ("engine=wllama&threads=2", True),
    "webinfer-2t": ("engine=webinfer&backend=wasm&threads=2", True),
}


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"webinfer_scripts_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class PeakRSS:
    """Samples the resident memory of a process tree (Chromium) in a thread; peaks per renderer and in total."""

    def __init__(self, root_pid: int):
        import psutil

        self._root = psutil.Process(root_pid)
        self.renderer_peak = 0
        self.total_peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                for p in [self._root, *self._root.children(recursive=True)]:
                    try:
                        rss = p.memory_info().rss
                        total += rss
                        if "--type=renderer" in " ".join(p.cmdline()):
                            self.renderer_peak = max(self.renderer_peak, rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self.total_peak = max(self.total_peak, total)
            self._stop.wait(SAMPLE_S)

    def stop(self):
        self._stop.set()
        self._t.join()


def run_target(chromium, base_url: str, query: str, runs: int, decode: int) -> dict:
    b = chromium.Browser(script_timeout_s=PAGE_TIMEOUT_S)
    try:
        mem = PeakRSS(b.driver.service.process.pid)
        b.get(f"{base_url}/bench-wasm/index.html?{query}&runs={runs}&decode={decode}&model={MODEL_URL}")
        t0, seen, res = time.monotonic(), 0, None
        while time.monotonic() - t0 < PAGE_TIMEOUT_S:
            state = b.driver.execute_script("return {r: window.__result || null, log: (window.__logs || []).slice(arguments[0])};", seen)
            for line in state["log"]:
                if not line.startswith("{"):
                    print("   ", line[:200], flush=True)
            seen += len(state["log"])
            if state["r"] is not None:
                res = state["r"]
                break
            time.sleep(0.5)
        mem.stop()
        if res is None:
            res = {"error": f"no result in {PAGE_TIMEOUT_S} s"}
        res["peak_renderer_rss_mb"] = mem.renderer_peak / 2**20
        res["peak_chromium_rss_mb"] = mem.total_peak / 2**20
        res["browser"] = b.driver.capabilities.get("browserVersion")
        return res
    finally:
        b.quit()


def _median(rows, key):
    vals = [r[key] for r in rows if r.get(key)]
    return statistics.median(vals) if vals else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--decode", type=int, default=128, help="decode tokens per run")
    ap.add_argument("--rounds", type=int, default=1, help="repeat all targets, alternating engines")
    ap.add_argument("--only", default=",".join(TARGETS), help=f"comma-separated targets of {', '.join(TARGETS)}")
    a = ap.parse_args(argv)
    names = [n for n in a.only.split(",") if n]
    unknown = set(names) - set(TARGETS)
    if unknown:
        ap.error(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    if not (WLLAMA_DIR / "esm" / "index.js").exists() and any(n.startswith("wllama") for n in names):
        print(f"wllama is not in the asset cache ({WLLAMA_DIR}): run scripts/setup.sh", file=sys.stderr)
        return 2

    serve, chromium = _script("serve"), _script("chromium")
    wheel_dir = Path(tempfile.mkdtemp(prefix="webinfer-bench-wheel-"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheel_dir), str(ROOT)], check=True)
    mounts = serve.default_mounts() | {"/wheel/": wheel_dir, "/npm/": CACHE / "npm", "/bench/": ROOT / "bench"}
    servers = {iso: serve.start(mounts, isolate=iso) for iso in {TARGETS[n][1] for n in names}}
    results: dict[str, list] = {n: [] for n in names}
    try:
        for rnd in range(a.rounds):
            for name in names:
                query, iso = TARGETS[name]
                print(f"[round {rnd + 1}] {name}", flush=True)
                r = run_target(chromium, servers[iso].url.rstrip("/"), query, a.runs, a.decode)
                if r.get("error"):
                    print("    ERROR", r["error"][:2000], flush=True)
                results[name].append(r)
    finally:
        for s in servers.values():
            s.shutdown()
            s.server_close()

    print()
    print(f"{'target':<13} {'decode tok/s':>13} {'prefill tok/s':>14} {'peak renderer MB':>17} {'wasm heap MB':>13}  threads  isolated")
    summary = {}
    for name in names:
        rows = [r for r in results[name] if not r.get("error")]
        if not rows:
            print(f"{name:<13} failed")
            continue
        dec = statistics.median(_median(r["decode"], "tokens_per_s") for r in rows)
        pre = statistics.median(_median(r["prefill"], "tokens_per_s") for r in rows)
        mem = max(r["peak_renderer_rss_mb"] for r in rows)
        heap = max(((r.get("wasm_heap_bytes") or 0) + (r.get("shared_memory_bytes") or 0)) / 2**20
                   for r in rows) or float("nan")   # webinfer: Pyodide's heap (+ the threads' shared memory)
        thr = rows[0].get("threads", 1)
        iso = rows[0]["env"]["crossOriginIsolated"]
        summary[name] = {"decode_tps": dec, "prefill_tps": pre, "peak_renderer_rss_mb": mem, "wasm_heap_mb": heap,
                         "threads": thr, "cross_origin_isolated": iso}
        print(f"{name:<13} {dec:>13.2f} {pre:>14.2f} {mem:>17.0f} {heap:>13.0f}  {thr!s:>7}  {iso}")
    for ours, theirs in (("webinfer", "wllama"), ("webinfer", "wllama-2t"), ("webinfer-2t", "wllama-2t")):
        if ours in summary and theirs in summary:
            s, t = summary[ours], summary[theirs]
            print(f"{ours} / {theirs}: decode x{s['decode_tps'] / t['decode_tps']:.2f}, "
                  f"prefill x{s['prefill_tps'] / t['prefill_tps']:.2f}, "
                  f"peak memory x{s['peak_renderer_rss_mb'] / t['peak_renderer_rss_mb']:.2f}")
    out = ROOT / "bench" / "results" / time.strftime("wasm-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "runs": results, "args": vars(a)}, indent=1, default=str))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
