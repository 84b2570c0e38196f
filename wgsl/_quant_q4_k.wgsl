// _quant_q4_k: read Q4_K weights from the arena W (an include, not a kernel).
//
// GGUF Q4_K super-block (144 bytes, 256 elements, already a multiple of 4, so
// uploaded as it is, 36 words a block):
//   word 0: d f16 | dmin f16;  words 1..3: twelve bytes of 6-bit scales and mins
//   words 4..35: qs, 128 bytes: elem 64p + l = low nibble of byte 32p + l,
//                elem 64p + 32 + l = high nibble (p in 0..3, l in 0..31)
// Chunk j (32 elements, j in 0..7) has scale sc_j and min m_j:
//   x = (d * sc_j) * q - (dmin * m_j)

// base: first word of the matrix in W; rows: rows stored there (sizes the sections);
// chunks: 32-element chunks per row; row0: first row of this view (fused Q/K/V share a buffer).
struct WMat { base: u32, rows: u32, chunks: u32, row0: u32 }

fn k_byte(blk: u32, n: u32) -> u32 {
    return (W[blk + 1u + (n >> 2u)] >> ((n & 3u) * 8u)) & 0xFFu;
}

// (d * sc_j, dmin * m_j) of chunk j of the block at word blk
fn k4_scale_min(blk: u32, j: u32) -> vec2<f32> {
    let dm = unpack2x16float(W[blk]);
    var sc: u32;
    var mn: u32;
    if (j < 4u) {
        sc = k_byte(blk, j) & 63u;
        mn = k_byte(blk, j + 4u) & 63u;
    } else {
        sc = (k_byte(blk, j + 4u) & 15u) | ((k_byte(blk, j - 4u) >> 6u) << 4u);
        mn = (k_byte(blk, j + 4u) >> 4u) | ((k_byte(blk, j) >> 6u) << 4u);
    }
    return vec2<f32>(dm.x * f32(sc), dm.y * f32(mn));
}

fn k4_block(m: WMat, r: u32, c: u32) -> u32 {
    return m.base + (r * (m.chunks >> 3u) + (c >> 3u)) * 36u;
}

fn q4_nib(v: u32, shift: u32) -> vec4<f32> {
    let s = v >> shift;
    return vec4<f32>(vec4<u32>(s, s >> 8u, s >> 16u, s >> 24u) & vec4<u32>(15u));
}

#ifdef CHUNK_DOT
fn chunk_dot(m: WMat, r: u32, c: u32, xv: u32) -> f32 {
    let blk = k4_block(m, r, c);
    let j = c & 7u;
    let q = blk + 4u + 8u * (j >> 1u);
    let shift = (j & 1u) * 4u;
    var sq = 0.0;
    var sx = vec4<f32>(0.0);
    for (var w = 0u; w < 8u; w++) {
        let a = X[xv + w];
        sq += dot(q4_nib(W[q + w], shift), a);
        sx += a;
    }
    let sm = k4_scale_min(blk, j);
    return sm.x * sq - sm.y * (sx.x + sx.y + sx.z + sx.w);
}
#endif

fn chunk_load(m: WMat, r: u32, c: u32, j4: u32) -> vec4<f32> {
    let blk = k4_block(m, r, c);
    let j = c & 7u;
    let v = W[blk + 4u + 8u * (j >> 1u) + j4];
    let sm = k4_scale_min(blk, j);
    return sm.x * q4_nib(v, (j & 1u) * 4u) - sm.y;
}
