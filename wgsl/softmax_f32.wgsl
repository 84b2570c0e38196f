// softmax_f32: Y[r] = exp(X[r] - max X[r]) / sum exp(X[r] - max X[r]), row by row.
// (Attention does its own online softmax; this one is for logits and tests.)
// Workgroup 256 (max and sum reduced in workgroup memory); dispatch: one workgroup per row.

struct Params {
    n: u32,
    x_off: u32,
    x_stride: u32,
    y_off: u32,
    y_stride: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let xb = P.x_off + wid.x * P.x_stride;
    let yb = P.y_off + wid.x * P.y_stride;
    var m = -3.4e38;
    for (var i = li; i < P.n; i += 256u) { m = max(m, X[xb + i]); }
    red[li] = m;
    workgroupBarrier();
    for (var off = 128u; off > 0u; off >>= 1u) {
        if (li < off) { red[li] = max(red[li], red[li + off]); }
        workgroupBarrier();
    }
    m = red[0];
    workgroupBarrier();
    var s = 0.0;
    for (var i = li; i < P.n; i += 256u) { s += exp(X[xb + i] - m); }
    red[li] = s;
    workgroupBarrier();
    for (var off = 128u; off > 0u; off >>= 1u) {
        if (li < off) { red[li] += red[li + off]; }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    for (var i = li; i < P.n; i += 256u) { Y[yb + i] = exp(X[xb + i] - m) * inv; }
}
