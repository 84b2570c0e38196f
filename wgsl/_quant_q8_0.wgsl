// _quant_q8_0: read Q8_0 weights from the arena W (an include, not a kernel).
//
// GGUF Q8_0 block (34 bytes): d f16 | qs 32 x int8; x = d * q.  Repacked at
// upload into two aligned sections (same bytes):
//   QS: R*C*8 words, chunk i's 32 bytes at words 8i..8i+7 | D: R*C halves, two per word

// base: first word of the matrix in W; rows: rows stored there (sizes the sections);
// chunks: 32-element chunks per row; row0: first row of this view (fused Q/K/V share a buffer).
struct WMat { base: u32, rows: u32, chunks: u32, row0: u32 }

// four int8 in a word, sign-extended (no unpack4xI8: not every WGSL compiler has it)
fn i8x4(v: u32) -> vec4<f32> {
    let s = bitcast<vec4<i32>>(vec4<u32>(v << 24u, v << 16u, v << 8u, v)) >> vec4<u32>(24u);
    return vec4<f32>(s);
}

fn chunk_scale(m: WMat, i: u32) -> f32 {
    let d = unpack2x16float(W[m.base + m.rows * m.chunks * 8u + (i >> 1u)]);
    return select(d.x, d.y, (i & 1u) == 1u);
}

#ifdef CHUNK_DOT
fn chunk_dot(m: WMat, r: u32, c: u32, xv: u32) -> f32 {
    let i = r * m.chunks + c;
    let q = m.base + i * 8u;
    var s = 0.0;
    for (var w = 0u; w < 8u; w++) {
        s += dot(i8x4(W[q + w]), X[xv + w]);
    }
    return s * chunk_scale(m, i);
}
#endif

fn chunk_load(m: WMat, r: u32, c: u32, j: u32) -> vec4<f32> {
    let i = r * m.chunks + c;
    return chunk_scale(m, i) * i8x4(W[m.base + i * 8u + j]);
}
