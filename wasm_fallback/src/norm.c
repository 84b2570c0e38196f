/* rmsnorm: out[t] = x[t] * (1 / sqrt(mean(x[t]^2) + eps)) * w, x and out [T, D] (may alias). */
#include "common.h"

void rmsnorm(const float *x, const float *w, float *out, int T, int D, float eps) {
  for (int t = 0; t < T; t++) {
    const float *xr = x + (long)t * D;
    float *o = out + (long)t * D;
    v128_t acc = wasm_f32x4_splat(0.0f);
    int i = 0;
    for (; i + 4 <= D; i += 4) {
      v128_t v = wasm_v128_load(xr + i);
      acc = wasm_f32x4_add(acc, wasm_f32x4_mul(v, v));
    }
    float ss = hsum_f32x4(acc);
    for (; i < D; i++) ss += xr[i] * xr[i];
    float s = 1.0f / __builtin_sqrtf(ss / (float)D + eps);
    v128_t vs = wasm_f32x4_splat(s);
    for (i = 0; i + 4 <= D; i += 4)
      wasm_v128_store(o + i, wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(xr + i), vs), wasm_v128_load(w + i)));
    for (; i < D; i++) o[i] = xr[i] * s * w[i];
  }
}
