// attention_f32: causal attention over the KV cache, split-K (flash-decoding).
//
// Query t of T (at position pos0 + t, so it sees keys 0..pos0+t) and head h
// (kv head h / n_rep) split their keys into S equal ranges; workgroup (h, t, s)
// runs an online softmax over range s in blocks of 64 keys and writes a partial
// (running max m, sum l, unnormalized output acc[hd]) that attention_combine_f32
// merges.  Decode is T = 1 with S > 1 (many workgroups per head even for one
// token); prefill is T > 1.  Scores are scaled by 1/sqrt(hd) like the numpy backend.
// Workgroup 64 (one key per thread for scores, one output dim per thread for V);
// dispatch (H, T, S).  hd <= 256 and a multiple of 4.

#include "_step.wgsl"

struct Params {
    n_heads: u32,
    n_rep: u32,
    hd: u32,
    cap: u32,
    scale: f32,
    q_stride: u32,     // floats per token row of Q
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> KC: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> VC: array<f32>;
@group(0) @binding(3) var<storage, read_write> PART: array<f32>;
@group(0) @binding(4) var<storage, read> STEP: Step;
@group(0) @binding(5) var<uniform> P: Params;

const B: u32 = 64u;
const NEG: f32 = -1e30;

var<workgroup> qv: array<vec4<f32>, 64>;   // hd / 4 <= 64
var<workgroup> w: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

fn reduce_max(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var off = 32u; off > 0u; off >>= 1u) {
        if (li < off) { red[li] = max(red[li], red[li + off]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var off = 32u; off > 0u; off >>= 1u) {
        if (li < off) { red[li] += red[li + off]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let h = wid.x;
    let t = wid.y;
    let s = wid.z;
    let n_split = nwg.z;
    let hd = P.hd;
    let hd4 = hd / 4u;
    let n = STEP.pos0 + t + 1u;                 // keys this query sees
    let chunk = (n + n_split - 1u) / n_split;
    let begin = min(n, s * chunk);
    let end = min(n, begin + chunk);
    let kvh = h / P.n_rep;
    let kb4 = kvh * P.cap * hd4;                // KC base (vec4)
    let vb = kvh * P.cap * hd;                  // VC base

    let qb = t * P.q_stride + h * hd;
    if (li < hd4) {
        qv[li] = vec4<f32>(Q[qb + 4u * li], Q[qb + 4u * li + 1u], Q[qb + 4u * li + 2u], Q[qb + 4u * li + 3u]);
    }
    workgroupBarrier();

    var m = NEG;
    var l = 0.0;
    var acc = vec4<f32>(0.0);    // output dims li, li + 64, li + 128, li + 192
    for (var blk = begin; blk < end; blk += B) {
        let p = blk + li;
        var score = NEG;
        if (p < end) {
            var d = 0.0;
            let kr = kb4 + p * hd4;
            for (var j = 0u; j < hd4; j++) {
                d += dot(qv[j], KC[kr + j]);
            }
            score = d * P.scale;
        }
        let m_new = max(m, reduce_max(li, score));
        let corr = exp(m - m_new);
        var e = 0.0;
        if (p < end) { e = exp(score - m_new); }
        w[li] = e;
        l = l * corr + reduce_sum(li, e);   // the barriers inside also publish w
        let nb = min(B, end - blk);
        var a = acc * corr;
        for (var j = 0u; j < nb; j++) {
            let vr = vb + (blk + j) * hd;
            let wj = w[j];
            if (li < hd) { a.x += wj * VC[vr + li]; }
            if (li + 64u < hd) { a.y += wj * VC[vr + li + 64u]; }
            if (li + 128u < hd) { a.z += wj * VC[vr + li + 128u]; }
            if (li + 192u < hd) { a.w += wj * VC[vr + li + 192u]; }
        }
        acc = a;
        m = m_new;
        workgroupBarrier();
    }
    let stride = hd + 2u;
    let ob = ((t * P.n_heads + h) * n_split + s) * stride;
    if (li == 0u) {
        PART[ob] = m;
        PART[ob + 1u] = l;
    }
    if (li < hd) { PART[ob + 2u + li] = acc.x; }
    if (li + 64u < hd) { PART[ob + 2u + li + 64u] = acc.y; }
    if (li + 128u < hd) { PART[ob + 2u + li + 128u] = acc.z; }
    if (li + 192u < hd) { PART[ob + 2u + li + 192u] = acc.w; }
}
