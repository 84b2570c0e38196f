// _quant_q6_k: read Q6_K weights from the arena W (an include, not a kernel).
//
// GGUF Q6_K super-block (210 bytes, 256 elements): ql 128 bytes | qh 64 bytes |
// scales 16 x int8 | d f16.  210 is not a multiple of 4: at upload each block
// gets 2 zero bytes appended (212 bytes = 53 words, +1%), so every field stays
// where GGUF puts it and d sits in the low half of word 52.
//   low 4 bits: elem 128h + 64k + l (l < 64) = nibble k of ql[64h + l]
//   high 2 bits: elem 128h + 32s + l (l < 32) = bits 2s..2s+1 of qh[32h + l]
//   x = (d * scale[e / 16]) * (q - 32)

// base: first word of the matrix in W; rows: rows stored there (sizes the sections);
// chunks: 32-element chunks per row; row0: first row of this view (fused Q/K/V share a buffer).
struct WMat { base: u32, rows: u32, chunks: u32, row0: u32 }

fn k6_block(m: WMat, r: u32, c: u32) -> u32 {
    return m.base + (r * (m.chunks >> 3u) + (c >> 3u)) * 53u;
}

fn k6_scale(blk: u32, g: u32) -> f32 {
    let b = (W[blk + 48u + (g >> 2u)] >> ((g & 3u) * 8u)) & 0xFFu;
    return f32(bitcast<i32>(b << 24u) >> 24u);
}

// the 6-bit quants of elements 4w..4w+3 of chunk j (w in 0..7), minus 32
fn k6_quants(blk: u32, j: u32, w: u32) -> vec4<f32> {
    let h = j >> 2u;
    let s = j & 3u;
    let lo = W[blk + 16u * h + 8u * (s & 1u) + w] >> (4u * (s >> 1u));
    let hi = W[blk + 32u + 8u * h + w] >> (2u * s);
    let q = (vec4<u32>(lo, lo >> 8u, lo >> 16u, lo >> 24u) & vec4<u32>(15u))
          | ((vec4<u32>(hi, hi >> 8u, hi >> 16u, hi >> 24u) & vec4<u32>(3u)) << vec4<u32>(4u));
    return vec4<f32>(q) - 32.0;
}

#ifdef CHUNK_DOT
fn chunk_dot(m: WMat, r: u32, c: u32, xv: u32) -> f32 {
    let blk = k6_block(m, r, c);
    let j = c & 7u;
    var s0 = 0.0;
    var s1 = 0.0;
    for (var w = 0u; w < 4u; w++) {
        s0 += dot(k6_quants(blk, j, w), X[xv + w]);
        s1 += dot(k6_quants(blk, j, w + 4u), X[xv + w + 4u]);
    }
    let d = unpack2x16float(W[blk + 52u]).x;
    return d * (k6_scale(blk, 2u * j) * s0 + k6_scale(blk, 2u * j + 1u) * s1);
}
#endif

fn chunk_load(m: WMat, r: u32, c: u32, w: u32) -> vec4<f32> {
    let blk = k6_block(m, r, c);
    let j = c & 7u;
    let d = unpack2x16float(W[blk + 52u]).x;
    return (d * k6_scale(blk, 2u * j + (w >> 2u))) * k6_quants(blk, j, w);
}
