// _quant_q5_0: read Q5_0 weights from the arena W (an include, not a kernel).
//
// GGUF Q5_0 block (22 bytes): d f16 | qh u32 (bit i = 5th bit of elem i) |
// qs 16 bytes (low nibble = elem j, high = elem j + 16); x = d * (q - 16).
// Repacked at upload into three aligned sections (same bytes):
//   QS: R*C*4 words | QH: R*C words | D: R*C halves, two per word

// base: first word of the matrix in W; rows: rows stored there (sizes the sections);
// chunks: 32-element chunks per row; row0: first row of this view (fused Q/K/V share a buffer).
struct WMat { base: u32, rows: u32, chunks: u32, row0: u32 }

fn q4_lo(v: u32) -> vec4<u32> {
    return vec4<u32>(v, v >> 8u, v >> 16u, v >> 24u) & vec4<u32>(15u);
}
fn q4_hi(v: u32) -> vec4<u32> {
    return vec4<u32>(v >> 4u, v >> 12u, v >> 20u, v >> 28u) & vec4<u32>(15u);
}
// the 5th bits of elements e..e+3 as 16s
fn q5_bits(h: u32, e: u32) -> vec4<u32> {
    return ((vec4<u32>(h) >> vec4<u32>(e, e + 1u, e + 2u, e + 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
}

fn chunk_scale(m: WMat, i: u32) -> f32 {
    let n = m.rows * m.chunks;
    let d = unpack2x16float(W[m.base + n * 5u + (i >> 1u)]);
    return select(d.x, d.y, (i & 1u) == 1u);
}

#ifdef CHUNK_DOT
fn chunk_dot(m: WMat, r: u32, c: u32, xv: u32) -> f32 {
    let i = r * m.chunks + c;
    let q = m.base + i * 4u;
    let h = W[m.base + m.rows * m.chunks * 4u + i];
    var s = 0.0;
    for (var w = 0u; w < 4u; w++) {
        let v = W[q + w];
        let lo = vec4<f32>(q4_lo(v) | q5_bits(h, 4u * w)) - 16.0;
        let hi = vec4<f32>(q4_hi(v) | q5_bits(h, 16u + 4u * w)) - 16.0;
        s += dot(lo, X[xv + w]) + dot(hi, X[xv + 4u + w]);
    }
    return s * chunk_scale(m, i);
}
#endif

fn chunk_load(m: WMat, r: u32, c: u32, j: u32) -> vec4<f32> {
    let i = r * m.chunks + c;
    let v = W[m.base + i * 4u + (j & 3u)];
    let h = W[m.base + m.rows * m.chunks * 4u + i];
    let q = select(q4_lo(v), q4_hi(v), j >= 4u) | q5_bits(h, 4u * j);
    return chunk_scale(m, i) * (vec4<f32>(q) - 16.0);
}
