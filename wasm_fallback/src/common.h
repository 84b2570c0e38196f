/* Shared definitions for webinfer's WASM SIMD kernels.
 *
 * The kernels run on memory that someone else owns: Pyodide's own linear
 * memory (single-threaded, loaded as an Emscripten side module) or a shared
 * memory (worker threads).  So they own no linear memory themselves: no data
 * segments, no static variables, no stack frames in memory.  build.py checks
 * the built module for all three.  Every pointer is an address in that memory
 * handed in by Python (a numpy array's ``ctypes.data``).
 *
 * Alignment: v128 loads and stores here are unaligned-safe (WASM allows any
 * alignment), but every buffer webinfer allocates is 64-byte aligned and
 * quantized rows start at multiples of their block size; see
 * engine/webinfer/backends/wasm_backend.py for the rules and the debug checks.
 */
#ifndef WEBINFER_COMMON_H
#define WEBINFER_COMMON_H

#include <stdint.h>
#include <wasm_simd128.h>

typedef uint8_t u8;
typedef int8_t i8;
typedef int16_t i16;
typedef uint16_t u16;
typedef int32_t i32;
typedef uint32_t u32;

#define INLINE static inline __attribute__((always_inline))
#define EXPORT(name) __attribute__((export_name(#name)))

#define QBLOCK 32 /* elements per quantized-activation block (act_quant.c) */

/* ---- scalar and vector helpers */

INLINE u16 load_u16(const u8 *p) { return (u16)(p[0] | (p[1] << 8)); }

/* IEEE half -> float, exact for normals, subnormals and zero (no inf/nan in
 * GGUF scales): move the 15 magnitude bits into place as a float32 with the
 * wrong exponent bias, multiply by 2^112 to fix the bias (exact, also for
 * subnormals since WASM never flushes denormals), then put the sign back. */
INLINE float f16_to_f32(u16 h) {
  union { u32 u; float f; } v = { (u32)(h & 0x7fff) << 13 };
  union { float f; u32 u; } r = { v.f * 0x1p112f };
  r.u |= (u32)(h & 0x8000) << 16;
  return r.f;
}

/* four halves in the low 16 bits of each i32 lane -> f32x4 (same method) */
INLINE v128_t f16x4_to_f32x4(v128_t h) {
  v128_t mag = wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x7fff)), 13);
  v128_t f = wasm_f32x4_mul(mag, wasm_f32x4_splat(0x1p112f));
  return wasm_v128_or(f, wasm_i32x4_shl(wasm_v128_and(h, wasm_i32x4_splat(0x8000)), 16));
}

/* the u16 at p, p + stride, p + 2 stride, p + 3 stride, in the low halves of 4 i32 lanes */
INLINE v128_t gather4_u16(const u8 *p, int stride) {
  v128_t v = wasm_i32x4_splat(0);
  v = wasm_v128_load16_lane(p, v, 0);
  v = wasm_v128_load16_lane(p + stride, v, 2);
  v = wasm_v128_load16_lane(p + 2 * stride, v, 4);
  v = wasm_v128_load16_lane(p + 3 * stride, v, 6);
  return v;
}

INLINE float hsum_f32x4(v128_t v) {
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
         (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

INLINE i32 hsum_i32x4(v128_t v) {
  return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) +
         wasm_i32x4_extract_lane(v, 2) + wasm_i32x4_extract_lane(v, 3);
}

/* [sum(a), sum(b), sum(c), sum(d)] of four i32x4 */
INLINE v128_t hsum4_i32x4(v128_t a, v128_t b, v128_t c, v128_t d) {
  v128_t ab = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
  v128_t cd = wasm_i32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 1, 5), wasm_i32x4_shuffle(c, d, 2, 6, 3, 7));
  return wasm_i32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5), wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7));
}

/* ---- exp: Cephes' expf polynomial with a two-step 2^n scale, within 2 ulp
 * of the correctly rounded result over the whole float range (checked
 * against numpy in the tests); exp(x) = inf above 88.72, 0 below -103.97. */
INLINE v128_t exp_f32x4(v128_t x) {
  const v128_t hi = wasm_f32x4_splat(88.7228390f), lo = wasm_f32x4_splat(-103.972084f);
  v128_t xc = wasm_f32x4_pmax(wasm_f32x4_pmin(x, hi), lo);
  v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(xc, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(xc, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.9875691500e-4f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.3981999507e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(8.3334519073e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(4.1665795894e-2f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.6666665459e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(5.0000001201e-1f));
  p = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(p, r), r), r), wasm_f32x4_splat(1.0f));
  /* 2^n as two factors 2^(n/2) * 2^(n - n/2) so that n down to -150 and up to 128 stay exact */
  v128_t ni = wasm_i32x4_trunc_sat_f32x4(n);
  v128_t n1 = wasm_i32x4_shr(ni, 1), n2 = wasm_i32x4_sub(ni, n1);
  v128_t s1 = wasm_i32x4_shl(wasm_i32x4_add(n1, wasm_i32x4_splat(127)), 23);
  v128_t s2 = wasm_i32x4_shl(wasm_i32x4_add(n2, wasm_i32x4_splat(127)), 23);
  v128_t y = wasm_f32x4_mul(wasm_f32x4_mul(p, s1), s2);
  y = wasm_v128_bitselect(wasm_f32x4_splat(__builtin_inff()), y, wasm_f32x4_gt(x, hi));
  return wasm_v128_andnot(y, wasm_f32x4_lt(x, lo));
}

INLINE float exp_f32(float x) { return wasm_f32x4_extract_lane(exp_f32x4(wasm_f32x4_splat(x)), 0); }

/* ---- the kernels (one file each; see the file for the layout it expects) */

/* act_quant.c */
void quantize_act(const float *x, int T, int K, i16 *qx, float *dx, float *sx, i32 *isx);
/* matmul_q.c: y[T, rows] = x[T, K] @ W[rows, K]^T on quantized activations.
 * Act is only ever a local (never passed by value across a call: the C ABI
 * would put it on the stack in memory). */
typedef struct {
  const i16 *qx;   /* [T, K] */
  const float *dx; /* [T, K/32] scale of each 32-block */
  const float *sx; /* [T, K/32] float sum of x over each 32-block */
  const i32 *isx;  /* [T, K/32] integer sum of qx over each 32-block */
  int K;
} Act;
void matmul_q(int type, const u8 *w, int rows, int K, const i16 *qx, const float *dx, const float *sx,
              const i32 *isx, int T, float *y, int ldy, int r0, int r1);
/* matmul_f32.c */
void matmul_f32(const float *w, int rows, int K, const float *x, int T, float *y, int ldy, int r0, int r1);
/* norm.c, rope.c, attention.c, elementwise.c */
void rmsnorm(const float *x, const float *w, float *out, int T, int D, float eps);
void rope(float *x, int T, int H, int hd, int half, const float *cos, const float *sin, int pos0, int neox);
void attention(const float *q, const float *k, const float *v, float *kc, float *vc, int cap, int T, int pos0,
               int H, int Hkv, int hd, float scale, float *out, float *scratch, int h0, int h1);
void kv_store(const float *k, const float *v, float *kc, float *vc, int cap, int T, int pos0, int Hkv, int hd);
void swiglu(const float *g, const float *u, float *out, int n);
void add_inplace(float *a, const float *b, int n);

#endif
