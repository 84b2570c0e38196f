"""CPython runners: webinfer (any CPython backend) and llama.cpp through llama-cpp-python.

Each measurement runs in a fresh subprocess, so peak RSS is the run's own and
one target cannot warm another's caches::

    python -m webinfer.bench.native '{"model": PATH, "backend": "numpy", "runs": 3, ...}'

prints one JSON object (the measurements) on its last stdout line.
llama-cpp-python may live in another interpreter ($WEBINFER_LLAMA_CPP_PYTHON):
its runner (llama_cpp_runner.py) imports nothing from webinfer.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from .record import metric, python_versions

RUN_TIMEOUT_S = 3600  # a whole target; the full suite on a 2-core machine takes minutes


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------ in the subprocess

def timed_generation(engine, ids: list[int], n: int) -> dict:
    """Greedy ``n`` tokens after ``ids`` from an empty cache, timed by the wall clock around the stream.

    TTFT: prompt in -> first token out; decode: the tokens after the first over the time after it.
    The engine's own stats (engine.last_stats) are kept beside them as a cross-check; the wall clock
    is what counts, because it cannot be fooled by work a GPU backend defers.
    """
    engine.session.reset()
    pieces, count, first = [], 0, None
    t0 = time.perf_counter()
    for chunk in engine.stream(ids, max_tokens=n, temperature=0, ignore_eos=True):
        if chunk.token_id is not None:
            count += 1
            if first is None:
                first = time.perf_counter()
        pieces.append(chunk.text)
    end = time.perf_counter()
    ttft = first - t0
    return {"prompt_tokens": len(ids), "completion_tokens": count, "ttft_s": ttft,
            "prefill_tokens_per_s": len(ids) / ttft,
            "decode_tokens_per_s": (count - 1) / (end - first) if count > 1 else 0.0,
            "engine_stats": engine.last_stats.as_dict() if engine.last_stats else None,
            "text": "".join(pieces)[:200]}


class GpuBufferTally:
    """Live and peak bytes of the GPU buffers webinfer creates, counted by wrapping the wgpu-py
    device's create/destroy in this (measuring) subprocess: the device layer does not report them
    itself (yet). Installed only for GPU targets; a no-op where the device module is missing."""

    def __init__(self):
        self.live = self.peak = 0
        self.installed = False

    def install(self) -> "GpuBufferTally":
        try:
            from ..devices.wgpu_native import WgpuNativeDevice
        except Exception:  # noqa: BLE001 - no wgpu here: nothing to count
            return self
        create, destroy = WgpuNativeDevice.create_buffer, WgpuNativeDevice.destroy_buffer
        tally = self

        def create_buffer(dev, *a, **kw):
            buf = create(dev, *a, **kw)
            tally.live += buf.size
            tally.peak = max(tally.peak, tally.live)
            return buf

        def destroy_buffer(dev, buf):
            if not getattr(buf, "destroyed", False):
                tally.live -= buf.size
            return destroy(dev, buf)

        WgpuNativeDevice.create_buffer, WgpuNativeDevice.destroy_buffer = create_buffer, destroy_buffer
        self.installed = True
        return self


def measure_webinfer(opts: dict) -> dict:
    """Load, warm up, decode and prefill runs with webinfer in this process; the measurements."""
    from ..runtime.engine import Engine

    gpu = GpuBufferTally().install() if opts.get("backend", "numpy") != "numpy" else None

    def load():
        kw = {"profile": opts["profile"]} if opts.get("profile") else {}
        return Engine.load(opts["model"], backend=opts.get("backend", "numpy"), n_ctx=opts["n_ctx"], **kw)

    t0 = time.perf_counter()
    engine = load()
    loads = [time.perf_counter() - t0]
    decode_ids = engine.tokenize(opts["decode_prompt"])
    prefill_ids = engine.tokenize(opts["prefill_text"])

    timed_generation(engine, decode_ids, opts["warmup_tokens"])
    timed_generation(engine, prefill_ids, 1)
    decode = [timed_generation(engine, decode_ids, opts["decode_tokens"]) for _ in range(opts["runs"])]
    prefill = [timed_generation(engine, prefill_ids, 1) for _ in range(opts["runs"])]
    peak = _peak_rss_mb()
    gpu_peak = gpu.peak if gpu is not None and gpu.installed else 0
    capability = detect_capability(engine, open_device=opts.get("backend", "numpy") != "numpy")
    backend = engine.backend_name
    profile = getattr(getattr(engine.model, "profile", None), "name", None)  # the WebGPU run profile
    # More load samples, after the peak was read (two models alive at once would inflate it).
    for _ in range(opts["runs"] - 1):
        del engine
        gc.collect()
        t0 = time.perf_counter()
        engine = load()
        loads.append(time.perf_counter() - t0)
    gpu_metric = {"gpu_buffer_mb": metric("gpu_buffer_mb", [gpu_peak / 2**20])} if gpu_peak else {}
    return {
        "metrics": {
            **gpu_metric,
            "load_s": metric("load_s", loads),
            "ttft_s": metric("ttft_s", [d["ttft_s"] for d in decode]),
            "decode_tps": metric("decode_tps", [d["decode_tokens_per_s"] for d in decode]),
            "prefill_tps": metric("prefill_tps", [p["prefill_tokens_per_s"] for p in prefill]),
            "peak_rss_mb": metric("peak_rss_mb", [peak]),
        },
        "protocol": {"decode_prompt_tokens": len(decode_ids), "prefill_tokens": len(prefill_ids)},
        "backend_loaded": backend,
        "profile": profile,
        "extra": {"text": decode[0]["text"], "decode_runs": decode, "prefill_runs": prefill},
        "capability": capability,
        "versions": python_versions(),
    }


def detect_capability(engine=None, *, open_device: bool = False) -> dict:
    """The capability report: ``webinfer.capability.detect()`` (the WebGPU issue's detector) where it
    exists, plus CPU facts. A GPU device is opened only when asked (the webgpu targets)."""
    report: dict = {}
    try:
        import inspect

        from .. import capability

        detect = getattr(capability, "detect", None)
        if detect is None:
            report["note"] = "webinfer.capability.detect() does not exist yet; CPU facts only"
        else:
            kw = {"open_device": open_device} if "open_device" in inspect.signature(detect).parameters else {}
            r = detect(**kw)
            if inspect.isawaitable(r):
                import asyncio

                r = asyncio.run(r)
            report["detected"] = r if isinstance(r, dict) else getattr(r, "as_dict", lambda: {"repr": repr(r)})()
    except Exception as e:  # noqa: BLE001 - a broken detector must not lose the measurement
        report["detect_error"] = f"{type(e).__name__}: {e}"
    if engine is not None:
        try:  # on a GPU, the engine's own report knows the device it runs on
            caps = engine.capabilities if open_device else None
            if caps is not None:
                report["detected"] = caps if isinstance(caps, dict) else caps.as_dict()
        except Exception as e:  # noqa: BLE001
            report["engine_capabilities_error"] = f"{type(e).__name__}: {e}"
        report["backend"] = engine.backend_name
        profile = getattr(engine, "profile", None)
        if profile is not None:
            report["profile"] = getattr(profile, "name", str(profile))
    return report


# ------------------------------------------------------------------ in the harness

# numpy's BLAS starts one thread per core; on a busy 2-core machine those threads spin against
# each other and decode speed collapses (2.2 tok/s with 2 threads vs 9.2 with 1, measured here under
# load). A target's "threads" is therefore enforced on every BLAS/OpenMP library in the subprocess.
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_env(threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env.update({k: str(threads) for k in THREAD_ENV})
    return env


def run_subprocess(python: str, args: list[str], *, timeout_s: float = RUN_TIMEOUT_S,
                   threads: int | None = None) -> dict:
    """Run a measuring subprocess; its last stdout line is the JSON result. Raises RuntimeError with stderr."""
    p = subprocess.run([python, *args], capture_output=True, text=True, timeout=timeout_s, env=thread_env(threads))
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-6:]
        raise RuntimeError(f"exit status {p.returncode}: " + " | ".join(tail))
    return json.loads(lines[-1])


def run_webinfer(opts: dict) -> dict:
    return run_subprocess(sys.executable, ["-m", "webinfer.bench.native", json.dumps(opts)], threads=opts.get("threads"))


def run_llama_cpp(python: str, opts: dict) -> dict:
    runner = Path(__file__).with_name("llama_cpp_runner.py")
    return run_subprocess(python, [str(runner), json.dumps(opts)], threads=opts.get("threads"))


def main(argv: list[str]) -> int:
    opts = json.loads(argv[0])
    print(json.dumps(measure_webinfer(opts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
