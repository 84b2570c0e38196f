// _matvec: the body shared by every matvec_<format> kernel (an include).
//
// y[r] = sum_k W[r, k] x[k] for one token (decode).  Up to three matrices that
// read the same x (Q, K, V) run in one dispatch as "segments": rows of segment
// i are rows row_end[i-1]..row_end[i] of the dispatch and land at Y[y_off[i] + r].
// Variants (defines): RESIDUAL: y = R + W x (the residual add fused);
// GATE_UP: segments 0 and 1 are gate and up of the same shape, y = silu(g) * u;
// XSHARED (with XVEC = K / 4): x is staged in workgroup memory first (read
// once from the storage buffer XIN per workgroup), and with NORM it is
// RMS-normalised on the way in, x * (1 / sqrt(mean(x^2) + eps)) * G, so the
// norm that precedes every projection costs no dispatch of its own;
// COMBINE (with XSHARED): x is merged from attention's split-K partials;
// UNROLL2: two chunks per loop iteration (more loads in flight on GPUs);
// TWO_ROWS: each lane group computes two adjacent rows (every segment has an
// even number of rows); ROPE (with TWO_ROWS, segments Q, K, V): see rope_store.
// Workgroup: WG = ROWS rows x LANES lanes; a lane takes every LANES-th chunk
// of 32 weights, then the lanes of a row reduce in workgroup memory.  LANES = 1
// (one invocation per row, no barrier) suits CPU adapters such as lavapipe,
// which vectorize across invocations; GPUs want LANES = 32 (coalesced loads).
// Dispatch: ceil(total_rows / ROWS) workgroups, folded into y past 65535.

struct Params {
    seg: array<WMat, 3>,
    y_off: vec4<u32>,
    row_end: vec4<u32>,    // cumulative rows of segments 0, 1, 2
    x_off: u32,            // X index (vec4) of x[0]
    r_off: u32,            // R index of the residual row (RESIDUAL)
    total_rows: u32,
    eps: f32,              // NORM
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
#ifdef XSHARED
#ifndef COMBINE
@group(0) @binding(1) var<storage, read> XIN: array<vec4<f32>>;
#endif
const XVEC: u32 = 144u;
var<workgroup> X: array<vec4<f32>, XVEC>;
#else
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
#endif
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
#ifdef RESIDUAL
@group(0) @binding(4) var<storage, read> R: array<f32>;
#endif
#ifdef NORM
@group(0) @binding(5) var<storage, read> G: array<vec4<f32>>;
#endif
#ifdef COMBINE
// x is the attention output still in split-K partials [H][S][hd + 2] (running max, sum, acc):
// merged here while staging, as attention_combine_f32 would (one dispatch fewer per layer)
struct CombineParams { n_heads: u32, hd: u32, n_split: u32, pad: u32 }
@group(0) @binding(11) var<storage, read> PART: array<f32>;
@group(0) @binding(12) var<uniform> CP: CombineParams;

fn combined(e: u32) -> f32 {
    let h = e / CP.hd;
    let d = e % CP.hd;
    let stride = CP.hd + 2u;
    let base = h * CP.n_split * stride;
    var mx = -1e30;
    for (var s = 0u; s < CP.n_split; s++) { mx = max(mx, PART[base + s * stride]); }
    var l = 0.0;
    var a = 0.0;
    for (var s = 0u; s < CP.n_split; s++) {
        let o = base + s * stride;
        let w = exp(PART[o] - mx);
        l += w * PART[o + 1u];
        a += w * PART[o + 2u + d];
    }
    return a / l;
}
#endif

const WG: u32 = 256u;
const LANES: u32 = 32u;
const ROWS: u32 = WG / LANES;      // lane groups per workgroup
#ifdef TWO_ROWS
const RPT: u32 = 2u;               // rows per lane group: twice the loads in flight, x read once for both
#else
const RPT: u32 = 1u;
#endif

var<workgroup> part: array<f32, WG>;
var<workgroup> part1: array<f32, WG>;
#ifdef GATE_UP
var<workgroup> part_up: array<f32, WG>;
var<workgroup> part_up1: array<f32, WG>;
#endif

#ifdef ROPE
// Q/K/V of one token with RoPE ("norm" style: pairs 2i, 2i+1) and the KV-cache
// write in the epilogue: with TWO_ROWS a lane group owns both rows of a pair.
// Segment 0 (Q) is rotated into Y; segment 1 (K) rotated into the cache KC,
// segment 2 (V) copied into VC, both at position STEP.pos0.
#include "_step.wgsl"
struct RopeParams { hd: u32, n_rot: u32, cap: u32, sin_off: u32 }
@group(0) @binding(6) var<storage, read> STEP: Step;
@group(0) @binding(7) var<storage, read> TAB: array<f32>;
@group(0) @binding(8) var<storage, read_write> KC: array<f32>;
@group(0) @binding(9) var<storage, read_write> VC: array<f32>;
@group(0) @binding(10) var<uniform> RP: RopeParams;

fn rope_store(seg: u32, r: u32, y0: f32, y1: f32) {
    let pos = STEP.pos0;
    let d = r % RP.hd;             // even: rows come in pairs
    var a = y0;
    var b = y1;
    if (seg < 2u && d < RP.n_rot) {
        let half = RP.n_rot / 2u;
        let c = TAB[pos * half + d / 2u];
        let s = TAB[RP.sin_off + pos * half + d / 2u];
        a = y0 * c - y1 * s;
        b = y0 * s + y1 * c;
    }
    if (seg == 0u) {
        Y[P.y_off.x + r] = a;
        Y[P.y_off.x + r + 1u] = b;
    } else {
        let o = ((r / RP.hd) * RP.cap + pos) * RP.hd + d;
        if (seg == 1u) { KC[o] = a; KC[o + 1u] = b; } else { VC[o] = a; VC[o + 1u] = b; }
    }
}
#endif

fn silu_mul(g: f32, u: f32) -> f32 {
    // g * sigmoid(g) * u, written as numpy does: g / (1 + exp(-g)) * u
    return g / (1.0 + exp(-g)) * u;
}

#ifdef XSHARED
// x -> workgroup memory (normalised with NORM); every invocation takes part
fn stage_x(li: u32) {
    var scale = 1.0;
#ifdef NORM
    var ss = 0.0;
    for (var i = li; i < XVEC; i += WG) {
        let v = XIN[P.x_off + i];
        ss += dot(v, v);
    }
    part[li] = ss;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        if (li < off) { part[li] += part[li + off]; }
        workgroupBarrier();
    }
    scale = 1.0 / sqrt(part[0] / f32(XVEC * 4u) + P.eps);
    workgroupBarrier();
#endif
    for (var i = li; i < XVEC; i += WG) {
#ifdef COMBINE
        X[i] = vec4<f32>(combined(4u * i), combined(4u * i + 1u), combined(4u * i + 2u), combined(4u * i + 3u));
#else
#ifdef NORM
        X[i] = XIN[P.x_off + i] * scale * G[i];
#else
        X[i] = XIN[P.x_off + i];
#endif
#endif
    }
    workgroupBarrier();
}
#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
#ifdef XSHARED
    stage_x(li);
    let xo = 0u;
#else
    let xo = P.x_off;
#endif
    let lane = li % LANES;
    let row = ((wid.x + wid.y * nwg.x) * ROWS + li / LANES) * RPT;   // and row + 1 with TWO_ROWS
    var acc = 0.0;
    var acc1 = 0.0;
    var acc_up = 0.0;
    var acc_up1 = 0.0;
    var seg = 0u;
    var r = row;
    if (row < P.total_rows) {
        if (row >= P.row_end.x) { seg = 1u; r = row - P.row_end.x; }
        if (row >= P.row_end.y) { seg = 2u; r = row - P.row_end.y; }
        let m = P.seg[seg];
#ifdef UNROLL2
        // two chunks per iteration, both loaded unconditionally (the second clamped and
        // weighted 0 past the end): twice the loads in flight per lane
        for (var c0 = lane; c0 < m.chunks; c0 += 2u * LANES) {
            let c1 = min(c0 + LANES, m.chunks - 1u);
            let w1 = select(0.0, 1.0, c0 + LANES < m.chunks);
            acc += chunk_dot(m, m.row0 + r, c0, xo + c0 * 8u) + w1 * chunk_dot(m, m.row0 + r, c1, xo + c1 * 8u);
#ifdef TWO_ROWS
            acc1 += chunk_dot(m, m.row0 + r + 1u, c0, xo + c0 * 8u)
                  + w1 * chunk_dot(m, m.row0 + r + 1u, c1, xo + c1 * 8u);
#endif
#ifdef GATE_UP
            let mu = P.seg[1];
            acc_up += chunk_dot(mu, mu.row0 + r, c0, xo + c0 * 8u) + w1 * chunk_dot(mu, mu.row0 + r, c1, xo + c1 * 8u);
#ifdef TWO_ROWS
            acc_up1 += chunk_dot(mu, mu.row0 + r + 1u, c0, xo + c0 * 8u)
                     + w1 * chunk_dot(mu, mu.row0 + r + 1u, c1, xo + c1 * 8u);
#endif
#endif
        }
#else
        for (var c = lane; c < m.chunks; c += LANES) {
            let xv = xo + c * 8u;
            acc += chunk_dot(m, m.row0 + r, c, xv);
#ifdef TWO_ROWS
            acc1 += chunk_dot(m, m.row0 + r + 1u, c, xv);
#endif
#ifdef GATE_UP
            acc_up += chunk_dot(P.seg[1], P.seg[1].row0 + r, c, xv);
#ifdef TWO_ROWS
            acc_up1 += chunk_dot(P.seg[1], P.seg[1].row0 + r + 1u, c, xv);
#endif
#endif
        }
#endif
    }
    if (LANES > 1u) {
        part[li] = acc;
        part1[li] = acc1;
#ifdef GATE_UP
        part_up[li] = acc_up;
        part_up1[li] = acc_up1;
#endif
        workgroupBarrier();
        for (var off = LANES / 2u; off > 0u; off >>= 1u) {
            if (lane < off) {
                part[li] += part[li + off];
                part1[li] += part1[li + off];
#ifdef GATE_UP
                part_up[li] += part_up[li + off];
                part_up1[li] += part_up1[li + off];
#endif
            }
            workgroupBarrier();
        }
        acc = part[li];
        acc1 = part1[li];
#ifdef GATE_UP
        acc_up = part_up[li];
        acc_up1 = part_up1[li];
#endif
    }
    if (lane == 0u && row < P.total_rows) {
        var y = acc;
        var y1 = acc1;
#ifdef GATE_UP
        y = silu_mul(y, acc_up);
        y1 = silu_mul(y1, acc_up1);
#endif
#ifdef RESIDUAL
        y = R[P.r_off + r] + y;
        y1 = R[P.r_off + r + 1u] + y1;
#endif
#ifdef ROPE
        rope_store(seg, r, y, y1);
#else
        Y[P.y_off[seg] + r] = y;
#ifdef TWO_ROWS
        Y[P.y_off[seg] + r + 1u] = y1;
#endif
#endif
    }
}
