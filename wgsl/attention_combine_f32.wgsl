// attention_combine_f32: merge the S split-K partials of attention_f32.
//   out[t, h, :] = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s,  M = max_s m_s
// Workgroup 64 (one output dim per thread, up to 4 each); dispatch (H, T).

struct Params {
    n_heads: u32,
    hd: u32,
    n_split: u32,
    y_stride: u32,   // floats per token row of Y
    y_off: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> PART: array<f32>;
@group(0) @binding(1) var<storage, read_write> Y: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wid.x;
    let t = wid.y;
    let stride = P.hd + 2u;
    let base = (t * P.n_heads + h) * P.n_split * stride;
    var mx = -1e30;
    for (var s = 0u; s < P.n_split; s++) { mx = max(mx, PART[base + s * stride]); }
    var l = 0.0;
    for (var s = 0u; s < P.n_split; s++) {
        l += exp(PART[base + s * stride] - mx) * PART[base + s * stride + 1u];
    }
    let yb = P.y_off + t * P.y_stride + h * P.hd;
    for (var d = li; d < P.hd; d += 64u) {
        var a = 0.0;
        for (var s = 0u; s < P.n_split; s++) {
            let o = base + s * stride;
            a += exp(PART[o] - mx) * PART[o + 2u + d];
        }
        Y[yb + d] = a / l;
    }
}
