/* Attention over the KV cache, float32 throughout.
 *
 * kv_store: k, v [T, Hkv, hd] -> kc, vc [Hkv, cap, hd] at positions pos0..pos0+T-1.
 * attention: q [T, H, hd] -> out [T, H, hd]; query t (position pos0 + t) of
 *   head h attends to positions 0..pos0+t of kv head h / (H / Hkv) (causal,
 *   grouped-query).  Same steps as the numpy backend: scores = (q . k) * scale,
 *   p = exp(scores - max) / sum, out = p @ v.  scratch holds pos0 + T floats.
 *   Heads h0..h1-1 only (a thread's share).
 */
#include "common.h"

void kv_store(const float *k, const float *v, float *kc, float *vc, int cap, int T, int pos0, int Hkv, int hd) {
  for (int t = 0; t < T; t++)
    for (int g = 0; g < Hkv; g++) {
      const float *ks = k + ((long)t * Hkv + g) * hd, *vs = v + ((long)t * Hkv + g) * hd;
      float *kd = kc + ((long)g * cap + pos0 + t) * hd, *vd = vc + ((long)g * cap + pos0 + t) * hd;
      int i = 0;
      for (; i + 4 <= hd; i += 4) {
        wasm_v128_store(kd + i, wasm_v128_load(ks + i));
        wasm_v128_store(vd + i, wasm_v128_load(vs + i));
      }
      for (; i < hd; i++) { kd[i] = ks[i]; vd[i] = vs[i]; }
    }
}

INLINE float dot_f32(const float *a, const float *b, int n) {
  v128_t acc = wasm_f32x4_splat(0.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
  float s = hsum_f32x4(acc);
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

void attention(const float *q, const float *k, const float *v, float *kc, float *vc, int cap, int T, int pos0,
               int H, int Hkv, int hd, float scale, float *out, float *scratch, int h0, int h1) {
  (void)k; (void)v;
  const int rep = H / Hkv;
  for (int h = h0; h < h1; h++) {
    const float *kh = kc + (long)(h / rep) * cap * hd, *vh = vc + (long)(h / rep) * cap * hd;
    for (int t = 0; t < T; t++) {
      const float *qv = q + ((long)t * H + h) * hd;
      float *o = out + ((long)t * H + h) * hd;
      const int n = pos0 + t + 1;
      float mx = -__builtin_inff();
      for (int j = 0; j < n; j++) {
        float s = dot_f32(qv, kh + (long)j * hd, hd) * scale;
        scratch[j] = s;
        mx = s > mx ? s : mx;
      }
      v128_t vm = wasm_f32x4_splat(mx), vsum = wasm_f32x4_splat(0.0f);
      int j = 0;
      for (; j + 4 <= n; j += 4) {
        v128_t e = exp_f32x4(wasm_f32x4_sub(wasm_v128_load(scratch + j), vm));
        wasm_v128_store(scratch + j, e);
        vsum = wasm_f32x4_add(vsum, e);
      }
      float sum = hsum_f32x4(vsum);
      for (; j < n; j++) {
        float e = exp_f32(scratch[j] - mx);
        scratch[j] = e;
        sum += e;
      }
      float inv = 1.0f / sum;
      int i = 0;
      for (; i + 16 <= hd; i += 16) {
        v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (j = 0; j < n; j++) {
          v128_t p = wasm_f32x4_splat(scratch[j] * inv);
          const float *vr = vh + (long)j * hd + i;
          a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(p, wasm_v128_load(vr)));
          a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(p, wasm_v128_load(vr + 4)));
          a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(p, wasm_v128_load(vr + 8)));
          a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(p, wasm_v128_load(vr + 12)));
        }
        wasm_v128_store(o + i, a0);
        wasm_v128_store(o + i + 4, a1);
        wasm_v128_store(o + i + 8, a2);
        wasm_v128_store(o + i + 12, a3);
      }
      for (; i < hd; i++) {
        float a = 0.0f;
        for (j = 0; j < n; j++) a += scratch[j] * inv * vh[(long)j * hd + i];
        o[i] = a;
      }
    }
  }
}
