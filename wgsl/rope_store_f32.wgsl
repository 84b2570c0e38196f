// rope_store_f32: rotary position embedding for Q and K, and the KV-cache write.
//
// One thread per element of the H query heads, Hk key heads and Hv value heads
// of T tokens at positions pos0 + t (pos0 from the Step buffer):
//   query heads: rotated into QO [T, H, hd];
//   key heads: rotated (if rot_k) into the cache KC [Hkv, cap, hd] at their position;
//   value heads: copied into VC [Hkv, cap, hd].
// Used unfused too: standalone RoPE is Hk = Hv = 0; a plain cache store is H = 0, rot_k = 0.
// Rotation: style 0 ("norm", ggml default) pairs (2i, 2i+1); style 1 ("neox")
// pairs (i, i + n_rot/2); dims past n_rot are copied.  cos/sin come from the
// tables the numpy backend uses (TAB = cos [cap, n_rot/2] then sin).
// Workgroup 64; dispatch ceil(T * (H + Hk + Hv) * hd / 64), folded into y past 65535.

#include "_step.wgsl"

struct Params {
    n_tokens: u32,
    n_q: u32,        // H: query heads to rotate
    n_k: u32,        // key heads to store
    n_v: u32,        // value heads to store
    hd: u32,
    n_rot: u32,
    style: u32,
    rot_k: u32,
    q_off: u32, q_stride: u32,
    k_off: u32, k_stride: u32,
    v_off: u32, v_stride: u32,
    cap: u32,
    sin_off: u32,    // where the sin table starts in TAB
}

@group(0) @binding(0) var<storage, read> QS: array<f32>;
@group(0) @binding(1) var<storage, read> KS: array<f32>;
@group(0) @binding(2) var<storage, read> VS: array<f32>;
@group(0) @binding(3) var<storage, read_write> QO: array<f32>;
@group(0) @binding(4) var<storage, read_write> KC: array<f32>;
@group(0) @binding(5) var<storage, read_write> VC: array<f32>;
@group(0) @binding(6) var<storage, read> TAB: array<f32>;
@group(0) @binding(7) var<storage, read> STEP: Step;
@group(0) @binding(8) var<uniform> P: Params;

// element d of a head at base (read from QS or KS), rotated for position pos
fn rotated_q(base: u32, d: u32, pos: u32) -> f32 {
    if (d >= P.n_rot) { return QS[base + d]; }
    let half = P.n_rot / 2u;
    var i: u32; var a: u32; var b: u32; var second: bool;
    if (P.style == 0u) { i = d / 2u; a = base + 2u * i; b = a + 1u; second = (d & 1u) == 1u; }
    else { i = d % half; a = base + i; b = a + half; second = d >= half; }
    let c = TAB[pos * half + i];
    let s = TAB[P.sin_off + pos * half + i];
    let x0 = QS[a];
    let x1 = QS[b];
    return select(x0 * c - x1 * s, x0 * s + x1 * c, second);
}

fn rotated_k(base: u32, d: u32, pos: u32) -> f32 {
    if (d >= P.n_rot || P.rot_k == 0u) { return KS[base + d]; }
    let half = P.n_rot / 2u;
    var i: u32; var a: u32; var b: u32; var second: bool;
    if (P.style == 0u) { i = d / 2u; a = base + 2u * i; b = a + 1u; second = (d & 1u) == 1u; }
    else { i = d % half; a = base + i; b = a + half; second = d >= half; }
    let c = TAB[pos * half + i];
    let s = TAB[P.sin_off + pos * half + i];
    let x0 = KS[a];
    let x1 = KS[b];
    return select(x0 * c - x1 * s, x0 * s + x1 * c, second);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let slots = P.n_q + P.n_k + P.n_v;
    if (idx >= P.n_tokens * slots * P.hd) { return; }
    let d = idx % P.hd;
    let slot = (idx / P.hd) % slots;
    let t = idx / (P.hd * slots);
    let pos = STEP.pos0 + t;
    if (slot < P.n_q) {
        QO[(t * P.n_q + slot) * P.hd + d] = rotated_q(P.q_off + t * P.q_stride + slot * P.hd, d, pos);
    } else if (slot < P.n_q + P.n_k) {
        let h = slot - P.n_q;
        KC[(h * P.cap + pos) * P.hd + d] = rotated_k(P.k_off + t * P.k_stride + h * P.hd, d, pos);
    } else {
        let h = slot - P.n_q - P.n_k;
        VC[(h * P.cap + pos) * P.hd + d] = VS[P.v_off + t * P.v_stride + h * P.hd + d];
    }
}
