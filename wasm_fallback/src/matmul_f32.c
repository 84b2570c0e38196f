/* matmul_f32: y[t, r] = sum_k W[r, k] x[t, k] with float32 W [rows, K] and x [T, K].
 *
 * For weights that have no quantized kernel (F32/F16/BF16 matrices and the
 * block types without one, which the backend dequantizes once at load).
 * Any K; tiles of 4 tokens share each loaded weight vector.
 */
#include "common.h"

INLINE void row_f32(const int NT, const float *wr, int K, const float *x, int t0, float *y, int ldy) {
  v128_t acc[4];
  float tail[4];
  _Pragma("clang loop unroll(full)")
  for (int t = 0; t < NT; t++) { acc[t] = wasm_f32x4_splat(0.0f); tail[t] = 0.0f; }
  int k = 0;
  for (; k + 4 <= K; k += 4) {
    v128_t w = wasm_v128_load(wr + k);
    _Pragma("clang loop unroll(full)")
    for (int t = 0; t < NT; t++)
      acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(w, wasm_v128_load(x + (long)(t0 + t) * K + k)));
  }
  for (; k < K; k++)
    _Pragma("clang loop unroll(full)")
    for (int t = 0; t < NT; t++) tail[t] += wr[k] * x[(long)(t0 + t) * K + k];
  _Pragma("clang loop unroll(full)")
  for (int t = 0; t < NT; t++) y[(long)(t0 + t) * ldy] = hsum_f32x4(acc[t]) + tail[t];
}

void matmul_f32(const float *w, int rows, int K, const float *x, int T, float *y, int ldy, int r0, int r1) {
  (void)rows;
  int t = 0; /* tokens outer, rows inner (see matmul_q.c) */
  for (; t + 4 <= T; t += 4)
    for (int r = r0; r < r1; r++) row_f32(4, w + (long)r * K, K, x, t, y + r, ldy);
  for (; t < T; t++)
    for (int r = r0; r < r1; r++) row_f32(1, w + (long)r * K, K, x, t, y + r, ldy);
}
