// swiglu_f32: Y = silu(G) * U = G / (1 + exp(-G)) * U, elementwise over T rows of n.
// (Decode fuses this into matvec's GATE_UP variant; this kernel serves prefill.)
// Workgroup 256; dispatch ceil(T * n / 256), folded into y past 65535.

struct Params {
    n: u32,
    n_rows: u32,
    g_off: u32, g_stride: u32,
    u_off: u32, u_stride: u32,
    y_off: u32, y_stride: u32,
}

@group(0) @binding(0) var<storage, read> G: array<f32>;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= P.n * P.n_rows) { return; }
    let t = i / P.n;
    let j = i % P.n;
    let g = G[P.g_off + t * P.g_stride + j];
    Y[P.y_off + t * P.y_stride + j] = g / (1.0 + exp(-g)) * U[P.u_off + t * P.u_stride + j];
}
