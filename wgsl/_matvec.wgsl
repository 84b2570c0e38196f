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
// norm that precedes every projection costs no dispatch of its own.
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
@group(0) @binding(1) var<storage, read> XIN: array<vec4<f32>>;
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

const WG: u32 = 256u;
const LANES: u32 = 32u;
const ROWS: u32 = WG / LANES;

var<workgroup> part: array<f32, WG>;
#ifdef GATE_UP
var<workgroup> part_up: array<f32, WG>;
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
#ifdef NORM
        X[i] = XIN[P.x_off + i] * scale * G[i];
#else
        X[i] = XIN[P.x_off + i];
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
    let row = (wid.x + wid.y * nwg.x) * ROWS + li / LANES;
    let lane = li % LANES;
    var acc = 0.0;
#ifdef GATE_UP
    var acc_up = 0.0;
#endif
    var seg = 0u;
    var r = row;
    if (row < P.total_rows) {
        if (row >= P.row_end.x) { seg = 1u; r = row - P.row_end.x; }
        if (row >= P.row_end.y) { seg = 2u; r = row - P.row_end.y; }
        let m = P.seg[seg];
        for (var c = lane; c < m.chunks; c += LANES) {
            acc += chunk_dot(m, m.row0 + r, c, xo + c * 8u);
#ifdef GATE_UP
            acc_up += chunk_dot(P.seg[1], P.seg[1].row0 + r, c, xo + c * 8u);
#endif
        }
    }
    if (LANES > 1u) {
        part[li] = acc;
#ifdef GATE_UP
        part_up[li] = acc_up;
#endif
        workgroupBarrier();
        for (var off = LANES / 2u; off > 0u; off >>= 1u) {
            if (lane < off) {
                part[li] += part[li + off];
#ifdef GATE_UP
                part_up[li] += part_up[li + off];
#endif
            }
            workgroupBarrier();
        }
        acc = part[li];
#ifdef GATE_UP
        acc_up = part_up[li];
#endif
    }
    if (lane == 0u && row < P.total_rows) {
        var y = acc;
#ifdef GATE_UP
        y = silu_mul(y, acc_up);
#endif
#ifdef RESIDUAL
        y = R[P.r_off + r] + y;
#endif
        Y[P.y_off[seg] + r] = y;
    }
}
