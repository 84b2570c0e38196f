// _embed: the body shared by every embed_<format> kernel (an include).
//
// Y[t, :] = row IDS[t] of the (quantized) table, dequantized: one thread per
// 4 output elements.  A table split into parts (larger than a storage binding)
// takes one dispatch per part; part p holds rows id_lo..id_hi and writes only
// the tokens whose id falls there.  Workgroup: 64.  Dispatch: ceil(T * dim / 4 / 64), folded
// into y past 65535.

struct Params {
    m: WMat,
    n_tokens: u32,
    id_lo: u32,
    id_hi: u32,
    ids_off: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> IDS: array<u32>;
@group(0) @binding(2) var<storage, read_write> Y: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> P: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let per_row = P.m.chunks * 8u;
    if (i >= P.n_tokens * per_row) { return; }
    let t = i / per_row;
    let c = (i % per_row) / 8u;
    let j = i % 8u;
    let id = IDS[P.ids_off + t];
    if (id < P.id_lo || id >= P.id_hi) { return; }
    Y[i] = chunk_load(P.m, P.m.row0 + id - P.id_lo, c, j);
}
