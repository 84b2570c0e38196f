// argmax_f32: greedy sampling on the GPU: the index of the largest logit (the
// lowest index among equal maxima, as numpy's argmax), committed as the next
// token (see _commit.wgsl): 4 bytes read back per token instead of the logits.
// Workgroup 256 (strided scan, then a tree reduction); dispatch: 1 workgroup.

#include "_step.wgsl"

struct Params {
    n_vocab: u32,
    l_off: u32,       // where the logits row starts in L
    ring: u32,        // length of the OUT ring
    n_stop: u32,      // stop token ids in use (<= 8)
    stop: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read_write> STEP: Step;
@group(0) @binding(2) var<storage, read_write> IDS: array<u32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<u32>;
@group(0) @binding(4) var<uniform> P: Params;

#include "_commit.wgsl"

var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
    var best = -3.4e38;
    var idx = 0xFFFFFFFFu;
    for (var i = li; i < P.n_vocab; i += 256u) {
        let v = L[P.l_off + i];
        if (v > best || idx == 0xFFFFFFFFu) { best = v; idx = i; }
    }
    bv[li] = best;
    bi[li] = idx;
    workgroupBarrier();
    for (var off = 128u; off > 0u; off >>= 1u) {
        if (li < off) {
            let v = bv[li + off];
            let j = bi[li + off];
            if (v > bv[li] || (v == bv[li] && j < bi[li])) { bv[li] = v; bi[li] = j; }
        }
        workgroupBarrier();
    }
    if (li == 0u) { commit(bi[0]); }
}
