/* rope: rotate x [T, H, hd] in place by the tables cos, sin [n_ctx, half] at
 * positions pos0 .. pos0 + T - 1 (tables from backends/rope.py, so scaling
 * variants live there).  neox = 0: adjacent pairs (x[2i], x[2i+1]) (ggml's
 * "norm", llama); neox = 1: pairs (x[i], x[i + half]) (qwen2, gemma).
 * Dimensions past 2 * half are left as they are.  Same float32 operations as
 * apply_rope: x0' = x0 c - x1 s, x1' = x0 s + x1 c.
 */
#include "common.h"

void rope(float *x, int T, int H, int hd, int half, const float *cos, const float *sin, int pos0, int neox) {
  for (int t = 0; t < T; t++) {
    const float *c = cos + (long)(pos0 + t) * half, *s = sin + (long)(pos0 + t) * half;
    for (int h = 0; h < H; h++) {
      float *v = x + ((long)t * H + h) * hd;
      if (neox) {
        int i = 0;
        for (; i + 4 <= half; i += 4) {
          v128_t x0 = wasm_v128_load(v + i), x1 = wasm_v128_load(v + half + i);
          v128_t vc = wasm_v128_load(c + i), vs = wasm_v128_load(s + i);
          wasm_v128_store(v + i, wasm_f32x4_sub(wasm_f32x4_mul(x0, vc), wasm_f32x4_mul(x1, vs)));
          wasm_v128_store(v + half + i, wasm_f32x4_add(wasm_f32x4_mul(x0, vs), wasm_f32x4_mul(x1, vc)));
        }
        for (; i < half; i++) {
          float x0 = v[i], x1 = v[half + i];
          v[i] = x0 * c[i] - x1 * s[i];
          v[half + i] = x0 * s[i] + x1 * c[i];
        }
      } else {
        int i = 0;
        for (; i + 4 <= half; i += 4) {
          v128_t a = wasm_v128_load(v + 2 * i), b = wasm_v128_load(v + 2 * i + 4);
          v128_t x0 = wasm_i32x4_shuffle(a, b, 0, 2, 4, 6), x1 = wasm_i32x4_shuffle(a, b, 1, 3, 5, 7);
          v128_t vc = wasm_v128_load(c + i), vs = wasm_v128_load(s + i);
          v128_t y0 = wasm_f32x4_sub(wasm_f32x4_mul(x0, vc), wasm_f32x4_mul(x1, vs));
          v128_t y1 = wasm_f32x4_add(wasm_f32x4_mul(x0, vs), wasm_f32x4_mul(x1, vc));
          wasm_v128_store(v + 2 * i, wasm_i32x4_shuffle(y0, y1, 0, 4, 1, 5));
          wasm_v128_store(v + 2 * i + 4, wasm_i32x4_shuffle(y0, y1, 2, 6, 3, 7));
        }
        for (; i < half; i++) {
          float x0 = v[2 * i], x1 = v[2 * i + 1];
          v[2 * i] = x0 * c[i] - x1 * s[i];
          v[2 * i + 1] = x0 * s[i] + x1 * c[i];
        }
      }
    }
  }
}
