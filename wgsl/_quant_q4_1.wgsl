// _quant_q4_1: read Q4_1 weights from the arena W (an include, not a kernel).
//
// GGUF Q4_1 block (20 bytes): d f16 | m f16 | qs 16 bytes (byte j: low nibble =
// elem j, high nibble = elem j + 16); x = d * q + m.  Repacked at upload into
// two aligned sections (same bytes):
//   QS: R*C*4 words, the 16 qs bytes of chunk i at words 4i..4i+3
//   DM: R*C words, chunk i's (d, m) pair as one word (d in the low half)

// base: first word of the matrix in W; rows: rows stored there (sizes the sections);
// chunks: 32-element chunks per row; row0: first row of this view (fused Q/K/V share a buffer).
struct WMat { base: u32, rows: u32, chunks: u32, row0: u32 }

fn q4_lo(v: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(v, v >> 8u, v >> 16u, v >> 24u) & vec4<u32>(15u));
}
fn q4_hi(v: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(v >> 4u, v >> 12u, v >> 20u, v >> 28u) & vec4<u32>(15u));
}

fn chunk_dm(m: WMat, i: u32) -> vec2<f32> {
    return unpack2x16float(W[m.base + m.rows * m.chunks * 4u + i]);
}

#ifdef CHUNK_DOT
// sum_k (d q_k + m) x_k = d * sum(q x) + m * sum(x)
fn chunk_dot(m: WMat, r: u32, c: u32, xv: u32) -> f32 {
    let i = r * m.chunks + c;
    let q = m.base + i * 4u;
    var sq = 0.0;
    var sx = vec4<f32>(0.0);
    for (var w = 0u; w < 4u; w++) {
        let v = W[q + w];
        let a = X[xv + w];
        let b = X[xv + 4u + w];
        sq += dot(q4_lo(v), a) + dot(q4_hi(v), b);
        sx += a + b;
    }
    let dm = chunk_dm(m, i);
    return dm.x * sq + dm.y * (sx.x + sx.y + sx.z + sx.w);
}
#endif

fn chunk_load(m: WMat, r: u32, c: u32, j: u32) -> vec4<f32> {
    let i = r * m.chunks + c;
    let v = W[m.base + i * 4u + (j & 3u)];
    let q = select(q4_lo(v), q4_hi(v), j >= 4u);
    let dm = chunk_dm(m, i);
    return dm.x * q + dm.y;
}
