"""Synthetic benchmark history for the tests: several commits of every kind of target, one planted regression."""

from __future__ import annotations

import random

from webinfer.bench.record import metric

MACHINE = {"cpu": "Test CPU", "cpus": 2, "mem_total_mb": 8192, "platform": "Linux", "id": "testmachine1"}
PAGE_PROBE = {"userAgent": "HeadlessChrome/156", "hardwareConcurrency": 2, "crossOriginIsolated": False,
              "wasm": {"simd": True, "memory64": True, "jspi": True},
              "webgpu": {"api": True, "adapter": {"vendor": "google", "architecture": "swiftshader",
                                                  "isFallbackAdapter": True,
                                                  "features": ["subgroups", "timestamp-query"], "limits": {}}}}
# target -> (engine, runtime, backend, decode tok/s, prefill tok/s, memory metric, MB)
TARGETS = {
    "cpython-numpy": ("webinfer", "cpython", "numpy", 30.0, 650.0, "peak_rss_mb", 600.0),
    "chromium-numpy": ("webinfer", "chromium", "numpy", 6.0, 40.0, "wasm_heap_mb", 640.0),
    "chromium-webgpu": ("webinfer", "chromium", "webgpu", 2.0, 8.0, "gpu_buffer_mb", 120.0),
    "wllama": ("wllama", "chromium", "wasm", 10.0, 15.0, None, None),
}
REGRESSED = ("chromium-numpy", "decode_tps")


def history(n_commits: int = 4, *, regress: bool = True, seed: int = 7) -> list[dict]:
    """``n_commits`` suites, one a commit an hour apart; the last one's chromium-numpy decode is 40 % slower."""
    rnd = random.Random(seed)
    out = []
    for c in range(n_commits):
        sha = f"{c + 1:02d}" + "abcdef0123456789" * 2 + "abcdef"
        commit = {"sha": sha, "short": sha[:8], "dirty": False, "time": f"2026-01-0{c + 1}T00:00:00Z",
                  "subject": f"commit {c + 1}"}
        suite = f"suite{c}"
        for i, (target, (engine, runtime, backend, dec, pre, mem, mb)) in enumerate(TARGETS.items()):
            last = c == n_commits - 1
            factor = 0.6 if (regress and last and target == REGRESSED[0]) else 1.0
            noisy = lambda v: [v * (1 + rnd.uniform(-0.01, 0.01)) for _ in range(3)]  # noqa: E731
            metrics = {
                "decode_tps": metric("decode_tps", noisy(dec * factor)),
                "prefill_tps": metric("prefill_tps", noisy(pre)),
                "ttft_s": metric("ttft_s", noisy(5 / pre + 1 / dec)),
                "load_s": metric("load_s", noisy(1.5 if runtime == "chromium" else 0.6)),
            }
            if runtime == "chromium" and engine == "webinfer":
                metrics["load_cached_s"] = metric("load_cached_s", noisy(0.9))
            if mem:
                metrics[mem] = metric(mem, [mb])
            out.append({
                "schema": 1, "id": f"run-{c}-{i}", "suite_id": suite,
                "time": f"2026-01-0{c + 1}T00:{i:02d}:00Z", "commit": commit, "engine": engine,
                "engine_version": "0.1.0", "target": target, "runtime": runtime,
                "browser": "Chromium 156.0" if runtime == "chromium" else None, "backend": backend,
                "model": "SmolLM2-135M-Instruct.Q4_1", "quant": "Q4_1", "profile": None, "threads": 1,
                "status": "ok", "error": None, "protocol": {"suite": "full", "runs": 3, "decode_tokens": 128},
                "metrics": metrics,
                "capability": {"page": PAGE_PROBE} if runtime == "chromium" else {"detected": {"webgpu": False}},
                "versions": {"webinfer": "0.1.0"}, "machine": MACHINE, "extra": {},
            })
        out.append({"schema": 1, "id": f"run-{c}-skip", "suite_id": suite, "time": f"2026-01-0{c + 1}T00:30:00Z",
                    "commit": commit, "engine": "llama.cpp", "target": "llama-cpp", "runtime": "cpython",
                    "backend": "cpu", "model": "SmolLM2-135M-Instruct.Q4_1", "status": "skipped",
                    "error": "llama-cpp-python is not installed", "metrics": {}, "machine": MACHINE,
                    "protocol": {"suite": "full", "runs": 3, "decode_tokens": 128}})
    return out
