/* matmul_q: y[t, r] = sum_k W[r, k] x[t, k] with W in a ggml block format,
 * kept exactly as the GGUF file stores it, and x quantized to int16 blocks
 * of 32 (act_quant.c).  Weights are widened to int16 in registers and
 * multiplied with i32x4.dot_i16x8_s; each 32-element block's integer sum is
 * scaled in float32 by (weight scale) * (activation scale).
 *
 *   w   [rows, K/BE] blocks of BB bytes (BE elements each), row-major
 *   a   quantized activations of x [T, K]
 *   y   [T, ldy] float32, columns r0..r1-1 written
 *
 * Formats (type ids are ggml's; block layouts as in formats/quants.py):
 *   Q4_0 (2)  32 elems, 18 bytes: d f16, 16 bytes of nibbles      x = d (q - 8)
 *   Q4_1 (3)  32 elems, 20 bytes: d, m f16, 16 bytes of nibbles   x = d q + m
 *   Q8_0 (8)  32 elems, 34 bytes: d f16, 32 int8                  x = d q
 *   Q4_K (12) 256 elems, 144 bytes: 8 sub-blocks of 32, 6-bit scales/mins
 *   Q6_K (14) 256 elems, 210 bytes: 16 sub-blocks of 16, int8 scales
 *
 * Variants: one token (decode) reduces four blocks' integer sums into one
 * vector and scales them with one multiply (Q4_0/Q4_1/Q8_0); a tile of 4
 * tokens (prefill) widens each weight block once and reuses it for the 4.
 */
#include "common.h"

enum { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, Q4_K = 12, Q6_K = 14 };

INLINE v128_t dot32(const v128_t w[4], const i16 *x) {
  v128_t s = wasm_i32x4_dot_i16x8(w[0], wasm_v128_load(x));
  s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(w[1], wasm_v128_load(x + 8)));
  s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(w[2], wasm_v128_load(x + 16)));
  return wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(w[3], wasm_v128_load(x + 24)));
}

/* 16 bytes of nibbles (byte j: elem j low, elem j + 16 high) -> elems 0..31 as 4 x i16x8 */
INLINE void unpack_nibbles(const u8 *qs, v128_t w[4]) {
  v128_t q = wasm_v128_load(qs);
  v128_t lo = wasm_u16x8_extend_low_u8x16(q), hi = wasm_u16x8_extend_high_u8x16(q);
  const v128_t m15 = wasm_i16x8_splat(15);
  w[0] = wasm_v128_and(lo, m15);
  w[1] = wasm_v128_and(hi, m15);
  w[2] = wasm_u16x8_shr(lo, 4);
  w[3] = wasm_u16x8_shr(hi, 4);
}

/* 32 int8 -> 4 x i16x8 */
INLINE void unpack_i8(const u8 *qs, v128_t w[4]) {
  v128_t a = wasm_v128_load(qs), b = wasm_v128_load(qs + 16);
  w[0] = wasm_i16x8_extend_low_i8x16(a);
  w[1] = wasm_i16x8_extend_high_i8x16(a);
  w[2] = wasm_i16x8_extend_low_i8x16(b);
  w[3] = wasm_i16x8_extend_high_i8x16(b);
}

INLINE int block_bytes(int type) { return type == Q4_0 ? 18 : type == Q4_1 ? 20 : type == Q8_0 ? 34 : type == Q4_K ? 144 : 210; }

/* ------------------------------------------------------------------ 32-element formats */

INLINE void unpack32(const int type, const u8 *blk, v128_t w[4]) {
  if (type == Q8_0) unpack_i8(blk + 2, w);
  else unpack_nibbles(blk + (type == Q4_0 ? 2 : 4), w);
}

/* one row, one token: four blocks at a time, their sums reduced into one vector */
INLINE float row32_x1(const int type, const u8 *row, int nb, const i16 *qx, const float *dx, const float *sx,
                      const i32 *isx) {
  const int BB = block_bytes(type);
  v128_t acc = wasm_f32x4_splat(0.0f);
  int b = 0;
  for (; b + 4 <= nb; b += 4) {
    const u8 *blk = row + b * BB;
    v128_t s[4], w[4];
    _Pragma("clang loop unroll(full)")
    for (int j = 0; j < 4; j++) {
      unpack32(type, blk + j * BB, w);
      s[j] = dot32(w, qx + (b + j) * QBLOCK);
    }
    v128_t si = hsum4_i32x4(s[0], s[1], s[2], s[3]);
    if (type == Q4_0) si = wasm_i32x4_sub(si, wasm_i32x4_shl(wasm_v128_load(isx + b), 3)); /* sum (q - 8) x */
    v128_t d = f16x4_to_f32x4(gather4_u16(blk, BB));
    acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(si), wasm_f32x4_mul(d, wasm_v128_load(dx + b))));
    if (type == Q4_1) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(f16x4_to_f32x4(gather4_u16(blk + 2, BB)), wasm_v128_load(sx + b)));
  }
  if (b < nb) { /* 1 to 3 blocks left (a 576-wide row has 18): the same, with empty lanes */
    const u8 *blk = row + b * BB;
    const v128_t z = wasm_i32x4_splat(0);
    v128_t s[4] = {z, z, z, z}, w[4], h = z, hm = z, vdx = z, vsx = z, visx = z;
    const int rem = nb - b;
    unpack32(type, blk, w);
    s[0] = dot32(w, qx + b * QBLOCK);
    h = wasm_v128_load16_lane(blk, h, 0);
    if (type == Q4_1) hm = wasm_v128_load16_lane(blk + 2, hm, 0);
    vdx = wasm_v128_load32_lane(dx + b, vdx, 0);
    vsx = wasm_v128_load32_lane(sx + b, vsx, 0);
    visx = wasm_v128_load32_lane(isx + b, visx, 0);
    if (rem > 1) {
      unpack32(type, blk + BB, w);
      s[1] = dot32(w, qx + (b + 1) * QBLOCK);
      h = wasm_v128_load16_lane(blk + BB, h, 2);
      if (type == Q4_1) hm = wasm_v128_load16_lane(blk + BB + 2, hm, 2);
      vdx = wasm_v128_load32_lane(dx + b + 1, vdx, 1);
      vsx = wasm_v128_load32_lane(sx + b + 1, vsx, 1);
      visx = wasm_v128_load32_lane(isx + b + 1, visx, 1);
    }
    if (rem > 2) {
      unpack32(type, blk + 2 * BB, w);
      s[2] = dot32(w, qx + (b + 2) * QBLOCK);
      h = wasm_v128_load16_lane(blk + 2 * BB, h, 4);
      if (type == Q4_1) hm = wasm_v128_load16_lane(blk + 2 * BB + 2, hm, 4);
      vdx = wasm_v128_load32_lane(dx + b + 2, vdx, 2);
      vsx = wasm_v128_load32_lane(sx + b + 2, vsx, 2);
      visx = wasm_v128_load32_lane(isx + b + 2, visx, 2);
    }
    v128_t si = hsum4_i32x4(s[0], s[1], s[2], s[3]);
    if (type == Q4_0) si = wasm_i32x4_sub(si, wasm_i32x4_shl(visx, 3));
    acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(si), wasm_f32x4_mul(f16x4_to_f32x4(h), vdx)));
    if (type == Q4_1) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(f16x4_to_f32x4(hm), vsx));
  }
  return hsum_f32x4(acc);
}

/* one row, NT tokens: each block unpacked once */
INLINE void row32_xn(const int type, const int NT, const u8 *row, int nb, Act a, int t0, float *y, int ldy) {
  const int BB = block_bytes(type);
  const int K = a.K, KB = a.K / QBLOCK;
  v128_t acc[4];
  float accm[4];
  _Pragma("clang loop unroll(full)")
  for (int t = 0; t < NT; t++) { acc[t] = wasm_f32x4_splat(0.0f); accm[t] = 0.0f; }
  for (int b = 0; b < nb; b++) {
    const u8 *blk = row + b * BB;
    v128_t w[4];
    unpack32(type, blk, w);
    float d = f16_to_f32(load_u16(blk));
    float m = type == Q4_1 ? f16_to_f32(load_u16(blk + 2)) : 0.0f;
    _Pragma("clang loop unroll(full)")
    for (int t = 0; t < NT; t++) {
      int tt = t0 + t;
      v128_t s = dot32(w, a.qx + (long)tt * K + b * QBLOCK);
      float ds = d * a.dx[tt * KB + b];
      acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s), wasm_f32x4_splat(ds)));
      if (type == Q4_0) accm[t] -= 8.0f * ds * (float)a.isx[tt * KB + b];
      if (type == Q4_1) accm[t] += m * a.sx[tt * KB + b];
    }
  }
  _Pragma("clang loop unroll(full)")
  for (int t = 0; t < NT; t++) y[(long)(t0 + t) * ldy] = hsum_f32x4(acc[t]) + accm[t];
}

/* ------------------------------------------------------------------ Q4_K */

/* scale and min of sub-block j (0..7) from the 12 packed bytes (see formats/quants.py _k_scale_min) */
INLINE void q4k_scale_min(const u8 *s, int j, float *sc, float *mn) {
  if (j < 4) {
    *sc = (float)(s[j] & 63);
    *mn = (float)(s[j + 4] & 63);
  } else {
    *sc = (float)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    *mn = (float)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

INLINE void row_q4k_xn(const int NT, const u8 *row, int nb, Act a, int t0, float *y, int ldy) {
  const int K = a.K, KB = a.K / QBLOCK;
  v128_t acc[4];
  float accm[4];
  _Pragma("clang loop unroll(full)")
  for (int t = 0; t < NT; t++) { acc[t] = wasm_f32x4_splat(0.0f); accm[t] = 0.0f; }
  const v128_t m15 = wasm_i16x8_splat(15);
  for (int b = 0; b < nb; b++) {
    const u8 *blk = row + b * 144;
    float d = f16_to_f32(load_u16(blk)), dmin = f16_to_f32(load_u16(blk + 2));
    const u8 *sc = blk + 4, *qs = blk + 16;
    for (int c = 0; c < 4; c++) {
      v128_t v0 = wasm_v128_load(qs + 32 * c), v1 = wasm_v128_load(qs + 32 * c + 16);
      v128_t l0 = wasm_u16x8_extend_low_u8x16(v0), h0 = wasm_u16x8_extend_high_u8x16(v0);
      v128_t l1 = wasm_u16x8_extend_low_u8x16(v1), h1 = wasm_u16x8_extend_high_u8x16(v1);
      v128_t wa[4] = {wasm_v128_and(l0, m15), wasm_v128_and(h0, m15), wasm_v128_and(l1, m15), wasm_v128_and(h1, m15)};
      v128_t wb[4] = {wasm_u16x8_shr(l0, 4), wasm_u16x8_shr(h0, 4), wasm_u16x8_shr(l1, 4), wasm_u16x8_shr(h1, 4)};
      float sa, ma, sb, mb;
      q4k_scale_min(sc, 2 * c, &sa, &ma);
      q4k_scale_min(sc, 2 * c + 1, &sb, &mb);
      sa *= d; sb *= d; ma *= dmin; mb *= dmin;
      int u = b * 8 + 2 * c; /* 32-block index of sub-block 2c */
      _Pragma("clang loop unroll(full)")
      for (int t = 0; t < NT; t++) {
        int tt = t0 + t;
        const i16 *x = a.qx + (long)tt * K + u * QBLOCK;
        v128_t s0 = dot32(wa, x), s1 = dot32(wb, x + QBLOCK);
        float dx0 = a.dx[tt * KB + u], dx1 = a.dx[tt * KB + u + 1];
        acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s0), wasm_f32x4_splat(sa * dx0)));
        acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s1), wasm_f32x4_splat(sb * dx1)));
        accm[t] -= ma * a.sx[tt * KB + u] + mb * a.sx[tt * KB + u + 1];
      }
    }
  }
  _Pragma("clang loop unroll(full)")
  for (int t = 0; t < NT; t++) y[(long)(t0 + t) * ldy] = hsum_f32x4(acc[t]) + accm[t];
}

/* ------------------------------------------------------------------ Q6_K */

INLINE void row_q6k_xn(const int NT, const u8 *row, int nb, Act a, int t0, float *y, int ldy) {
  const int K = a.K, KB = a.K / QBLOCK;
  v128_t acc[4];
  _Pragma("clang loop unroll(full)")
  for (int t = 0; t < NT; t++) acc[t] = wasm_f32x4_splat(0.0f);
  const v128_t m15 = wasm_i16x8_splat(15), m3 = wasm_i16x8_splat(3), c32 = wasm_i16x8_splat(32);
  for (int b = 0; b < nb; b++) {
    const u8 *blk = row + b * 210;
    const u8 *ql = blk, *qh = blk + 128;
    const i8 *sc = (const i8 *)(blk + 192);
    float d = f16_to_f32(load_u16(blk + 208));
    for (int h = 0; h < 2; h++) {
      v128_t vh0 = wasm_v128_load(qh + 32 * h), vh1 = wasm_v128_load(qh + 32 * h + 16);
      v128_t hh[4] = {wasm_u16x8_extend_low_u8x16(vh0), wasm_u16x8_extend_high_u8x16(vh0),
                      wasm_u16x8_extend_low_u8x16(vh1), wasm_u16x8_extend_high_u8x16(vh1)};
      for (int s = 0; s < 4; s++) {
        const u8 *qlb = ql + 64 * h + 32 * (s & 1);
        v128_t v0 = wasm_v128_load(qlb), v1 = wasm_v128_load(qlb + 16);
        v128_t ll[4] = {wasm_u16x8_extend_low_u8x16(v0), wasm_u16x8_extend_high_u8x16(v0),
                        wasm_u16x8_extend_low_u8x16(v1), wasm_u16x8_extend_high_u8x16(v1)};
        v128_t w[4];
        _Pragma("clang loop unroll(full)")
        for (int k = 0; k < 4; k++) {
          v128_t lo = (s >> 1) ? wasm_u16x8_shr(ll[k], 4) : wasm_v128_and(ll[k], m15);
          v128_t hi = wasm_i16x8_shl(wasm_v128_and(wasm_u16x8_shr(hh[k], 2 * s), m3), 4);
          w[k] = wasm_i16x8_sub(wasm_v128_or(lo, hi), c32);
        }
        int g = 8 * h + 2 * s, u = b * 8 + 4 * h + s;
        float sa = d * (float)sc[g], sb = d * (float)sc[g + 1];
        _Pragma("clang loop unroll(full)")
        for (int t = 0; t < NT; t++) {
          int tt = t0 + t;
          const i16 *x = a.qx + (long)tt * K + u * QBLOCK;
          v128_t s0 = wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[0], wasm_v128_load(x)), wasm_i32x4_dot_i16x8(w[1], wasm_v128_load(x + 8)));
          v128_t s1 = wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[2], wasm_v128_load(x + 16)), wasm_i32x4_dot_i16x8(w[3], wasm_v128_load(x + 24)));
          float dxu = a.dx[tt * KB + u];
          acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s0), wasm_f32x4_splat(sa * dxu)));
          acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s1), wasm_f32x4_splat(sb * dxu)));
        }
      }
    }
  }
  _Pragma("clang loop unroll(full)")
  for (int t = 0; t < NT; t++) y[(long)(t0 + t) * ldy] = hsum_f32x4(acc[t]);
}

/* ------------------------------------------------------------------ drivers */

#define TILE 4 /* tokens per weight-row pass in prefill: 4 accumulators + 4 weight vectors fit the 16 SIMD registers */

#define DEFINE_MATMUL(NAME, TYPE, ROW_XN, ROW_X1)                                                      \
  static void NAME(const u8 *w, int rows, int K, const i16 *qx, const float *dx, const float *sx,       \
                   const i32 *isx, int T, float *y, int ldy, int r0, int r1) {                         \
    const Act a = {qx, dx, sx, isx, K};                                                                \
    const int BE = (TYPE == Q4_K || TYPE == Q6_K) ? 256 : 32;                                          \
    const int nb = K / BE, rb = nb * block_bytes(TYPE), KB = K / QBLOCK;                                \
    (void)KB; (void)rows;                                                                              \
    /* tokens outer, rows inner: a tile's activations (4 x K int16) stay in L1 while the  */           \
    /* rows stream by; the other order re-read every token's activations for every row   */           \
    int t = 0;                                                                                         \
    for (; t + TILE <= T; t += TILE)                                                                   \
      for (int r = r0; r < r1; r++) ROW_XN(TILE, w + (long)r * rb, nb, a, t, y + r, ldy);              \
    for (; t < T; t++)                                                                                 \
      for (int r = r0; r < r1; r++) {                                                                  \
        const u8 *row = w + (long)r * rb;                                                              \
        ROW_X1;                                                                                        \
      }                                                                                                \
  }

#define ROW32_XN_Q4_0(NT, row, nb, a, t, yy, ldy) row32_xn(Q4_0, NT, row, nb, a, t, yy, ldy)
#define ROW32_XN_Q4_1(NT, row, nb, a, t, yy, ldy) row32_xn(Q4_1, NT, row, nb, a, t, yy, ldy)
#define ROW32_XN_Q8_0(NT, row, nb, a, t, yy, ldy) row32_xn(Q8_0, NT, row, nb, a, t, yy, ldy)
#define X1_32(TYPE) \
  y[(long)t * ldy + r] = row32_x1(TYPE, row, nb, a.qx + (long)t * K, a.dx + t * KB, a.sx + t * KB, a.isx + t * KB)

DEFINE_MATMUL(mm_q4_0, Q4_0, ROW32_XN_Q4_0, X1_32(Q4_0))
DEFINE_MATMUL(mm_q4_1, Q4_1, ROW32_XN_Q4_1, X1_32(Q4_1))
DEFINE_MATMUL(mm_q8_0, Q8_0, ROW32_XN_Q8_0, X1_32(Q8_0))
DEFINE_MATMUL(mm_q4_k, Q4_K, row_q4k_xn, row_q4k_xn(1, row, nb, a, t, y + r, ldy))
DEFINE_MATMUL(mm_q6_k, Q6_K, row_q6k_xn, row_q6k_xn(1, row, nb, a, t, y + r, ldy))

void matmul_q(int type, const u8 *w, int rows, int K, const i16 *qx, const float *dx, const float *sx,
              const i32 *isx, int T, float *y, int ldy, int r0, int r1) {
  switch (type) {
    case Q4_0: mm_q4_0(w, rows, K, qx, dx, sx, isx, T, y, ldy, r0, r1); break;
    case Q4_1: mm_q4_1(w, rows, K, qx, dx, sx, isx, T, y, ldy, r0, r1); break;
    case Q8_0: mm_q8_0(w, rows, K, qx, dx, sx, isx, T, y, ldy, r0, r1); break;
    case Q4_K: mm_q4_k(w, rows, K, qx, dx, sx, isx, T, y, ldy, r0, r1); break;
    case Q6_K: mm_q6_k(w, rows, K, qx, dx, sx, isx, T, y, ldy, r0, r1); break;
    default: __builtin_trap();
  }
}
