#!/usr/bin/env python3
"""WebGPU benchmark in CPython (wgpu-py): kernel bandwidth, decode speed and per-token overhead.

Sections (all by default; pick with --only):

  copy      a vec4 copy kernel over 1 GiB: the device's achievable bandwidth (read + write)
  matvec    quantized matvec kernels on large matrices, bytes of weights read per second,
            against the copy bandwidth (4 distinct matrices rotate, so L2 cannot hold them)
  overhead  an empty submit with a 4-byte readback; Python-side encode+submit of one decode step;
            GPU time of one step (32 steps recorded in one submit)
  decode    greedy decode tokens/s of a model, GPU sampling, readback batch 1 / 4 / 16, and the
            numpy backend on the same model for the ratio
  big       the same for a synthetic ~1.1B Llama (TinyLlama's shape, random Q4_0 weights)

The model for "decode" is the default model when its file is present, else a
synthetic model of exactly its shape and types (SmolLM2-135M: 30 layers, 576
wide, 9/3 heads, ffn 1536, vocab 49152, Q4_1 weights, tied Q8_0 embedding):
decode speed depends on shapes and types, not on the weights' values.  Before
timing, logits of the GPU plan are checked against the numpy backend.

    python bench/bench_webgpu.py [--only copy,matvec,...] [--quick] [--out FILE.json]

Prints a table last and writes one JSON record (machine, adapter, profile, numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "engine"))

from webinfer.backends.numpy_backend import NumpyBackend  # noqa: E402
from webinfer.backends.webgpu import load_planned  # noqa: E402
from webinfer.backends.webgpu.kernels import kernel_source  # noqa: E402
from webinfer.backends.webgpu.planner import fold, pack  # noqa: E402
from webinfer.backends.webgpu.synthetic import random_tensor, write_synthetic_llama  # noqa: E402
from webinfer.backends.webgpu.weights import CHUNK, repack  # noqa: E402
from webinfer.capability import choose_profile, detect  # noqa: E402
from webinfer.devices import open_device  # noqa: E402
from webinfer.devices.base import BufferUsage, Dispatch, Readback  # noqa: E402
from webinfer.formats.gguf import GGUFFile  # noqa: E402
from webinfer.model import load_model  # noqa: E402
from webinfer.runtime.sampler import Sampler, SamplingParams  # noqa: E402
from webinfer.runtime.session import Session  # noqa: E402

DEFAULT_MODEL = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer") / "models" / \
    "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHAPE = dict(dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn=1536, vocab=49152, fmt="Q4_1",
                  embed_fmt="Q8_0", tied=True, context_length=8192)
TINYLLAMA_SHAPE = dict(dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn=5632, vocab=32000, fmt="Q4_0",
                       embed_fmt="Q8_0", output_fmt="Q6_K", context_length=2048)
PROMPT = [1, 504, 3575, 282, 4649, 314]      # "The capital of France is" in SmolLM2's vocabulary

COPY = """
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> B: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = g.x + g.y * n.x * 256u;
    if (i < arrayLength(&A)) { B[i] = A[i]; }
}
"""


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def timed(fn, reps: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` runs after one warm-up."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


class Bench:
    def __init__(self, quick: bool):
        self.quick = quick
        self.dev = open_device()
        self.report = detect(self.dev)
        self.profile = choose_profile(self.report)
        self.sync = self.dev.create_buffer(4, BufferUsage.STORAGE | BufferUsage.COPY_SRC, "sync")
        self.out: dict = {"adapter": self.report.adapter, "features": self.report.features,
                          "limits": self.report.limits, "profile": self.profile.as_dict()}
        self.warm_up()

    def warm_up(self, seconds: float = 0.5) -> None:
        """Keep the GPU busy for a while first: an idle GPU runs at low clocks and ramps up under load."""
        dev = self.dev
        n = 16 << 20
        a, b = dev.create_buffer(n), dev.create_buffer(n)
        pipe = dev.pipeline("bench copy", COPY)
        prog = dev.prepare([Dispatch(pipe, dev.bind_group(pipe, [a, b]), fold(n // 16 // 256))] * 50)
        t = time.perf_counter()
        while time.perf_counter() - t < seconds:
            self.run_and_wait([prog])
        dev.destroy_buffer(a)
        dev.destroy_buffer(b)

    def run_and_wait(self, programs) -> None:
        self.dev.run(programs, readback=[Readback(self.sync, 0, 4)])

    # ------------------------------------------------------------------ copy
    def copy(self) -> None:
        dev = self.dev
        nbytes = (64 << 20) if self.quick else (1 << 30)
        nbytes = min(nbytes, dev.max_binding_size // 2 * 2)
        a = dev.create_buffer(nbytes, label="copy src")
        b = dev.create_buffer(nbytes, label="copy dst")
        pipe = dev.pipeline("bench copy", COPY)
        n = nbytes // 16
        reps = 10
        prog = dev.prepare([Dispatch(pipe, dev.bind_group(pipe, [a, b]), fold(-(-n // 256)))] * reps)
        t = timed(lambda: self.run_and_wait([prog]), 3)
        empty = timed(lambda: self.run_and_wait([]), 5)
        gbs = 2 * nbytes * reps / (t - empty) / 1e9
        self.out["copy_gb_s"] = round(gbs, 1)
        log(f"copy: {gbs:.0f} GB/s (read + write, {nbytes >> 20} MiB, {reps} per submit)")
        dev.destroy_buffer(a)
        dev.destroy_buffer(b)

    # ------------------------------------------------------------------ matvec
    def matvec(self) -> None:
        dev = self.dev
        shapes = [(4096, 4096)] if self.quick else [(8192, 8192), (14336, 4096)]
        lanes = self.profile.matvec_lanes
        variants = {"1 row": {}, "2 rows": {"TWO_ROWS": 1}, "2 rows, unroll 2": {"TWO_ROWS": 1, "UNROLL2": 1}}
        if self.quick:
            variants = {"2 rows": {"TWO_ROWS": 1}}
        rng = np.random.default_rng(0)
        res = []
        for rows, cols in shapes:
            for fmt in ("Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K"):
                mats = []
                for i in range(4):           # rotate 4 matrices: more than L2 holds
                    raw = random_tensor(fmt, (rows, cols), rng, 0.5)
                    mats.append((dev.buffer_from(repack(raw, fmt, rows, cols)), raw.size))
                x = dev.buffer_from(rng.standard_normal(cols).astype(np.float32))
                y = dev.create_buffer(rows * 4)
                uni = dev.create_buffer(256, BufferUsage.UNIFORM | BufferUsage.COPY_DST)
                p = pack((0, rows, cols // CHUNK, 0), (0,) * 4, (0,) * 4, (0,) * 4, (rows, rows, rows, 0), 0, 0,
                         rows, 0)
                dev.write_buffer(uni, p)
                for vname, vdef in variants.items():
                    pipe = dev.pipeline(f"bench matvec_{fmt} {vname}",
                                        kernel_source(f"matvec_{fmt.lower()}", {"WG": 256, "LANES": lanes, **vdef}))
                    per_wg = 256 // lanes * (2 if "TWO_ROWS" in vdef else 1)
                    steps = [Dispatch(pipe, dev.bind_group(pipe, [w, x, y, (uni, 0, p.size * 4)]),
                                      fold(-(-rows // per_wg))) for w, _ in mats] * 5
                    prog = dev.prepare(steps)
                    empty = timed(lambda: self.run_and_wait([]), 5)
                    t = timed(lambda: self.run_and_wait([prog]), 3)
                    per = (t - empty) / len(steps)
                    gbs = mats[0][1] / per / 1e9
                    frac = gbs / self.out["copy_gb_s"] if "copy_gb_s" in self.out else None
                    res.append({"format": fmt, "rows": rows, "cols": cols, "variant": vname, "us": round(per * 1e6, 1),
                                "gb_s": round(gbs, 1), "of_copy": round(frac, 3) if frac else None})
                    log(f"matvec {fmt} {rows}x{cols} {vname}: {per * 1e6:.1f} us, {gbs:.0f} GB/s"
                        + (f" ({frac:.0%} of copy)" if frac else ""))
                for w, _ in mats:
                    dev.destroy_buffer(w)
                for b in (x, y, uni):
                    dev.destroy_buffer(b)
        self.out["matvec"] = res

    # ------------------------------------------------------------------ models
    def _model_file(self, shape: dict, name: str, tmp: Path) -> Path:
        t = time.perf_counter()
        path = write_synthetic_llama(tmp / f"{name}.gguf", **shape)
        log(f"{name}: synthetic GGUF written in {time.perf_counter() - t:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        return path

    def decode_model(self, path: Path, key: str, n_tokens: int, numpy_tokens: int, check: bool = True) -> None:
        dev = self.dev
        g = GGUFFile.open(path)
        t = time.perf_counter()
        pm = load_planned(g, device=dev, fallback=False, profile=self.profile)
        load_s = time.perf_counter() - t
        n_ctx = min(len(PROMPT) + n_tokens * 2 + 64, pm.args.context_length)
        sess = Session(pm, n_ctx)
        rec: dict = {"load_s": round(load_s, 2), "weights_mb": round(pm.be.weight_bytes / 1e6, 1),
                     "dispatches_per_step": pm._plans[(1, 1, id(pm._cache))].n_dispatches + 1}
        ref_model = None
        if check:   # the plan's logits against the numpy backend, on this GPU
            ref_model = load_model(g, NumpyBackend())
            c, r = ref_model.new_cache(64)
            want = ref_model.forward(PROMPT, 0, c, r)
            got = np.asarray(sess.prefill(PROMPT))
            err = float(np.abs(got - want[-1]).max() / np.abs(want).max())
            rec["logits_rel_err"] = err
            log(f"{key}: GPU logits vs numpy: max error {err:.2e} of the logits' scale")
            assert err < 1e-3, err
        greedy = Sampler(SamplingParams(temperature=0))
        for k in (1, 4, 16):
            pm.readback_batch = k
            sess.reset()
            logits = sess.prefill(PROMPT)
            tok = greedy(logits)
            for _ in range(8):                              # warm-up
                tok = greedy(sess.evaluate([tok])[-1])
            before = dev.stats.snapshot()
            t = time.perf_counter()
            for _ in range(n_tokens):
                tok = greedy(sess.evaluate([tok])[-1])
            dt = time.perf_counter() - t
            d = dev.stats - before
            rec[f"tok_s_batch{k}"] = round(n_tokens / dt, 1)
            rec[f"ms_per_token_batch{k}"] = round(dt / n_tokens * 1e3, 3)
            rec[f"submits_per_token_batch{k}"] = round(d.submits / n_tokens, 3)
            log(f"{key}: decode {n_tokens / dt:.1f} tok/s ({dt / n_tokens * 1e3:.2f} ms/token), readback batch {k}, "
                f"{d.submits / n_tokens:.2f} submits/token")
        pm.readback_batch = 1
        # per-token overhead: empty submit + readback; encode+submit of a step; GPU time of a step
        plan = pm._plans[(1, 1, id(pm._cache))]
        rec["empty_submit_readback_ms"] = round(timed(lambda: self.run_and_wait([]), 20) * 1e3, 3)
        t = time.perf_counter()
        for _ in range(20):
            dev.run([plan.program])                         # encode + submit, no wait
        rec["encode_submit_ms"] = round((time.perf_counter() - t) / 20 * 1e3, 3)
        self.run_and_wait([])
        n = 32
        t32 = timed(lambda: self.run_and_wait([plan.program] * n), 3)
        rec["gpu_ms_per_step"] = round((t32 - rec["empty_submit_readback_ms"] / 1e3) / n * 1e3, 3)
        log(f"{key}: empty submit+readback {rec['empty_submit_readback_ms']:.3f} ms; encode+submit of a step "
            f"{rec['encode_submit_ms']:.3f} ms; GPU time of a step (32 in one submit) {rec['gpu_ms_per_step']:.3f} ms")
        # numpy for the ratio
        if numpy_tokens:
            nm = ref_model or load_model(g, NumpyBackend())
            c, r = nm.new_cache(len(PROMPT) + numpy_tokens + 16)
            logits = nm.forward(PROMPT, 0, c, r)
            tok = int(np.argmax(logits[-1]))
            t = time.perf_counter()
            for i in range(numpy_tokens):
                tok = int(np.argmax(nm.forward([tok], len(PROMPT) + i, c, r)[-1]))
            rec["numpy_tok_s"] = round(numpy_tokens / (time.perf_counter() - t), 2)
            rec["webgpu_over_numpy"] = round(rec["tok_s_batch1"] / rec["numpy_tok_s"], 1)
            log(f"{key}: numpy decode {rec['numpy_tok_s']:.2f} tok/s; WebGPU / numpy = {rec['webgpu_over_numpy']}x")
        self.out[key] = rec
        g.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="copy,matvec,overhead,decode,big")
    ap.add_argument("--quick", action="store_true", help="small sizes (to try the script on a CPU adapter)")
    ap.add_argument("--tokens", type=int, default=256, help="decode tokens timed per setting (default 256)")
    ap.add_argument("--numpy-tokens", type=int, default=32, help="numpy decode tokens timed (0: skip)")
    ap.add_argument("--out", default=None, help="write the JSON record here (default: stdout only)")
    ns = ap.parse_args(argv)
    parts = set(ns.only.split(","))
    b = Bench(ns.quick)
    log(f"adapter: {b.dev.info.describe()}; profile {b.profile.name}")
    b.out.update({"python": sys.version.split()[0], "platform": platform.platform(), "time": time.time()})
    if "copy" in parts:
        b.copy()
    if "matvec" in parts:
        b.matvec()
    tmp = Path(tempfile.mkdtemp(prefix="webinfer-bench-"))
    if "decode" in parts or "overhead" in parts:
        path = DEFAULT_MODEL if DEFAULT_MODEL.exists() else b._model_file(SMOL_SHAPE, "smollm2-135m-shape", tmp)
        b.out["decode_model"] = str(path.name)
        b.decode_model(path, "smollm2_135m", 32 if ns.quick else ns.tokens, ns.numpy_tokens)
    if "big" in parts:
        shape = dict(TINYLLAMA_SHAPE, n_layers=2) if ns.quick else TINYLLAMA_SHAPE
        path = b._model_file(shape, "llama-1.1b-q4_0", tmp)
        b.decode_model(path, "llama_1b_q4_0", 16 if ns.quick else ns.tokens // 2, ns.numpy_tokens // 4)
    text = json.dumps(b.out, indent=1)
    if ns.out:
        Path(ns.out).write_text(text)
    print(text)
    # the table, last
    print("\n| measure | value |\n| --- | --- |")
    if "copy_gb_s" in b.out:
        print(f"| copy bandwidth (read+write) | {b.out['copy_gb_s']} GB/s |")
    for r in b.out.get("matvec", []):
        print(f"| matvec {r['format']} {r['rows']}x{r['cols']} {r['variant']} | {r['gb_s']} GB/s "
              f"({(r['of_copy'] or 0):.0%} of copy), {r['us']} us |")
    for key in ("smollm2_135m", "llama_1b_q4_0"):
        if key in b.out:
            r = b.out[key]
            print(f"| {key} decode | {r['tok_s_batch1']} tok/s (batch 4: {r['tok_s_batch4']}, 16: {r['tok_s_batch16']});"
                  f" numpy {r.get('numpy_tok_s')} tok/s |")
            print(f"| {key} per token | GPU {r['gpu_ms_per_step']} ms, encode+submit {r['encode_submit_ms']} ms, "
                  f"submit+readback {r['empty_submit_readback_ms']} ms, {r['dispatches_per_step']} dispatches |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
