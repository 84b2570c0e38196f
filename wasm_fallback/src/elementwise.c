/* Elementwise ops on float32 vectors of n elements.
 *
 * swiglu: out = g / (1 + exp(-g)) * u (the numpy backend's order of
 *   operations; exp(-g) = inf for g << 0 gives -0.0 as there).
 * add_inplace: a += b.
 */
#include "common.h"

void swiglu(const float *g, const float *u, float *out, int n) {
  const v128_t one = wasm_f32x4_splat(1.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t gv = wasm_v128_load(g + i);
    v128_t den = wasm_f32x4_add(one, exp_f32x4(wasm_f32x4_neg(gv)));
    wasm_v128_store(out + i, wasm_f32x4_mul(wasm_f32x4_div(gv, den), wasm_v128_load(u + i)));
  }
  for (; i < n; i++) out[i] = g[i] / (1.0f + exp_f32(-g[i])) * u[i];
}

void add_inplace(float *a, const float *b, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(a + i, wasm_f32x4_add(wasm_v128_load(a + i), wasm_v128_load(b + i)));
  for (; i < n; i++) a[i] += b[i];
}
