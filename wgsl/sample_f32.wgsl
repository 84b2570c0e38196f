// sample_f32: top-k / top-p / min-p / temperature sampling on the GPU with a
// seeded counter-based RNG, in llama.cpp's order (as runtime/sampler.py):
//   1. the top_k largest logits, by a 4-pass radix select on the float bits
//      (8-bit histograms in workgroup memory) and a gather of keys >= the k-th;
//   2. a bitonic sort of the candidates (logit descending, index ascending);
//   3. probabilities exp(z - z0) normalized; keep the smallest prefix whose
//      mass reaches top_p; drop those below min_p * p0;
//   4. temperature softmax over what is left and one uniform draw
//      u = pcg(seed, n_out), so a seed gives the same tokens run after run.
// The token is committed as the next step's input (_commit.wgsl).
// top_k must be 1..256 (the host samples on the CPU otherwise).
// Workgroup 256; dispatch: 1 workgroup.

#include "_step.wgsl"

struct Params {
    n_vocab: u32,
    l_off: u32,
    ring: u32,
    n_stop: u32,
    stop: array<vec4<u32>, 2>,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    inv_temp: f32,
    seed: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read_write> STEP: Step;
@group(0) @binding(2) var<storage, read_write> IDS: array<u32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<u32>;
@group(0) @binding(4) var<uniform> P: Params;

#include "_commit.wgsl"

const MAXC: u32 = 512u;   // candidates kept: top_k <= 256 plus ties at the threshold

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> n_cand: atomic<u32>;
var<workgroup> ckey: array<u32, 512>;
var<workgroup> cidx: array<u32, 512>;
var<workgroup> sel: vec2<u32>;   // (key prefix, how many still wanted at it)

// a u32 that orders like the float (larger float -> larger key); NaN lowest
fn fkey(f: f32) -> u32 {
    let b = bitcast<u32>(f);
    if (f != f) { return 0u; }
    return select(b | 0x80000000u, ~b, (b >> 31u) == 1u);
}

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

// candidate a ranks before b: larger logit, then lower index
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
    let k = clamp(P.top_k, 1u, 256u);
    // ---- 1. radix select: the key of the k-th largest logit
    var prefix = 0u;
    var mask = 0u;
    var want = k;
    for (var digit = 0u; digit < 4u; digit++) {
        let shift = 24u - 8u * digit;
        atomicStore(&hist[li], 0u);
        workgroupBarrier();
        for (var i = li; i < P.n_vocab; i += 256u) {
            let key = fkey(L[P.l_off + i]);
            if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 255u], 1u); }
        }
        workgroupBarrier();
        if (li == 0u) {
            var cum = 0u;
            var b = 255i;
            sel = vec2<u32>(prefix, want);
            loop {
                if (b < 0i) { break; }
                let hcount = atomicLoad(&hist[u32(b)]);
                if (cum + hcount >= want) {
                    sel = vec2<u32>(prefix | (u32(b) << shift), want - cum);
                    break;
                }
                cum += hcount;
                b -= 1i;
            }
        }
        workgroupBarrier();
        prefix = sel.x;
        want = sel.y;
        mask = mask | (255u << shift);
        workgroupBarrier();
    }
    // ---- gather every logit >= the threshold (ties included, up to MAXC)
    if (li == 0u) { atomicStore(&n_cand, 0u); }
    ckey[li] = 0u;
    ckey[li + 256u] = 0u;
    cidx[li] = 0xFFFFFFFFu;
    cidx[li + 256u] = 0xFFFFFFFFu;
    workgroupBarrier();
    for (var i = li; i < P.n_vocab; i += 256u) {
        let key = fkey(L[P.l_off + i]);
        if (key >= prefix) {
            let slot = atomicAdd(&n_cand, 1u);
            if (slot < MAXC) { ckey[slot] = key; cidx[slot] = i; }
        }
    }
    workgroupBarrier();
    // ---- 2. bitonic sort of the 512 slots (empty slots sort last)
    for (var size = 2u; size <= MAXC; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (var h = 0u; h < 2u; h++) {
                let i = li + h * 256u;
                let j = i ^ stride;
                if (j > i) {
                    let desc = (i & size) == 0u;   // this run sorts best-first
                    let i_first = before(ckey[i], cidx[i], ckey[j], cidx[j]);
                    if (i_first != desc) {
                        let tk = ckey[i]; ckey[i] = ckey[j]; ckey[j] = tk;
                        let ti = cidx[i]; cidx[i] = cidx[j]; cidx[j] = ti;
                    }
                }
            }
            workgroupBarrier();
        }
    }
    // ---- 3. and 4. on one thread: at most 256 candidates
    if (li == 0u) {
        let n = min(k, min(atomicLoad(&n_cand), MAXC));
        let z0 = L[P.l_off + cidx[0]];
        var total = 0.0;
        for (var i = 0u; i < n; i++) { total += exp(L[P.l_off + cidx[i]] - z0); }
        var keep = n;
        if (P.top_p < 1.0) {
            var cum = 0.0;
            for (var i = 0u; i < n; i++) {
                cum += exp(L[P.l_off + cidx[i]] - z0) / total;
                if (cum >= P.top_p) { keep = i + 1u; break; }
            }
        }
        if (P.min_p > 0.0) {
            var m = 1u;
            for (var i = 1u; i < keep; i++) {
                if (exp(L[P.l_off + cidx[i]] - z0) >= P.min_p) { m = i + 1u; } else { break; }
            }
            keep = m;
        }
        var tq = 0.0;
        for (var i = 0u; i < keep; i++) { tq += exp((L[P.l_off + cidx[i]] - z0) * P.inv_temp); }
        let r = pcg(pcg(P.seed) ^ (STEP.n_out * 0x9E3779B9u));
        let u = f32(r >> 8u) * (1.0 / 16777216.0) * tq;
        var pick = keep - 1u;
        var cum = 0.0;
        for (var i = 0u; i < keep; i++) {
            cum += exp((L[P.l_off + cidx[i]] - z0) * P.inv_temp);
            if (u < cum) { pick = i; break; }
        }
        commit(cidx[pick]);
    }
}
