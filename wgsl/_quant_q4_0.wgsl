// _quant_q4_0: read Q4_0 weights from the arena W (an include, not a kernel).
//
// GGUF Q4_0 block (18 bytes): d f16 | qs 16 bytes (byte j: low nibble = elem j,
// high nibble = elem j + 16); x = d * (q - 8).  18 is not a multiple of 4, so
// at upload (backends/webgpu/weights.py) a matrix of R rows x C chunks is
// repacked into two aligned sections, byte-for-byte the same data:
//   QS: R*C*4 words, the 16 qs bytes of chunk i at words 4i..4i+3
//   D:  R*C halves packed two per word (chunk i: half i%2 of word i/2)
// A chunk is 32 elements (one block) in every format: the unit all ops use.

// base: first word of the matrix in W; rows: rows stored there (sizes the sections);
// chunks: 32-element chunks per row; row0: first row of this view (fused Q/K/V share a buffer).
struct WMat { base: u32, rows: u32, chunks: u32, row0: u32 }

fn q4_lo(v: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(v, v >> 8u, v >> 16u, v >> 24u) & vec4<u32>(15u));
}
fn q4_hi(v: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(v >> 4u, v >> 12u, v >> 20u, v >> 28u) & vec4<u32>(15u));
}

fn chunk_scale(m: WMat, i: u32) -> f32 {
    let d = unpack2x16float(W[m.base + m.rows * m.chunks * 4u + (i >> 1u)]);
    return select(d.x, d.y, (i & 1u) == 1u);
}

#ifdef CHUNK_DOT
// sum over the chunk of w[k] * X[xv*4 + k]
fn chunk_dot(m: WMat, r: u32, c: u32, xv: u32) -> f32 {
    let i = r * m.chunks + c;
    let q = m.base + i * 4u;
    var s = 0.0;
    for (var w = 0u; w < 4u; w++) {
        let v = W[q + w];
        s += dot(q4_lo(v) - 8.0, X[xv + w]) + dot(q4_hi(v) - 8.0, X[xv + 4u + w]);
    }
    return s * chunk_scale(m, i);
}
#endif

// elements 4j..4j+3 of chunk c of row r (j in 0..7)
fn chunk_load(m: WMat, r: u32, c: u32, j: u32) -> vec4<f32> {
    let i = r * m.chunks + c;
    let v = W[m.base + i * 4u + (j & 3u)];
    let q = select(q4_lo(v), q4_hi(v), j >= 4u);
    return chunk_scale(m, i) * (q - 8.0);
}
