// add_f32: Y = A + B, elementwise over T rows of n (the residual add where it
// is not fused into matvec/matmul's RESIDUAL variant; also the bias add, with
// B's row stride 0).  Workgroup 256; dispatch ceil(T * n / 256), folded into y.

struct Params {
    n: u32,
    n_rows: u32,
    a_off: u32, a_stride: u32,
    b_off: u32, b_stride: u32,
    y_off: u32, y_stride: u32,
}

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= P.n * P.n_rows) { return; }
    let t = i / P.n;
    let j = i % P.n;
    Y[P.y_off + t * P.y_stride + j] = A[P.a_off + t * P.a_stride + j] + B[P.b_off + t * P.b_stride + j];
}
