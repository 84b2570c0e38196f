// _quant_f32: read F32 weights from the arena W (an include, not a kernel).
// Stored as in GGUF, one float per word, row-major; a chunk is 32 elements = 32 words.

// base: first word of the matrix in W; rows: rows stored there (sizes the sections);
// chunks: 32-element chunks per row; row0: first row of this view (fused Q/K/V share a buffer).
struct WMat { base: u32, rows: u32, chunks: u32, row0: u32 }

fn chunk_load(m: WMat, r: u32, c: u32, j: u32) -> vec4<f32> {
    let i = m.base + (r * m.chunks + c) * 32u + 4u * j;
    return bitcast<vec4<f32>>(vec4<u32>(W[i], W[i + 1u], W[i + 2u], W[i + 3u]));
}

#ifdef CHUNK_DOT
fn chunk_dot(m: WMat, r: u32, c: u32, xv: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < 8u; j++) {
        s += dot(chunk_load(m, r, c, j), X[xv + j]);
    }
    return s;
}
#endif
