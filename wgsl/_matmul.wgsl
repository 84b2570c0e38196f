// _matmul: the body shared by every matmul_<format> kernel (an include).
//
// Y[t, y_off + r] = sum_k W[r, k] X[t, k] for T tokens (prefill), tiled:
// a workgroup computes 64 rows x 64 tokens; per chunk of 32 k it dequantizes
// the 64x32 weight tile and loads the 64x32 token tile into workgroup memory
// (16 KiB, the WebGPU default limit), then each thread accumulates 4x4 outputs.
// Variant RESIDUAL: Y = R + W X (R has Y's layout).
// Workgroup: 16 x 16.  Dispatch: (ceil(rows / 64), ceil(T / 64)).
//
// Variant ROWWISE: one invocation per (row, block of 8 tokens) dequantizes
// each chunk of its row once into registers and uses it for 8 tokens; no
// workgroup memory, no barriers.  Best on CPU adapters (lavapipe, SwiftShader
// vectorize across invocations and pay dearly for barriers) and for small T.
// Workgroup 64; dispatch ceil(rows * ceil(T / 8) / 64), folded into y past 65535.

struct Params {
    m: WMat,
    n_rows: u32,      // rows of this view (output width of this matmul)
    n_tokens: u32,
    x_stride: u32,    // vec4 per token row of X
    y_stride: u32,    // floats per token row of Y (and R)
    y_off: u32,
    x_off: u32,       // X index (vec4) of token 0's first element
    r_off: u32,       // RESIDUAL: R index of token 0, row 0
    pad0: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
#ifdef RESIDUAL
@group(0) @binding(4) var<storage, read> R: array<f32>;
#endif

#ifdef ROWWISE
const TB: u32 = 8u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let n_tb = (P.n_tokens + TB - 1u) / TB;
    if (idx >= P.n_rows * n_tb) { return; }
    let row = idx % P.n_rows;
    let t0 = (idx / P.n_rows) * TB;
    var acc: array<f32, 8>;
    for (var i = 0u; i < TB; i++) { acc[i] = 0.0; }
    for (var c = 0u; c < P.m.chunks; c++) {
        var w: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) { w[j] = chunk_load(P.m, P.m.row0 + row, c, j); }
        for (var i = 0u; i < TB; i++) {
            let t = t0 + i;
            if (t < P.n_tokens) {
                let xb = P.x_off + t * P.x_stride + c * 8u;
                var s = 0.0;
                for (var j = 0u; j < 8u; j++) { s += dot(w[j], X[xb + j]); }
                acc[i] += s;
            }
        }
    }
    for (var i = 0u; i < TB; i++) {
        let t = t0 + i;
        if (t < P.n_tokens) {
            var y = acc[i];
#ifdef RESIDUAL
            y = R[P.r_off + t * P.y_stride + row] + y;
#endif
            Y[t * P.y_stride + P.y_off + row] = y;
        }
    }
}
#else
const TILE: u32 = 64u;

var<workgroup> ws: array<vec4<f32>, 512>;   // [64 rows][8 vec4]
var<workgroup> xs: array<vec4<f32>, 512>;   // [64 tokens][8 vec4]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let r0 = wid.x * TILE;
    let t0 = wid.y * TILE;
    var acc: array<vec4<f32>, 4>;   // acc[a][b]: row ty*4+a, token tx*4+b
    for (var a = 0u; a < 4u; a++) { acc[a] = vec4<f32>(0.0); }
    for (var c = 0u; c < P.m.chunks; c++) {
        for (var k = 0u; k < 2u; k++) {
            let idx = li + k * 256u;
            let row = r0 + idx / 8u;
            let tok = t0 + idx / 8u;
            let j = idx % 8u;
            var w = vec4<f32>(0.0);
            if (row < P.n_rows) { w = chunk_load(P.m, P.m.row0 + row, c, j); }
            ws[idx] = w;
            var x = vec4<f32>(0.0);
            if (tok < P.n_tokens) { x = X[P.x_off + tok * P.x_stride + c * 8u + j]; }
            xs[idx] = x;
        }
        workgroupBarrier();
        for (var j = 0u; j < 8u; j++) {
            let x0 = xs[(lid.x * 4u + 0u) * 8u + j];
            let x1 = xs[(lid.x * 4u + 1u) * 8u + j];
            let x2 = xs[(lid.x * 4u + 2u) * 8u + j];
            let x3 = xs[(lid.x * 4u + 3u) * 8u + j];
            for (var a = 0u; a < 4u; a++) {
                let w = ws[(lid.y * 4u + a) * 8u + j];
                acc[a] += vec4<f32>(dot(w, x0), dot(w, x1), dot(w, x2), dot(w, x3));
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < 4u; a++) {
        let row = r0 + lid.y * 4u + a;
        for (var b = 0u; b < 4u; b++) {
            let tok = t0 + lid.x * 4u + b;
            if (row < P.n_rows && tok < P.n_tokens) {
                var y = acc[a][b];
#ifdef RESIDUAL
                y = R[P.r_off + tok * P.y_stride + row] + y;
#endif
                Y[tok * P.y_stride + P.y_off + row] = y;
            }
        }
    }
}
#endif
