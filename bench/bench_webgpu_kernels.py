#!/usr/bin/env python3
"""Where a WebGPU decode step's time goes, and matvec kernel variants (an experiment script).

1. dispatch floor: chains of 100 dispatches of a kernel that does (almost) nothing;
2. the decode plan of a model, timed kernel by kernel (all dispatches of one
   pipeline in one submit): microseconds per dispatch of each kind;
3. Q4_0 matvec variants (sources below) at decode shapes: microseconds and GB/s.

    python bench/bench_webgpu_kernels.py [--model smollm|1b] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))

from webinfer.backends.webgpu import load_planned  # noqa: E402
from webinfer.backends.webgpu.kernels import preprocess  # noqa: E402
from webinfer.backends.webgpu.planner import fold, pack  # noqa: E402
from webinfer.backends.webgpu.synthetic import random_tensor, write_synthetic_llama  # noqa: E402
from webinfer.backends.webgpu.weights import CHUNK, repack  # noqa: E402
from webinfer.devices import open_device  # noqa: E402
from webinfer.devices.base import BufferUsage, Dispatch, Readback  # noqa: E402
from webinfer.formats.ggml_types import GGMLType  # noqa: E402
from webinfer.formats.gguf import GGUFFile  # noqa: E402
from webinfer.formats.quants import dequantize  # noqa: E402
from webinfer.runtime.session import Session  # noqa: E402

NOOP = """
@group(0) @binding(0) var<storage, read_write> A: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x == 0u) { A[0] = A[0] + 1.0; } }
"""

ENABLE_SUBGROUPS = ""   # naga (wgpu-native) has subgroup builtins but rejects the enable directive; Tint needs it
# ---- matvec variants: bindings W (u32), W4 (vec4<u32>, same buffer), X (vec4<f32>), Y, P
COMMON = """
struct P_ { rows: u32, chunks: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> W4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@group(0) @binding(4) var<uniform> P: P_;
fn lo4(v: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(v, v >> 8u, v >> 16u, v >> 24u) & vec4<u32>(15u)) - 8.0; }
fn hi4(v: u32) -> vec4<f32> { return vec4<f32>(vec4<u32>(v >> 4u, v >> 12u, v >> 20u, v >> 28u) & vec4<u32>(15u)) - 8.0; }
fn scale(i: u32) -> f32 { let d = unpack2x16float(W[P.rows * P.chunks * 4u + (i >> 1u)]); return select(d.x, d.y, (i & 1u) == 1u); }
fn dot_chunk(q: vec4<u32>, xb: u32) -> f32 {
    return dot(lo4(q.x), X[xb]) + dot(lo4(q.y), X[xb + 1u]) + dot(lo4(q.z), X[xb + 2u]) + dot(lo4(q.w), X[xb + 3u])
         + dot(hi4(q.x), X[xb + 4u]) + dot(hi4(q.y), X[xb + 5u]) + dot(hi4(q.z), X[xb + 6u]) + dot(hi4(q.w), X[xb + 7u]);
}
"""

# A: shared-memory reduction, LANES lanes per row, vec4 weight loads
VAR_SHARED = COMMON + """
const LANES: u32 = 32u;
const ROWS: u32 = 256u / LANES;
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wid.x * ROWS + li / LANES;
    let lane = li % LANES;
    var acc = 0.0;
    if (row < P.rows) {
        for (var c = lane; c < P.chunks; c += LANES) {
            let i = row * P.chunks + c;
            acc += dot_chunk(W4[i], c * 8u) * scale(i);
        }
    }
    part[li] = acc;
    workgroupBarrier();
    for (var off = LANES / 2u; off > 0u; off >>= 1u) {
        if (lane < off) { part[li] += part[li + off]; }
        workgroupBarrier();
    }
    if (lane == 0u && row < P.rows) { Y[row] = part[li]; }
}
"""

# B: subgroup reduction (one subgroup per row); rows per workgroup = workgroup / subgroup size
VAR_SUBGROUP = ENABLE_SUBGROUPS + COMMON + """
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sg: u32, @builtin(local_invocation_index) li: u32) {
    let row = wid.x * (128u / sg) + li / sg;
    var acc = 0.0;
    if (row < P.rows) {
        for (var c = lane; c < P.chunks; c += sg) {
            let i = row * P.chunks + c;
            acc += dot_chunk(W4[i], c * 8u) * scale(i);
        }
    }
    acc = subgroupAdd(acc);
    if (lane == 0u && row < P.rows) { Y[row] = acc; }
}
"""

# C: subgroup reduction, 2 rows per subgroup (x loads shared between them), chunk loop unrolled by 2
VAR_SUBGROUP_2ROWS = ENABLE_SUBGROUPS + COMMON + """
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sg: u32, @builtin(local_invocation_index) li: u32) {
    let r0 = (wid.x * (128u / sg) + li / sg) * 2u;
    let r1 = min(r0 + 1u, P.rows - 1u);
    var a0 = 0.0;
    var a1 = 0.0;
    if (r0 < P.rows) {
        for (var c = lane; c < P.chunks; c += sg) {
            let i0 = r0 * P.chunks + c;
            let i1 = r1 * P.chunks + c;
            let q0 = W4[i0];
            let q1 = W4[i1];
            let s0 = scale(i0);
            let s1 = scale(i1);
            let xb = c * 8u;
            var d0 = 0.0;
            var d1 = 0.0;
            for (var j = 0u; j < 4u; j++) {
                let xl = X[xb + j];
                let xh = X[xb + 4u + j];
                d0 += dot(lo4(q0[j]), xl) + dot(hi4(q0[j]), xh);
                d1 += dot(lo4(q1[j]), xl) + dot(hi4(q1[j]), xh);
            }
            a0 += d0 * s0;
            a1 += d1 * s1;
        }
    }
    a0 = subgroupAdd(a0);
    a1 = subgroupAdd(a1);
    if (lane == 0u && r0 < P.rows) { Y[r0] = a0; if (r0 + 1u < P.rows) { Y[r0 + 1u] = a1; } }
}
"""

# D: x staged in workgroup memory (K <= 4096), subgroup reduction
VAR_XSHARED = ENABLE_SUBGROUPS + COMMON + """
var<workgroup> xs: array<vec4<f32>, 1024>;
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sg: u32, @builtin(local_invocation_index) li: u32) {
    for (var i = li; i < P.chunks * 8u; i += 128u) { xs[i] = X[i]; }
    workgroupBarrier();
    let row = wid.x * (128u / sg) + li / sg;
    var acc = 0.0;
    if (row < P.rows) {
        for (var c = lane; c < P.chunks; c += sg) {
            let i = row * P.chunks + c;
            let q = W4[i];
            let xb = c * 8u;
            var d = 0.0;
            for (var j = 0u; j < 4u; j++) { d += dot(lo4(q[j]), xs[xb + j]) + dot(hi4(q[j]), xs[xb + 4u + j]); }
            acc += d * scale(i);
        }
    }
    acc = subgroupAdd(acc);
    if (lane == 0u && row < P.rows) { Y[row] = acc; }
}
"""

VARIANTS = {"shared32": (VAR_SHARED, 8, 256), "subgroup": (VAR_SUBGROUP, 4, 128),
            "subgroup_2rows": (VAR_SUBGROUP_2ROWS, 8, 128), "x_shared": (VAR_XSHARED, 4, 128)}


def log(*a):
    print(*a, flush=True)


def median_time(fn, reps=5):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="smollm")
    ns = ap.parse_args(argv)
    dev = open_device()
    sync = dev.create_buffer(4, BufferUsage.STORAGE | BufferUsage.COPY_SRC)

    def wait(programs):
        dev.run(programs, readback=[Readback(sync, 0, 4)])

    warm = dev.create_buffer(64 << 20)
    pw = dev.pipeline("warm noop", NOOP)
    prog_w = dev.prepare([Dispatch(pw, dev.bind_group(pw, [warm]), (65535, 1, 1))] * 20)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.5:      # an idle GPU clocks down: get it busy first
        wait([prog_w])
    empty = median_time(lambda: wait([]), 11)
    log(f"adapter {dev.info.describe()}; empty submit+readback {empty * 1e6:.0f} us")
    # ---- 1. dispatch floor
    a = dev.create_buffer(256)
    b = dev.create_buffer(256)
    p = dev.pipeline("noop", NOOP)
    same = dev.prepare([Dispatch(p, dev.bind_group(p, [a]), (1, 1, 1))] * 100)
    alt = dev.prepare([Dispatch(p, dev.bind_group(p, [x]), (1, 1, 1)) for x in (a, b)] * 50)
    for name, prog in (("100 dependent no-op dispatches", same), ("100 alternating no-op dispatches", alt)):
        t = median_time(lambda: wait([prog]))
        log(f"{name}: {(t - empty) / 100 * 1e6:.2f} us each")
    # ---- 2. decode plan, kernel by kernel
    tmp = Path(tempfile.mkdtemp())
    shape = (dict(dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn=1536, vocab=49152, fmt="Q4_1",
                  embed_fmt="Q8_0", tied=True) if ns.model == "smollm" else
             dict(dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn=5632, vocab=32000, fmt="Q4_0",
                  embed_fmt="Q8_0", output_fmt="Q6_K"))
    if ns.quick:
        shape["n_layers"] = 2
    g = GGUFFile.open(write_synthetic_llama(tmp / "m.gguf", context_length=2048, **shape))
    variants = [{"matvec_x": "global"}, {"matvec_x": "shared"}, {"matvec_unroll": 2}, {"attn_splits": 4},
                {"attn_splits": 16}, {"matvec_lanes": 16}, {"matvec_x": "shared", "matvec_unroll": 2}]
    for v in variants:
        pm = load_planned(g, device=dev, fallback=False, profile={"name": "native-gpu", **v})
        sess = Session(pm, 512)
        sess.prefill([1, 2, 3, 4, 5, 6])
        plan = pm._plans[(1, 1, id(pm._cache))]
        pm.be.write_step(300, 1, [7], reset=True)
        t = median_time(lambda: wait([plan.program]), 9)
        log(f"decode step at position 300, {v}: {(t - empty) * 1e3:.3f} ms GPU+submit for {plan.n_dispatches} "
            f"dispatches")
    groups = defaultdict(list)
    for s in plan.program.steps:
        groups[s.pipeline.name].append(s)
    total = 0.0
    for name, steps in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        prog = dev.prepare(steps)
        t = median_time(lambda: wait([prog]))
        per = (t - empty) / len(steps)
        total += t - empty
        log(f"  {name:40s} x{len(steps):4d}: {per * 1e6:8.2f} us each, {(t - empty) * 1e3:7.3f} ms")
    log(f"  sum of groups {total * 1e3:.3f} ms")
    # ---- 3. matvec variants
    rng = np.random.default_rng(0)
    shapes = [(576, 576), (1536, 576), (576, 1536), (49152, 576), (2048, 2048), (5632, 2048), (2048, 5632),
              (32000, 2048), (8192, 8192), (14336, 4096)]
    if ns.quick:
        shapes = shapes[:3]
    for rows, cols in shapes:
        raw = random_tensor("Q4_0", (rows, cols), rng, 0.5)
        ref = dequantize(raw, GGMLType.Q4_0, (rows, cols)).astype(np.float64)
        mats = [dev.buffer_from(repack(raw, "Q4_0", rows, cols)) for _ in range(4 if rows * cols > 4e6 else 1)]
        x_np = rng.standard_normal(cols).astype(np.float32)
        x = dev.buffer_from(x_np)
        y = dev.create_buffer(rows * 4)
        uni = dev.create_buffer(256, BufferUsage.UNIFORM | BufferUsage.COPY_DST)
        dev.write_buffer(uni, pack(rows, cols // CHUNK, 0, 0))
        nbytes = raw.size
        line = [f"Q4_0 {rows:6d}x{cols:5d}"]
        for name, (src, rows_per_wg, wg) in VARIANTS.items():
            if name == "x_shared" and cols > 4096:
                continue
            try:
                pipe = dev.pipeline("variant " + name, preprocess("_quant_q4_0.wgsl") if False else src)
            except Exception as e:  # noqa: BLE001
                line.append(f"{name}: failed ({str(e)[:60]})")
                continue
            steps = [Dispatch(pipe, dev.bind_group(pipe, [w, w, x, y, (uni, 0, 16)]), fold(-(-rows // rows_per_wg)))
                     for w in mats] * (20 // len(mats))
            prog = dev.prepare(steps)
            (got,) = dev.run([prog], readback=[Readback(y, 0, rows * 4)])
            err = np.abs(got.view(np.float32) - ref @ x_np).max() / (1 + np.abs(ref @ x_np).max())
            t = median_time(lambda: wait([prog]))
            per = (t - empty) / len(steps)
            line.append(f"{name} {per * 1e6:7.1f} us {nbytes / per / 1e9:6.0f} GB/s" + (" WRONG" if err > 1e-4 else ""))
        # the shipped kernel (matvec_q4_0, 32 lanes) for reference
        mv = pm.be.pipeline("matvec_q4_0", {"WG": 256, "LANES": 32})
        prm = dev.create_buffer(256, BufferUsage.UNIFORM | BufferUsage.COPY_DST)
        words = pack((0, rows, cols // CHUNK, 0), (0,) * 4, (0,) * 4, (0,) * 4, (rows, rows, rows, 0), 0, 0, rows, 0)
        dev.write_buffer(prm, words)
        steps = [Dispatch(mv, dev.bind_group(mv, [w, x, y, (prm, 0, words.size * 4)]), fold(-(-rows // 8)))
                 for w in mats] * (20 // len(mats))
        prog = dev.prepare(steps)
        t = median_time(lambda: wait([prog]))
        per = (t - empty) / len(steps)
        line.append(f"shipped {per * 1e6:7.1f} us {nbytes / per / 1e9:6.0f} GB/s")
        log(" | ".join(line))
        for w in mats:
            dev.destroy_buffer(w)


if __name__ == "__main__":
    main()
