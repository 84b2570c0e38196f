// rmsnorm_f32: Y[t] = X[t] / sqrt(mean(X[t]^2) + eps) * w, row by row.
// Workgroup 256 (tree reduction of the sum of squares in workgroup memory);
// dispatch: T workgroups, one per token row.

struct Params {
    n: u32,          // row length
    x_off: u32,
    x_stride: u32,
    y_off: u32,
    y_stride: u32,
    eps: f32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let xb = P.x_off + wid.x * P.x_stride;
    let yb = P.y_off + wid.x * P.y_stride;
    var s = 0.0;
    for (var i = li; i < P.n; i += 256u) {
        let v = X[xb + i];
        s += v * v;
    }
    red[li] = s;
    workgroupBarrier();
    for (var off = 128u; off > 0u; off >>= 1u) {
        if (li < off) { red[li] += red[li + off]; }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(red[0] / f32(P.n) + P.eps);
    for (var i = li; i < P.n; i += 256u) {
        Y[yb + i] = X[xb + i] * inv * G[i];
    }
}
