#!/usr/bin/env python3
"""CPython benchmark of the default model: load, TTFT, prefill and decode speed, peak RSS.

Same protocol as the peer scripts (so numbers are comparable with llama.cpp's):
decode = greedy 128 tokens after "The capital of France is" (prompt evaluated
untimed first), ignoring end-of-generation; prefill = bench/prompt256.txt
(255 tokens) into an empty cache in one call.  One untimed warm-up, then
--runs runs; median and spread are reported.  Appends one JSON line to
bench/results/cpython.jsonl (or --out) with the machine, versions and commit.

    ./dev bench [--runs 3] [--model PATH] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def summary(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3),
            "runs": [round(x, 3) for x in xs]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="GGUF path or model name (default model)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--out", default=str(HERE / "results" / "cpython.jsonl"))
    a = ap.parse_args()

    import webinfer
    from webinfer.runtime.session import Session

    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    engine = webinfer.load(a.model, n_ctx=1024)
    load_s = time.perf_counter() - t0
    model, tok = engine.model, engine.tokenizer
    decode_prompt = tok.encode("The capital of France is", add_special=True)
    prefill_prompt = tok.encode((HERE / "prompt256.txt").read_text(encoding="utf-8"), add_special=True)

    def decode_run(n: int) -> tuple[float, float, str]:
        s = Session(model, 1024)
        t = time.perf_counter()
        logits = s.evaluate(decode_prompt)[-1]
        ttft = time.perf_counter() - t
        out = []
        t = time.perf_counter()
        for _ in range(n):
            out.append(int(np.argmax(logits)))
            logits = s.evaluate([out[-1]])[-1]
        return n / (time.perf_counter() - t), ttft, tok.decode(out)

    def prefill_run() -> float:
        s = Session(model, 1024, n_batch=512)
        t = time.perf_counter()
        s.evaluate(prefill_prompt)
        return len(prefill_prompt) / (time.perf_counter() - t)

    decode_run(8), prefill_run()  # warm-up
    dec = [decode_run(a.decode_tokens) for _ in range(a.runs)]
    pre = [prefill_run() for _ in range(a.runs)]
    result = {
        "bench": "cpython-numpy",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "model": str(engine.gguf.source.path) if hasattr(engine.gguf.source, "path") else str(a.model),
        "backend": engine.backend_name,
        "load_s": round(load_s, 3),
        "ttft_s": summary([d[1] for d in dec]),
        "decode_tokens_per_s": summary([d[0] for d in dec]),
        "prefill_tokens_per_s": summary(pre),
        "prefill_tokens": len(prefill_prompt),
        "decode_tokens": a.decode_tokens,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_load_mb": round(rss0, 1),
        "text": dec[0][2][:80],
        "versions": {"webinfer": webinfer.__version__, "numpy": np.__version__},
        "machine": machine(),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
