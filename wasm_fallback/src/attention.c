/* Attention over the KV cache, float32 throughout.
 *
 * kv_store: k, v [T, Hkv, hd] -> kc, vc [Hkv, cap, hd] at positions pos0..pos0+T-1.
 * attention: q [T, H, hd] -> out [T, H, hd]; query t (position pos0 + t) of
 *   head h attends to positions 0..pos0+t of kv head h / (H / Hkv) (causal,
 *   grouped-query).  Same steps as the numpy backend: scores = (q . k) * scale,
 *   p = exp(scores - max) / sum, out = p @ v.  The query heads of one kv
 *   head are handled together, so each key and value row is read once for
 *   them.  scratch holds GROUP rows of `stride` >= pos0 + T floats.
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

#define GROUP ATTN_GROUP /* query heads of one kv head handled together: each key and value row is read once for them */

/* NG query heads hq..hq+NG-1 of kv head kh/vh, one query token; scratch holds NG rows of `stride` floats.
 * Per head the arithmetic is exactly the one-head-at-a-time order (dot: one f32x4 accumulator over the
 * row, then lanes (0+1)+(2+3); softmax; p @ v in key order), so grouping does not change results. */
INLINE void attend(const int NG, const float *q0, int qstride, const float *kh, const float *vh, int n, int hd,
                   float scale, float *o0, float *scratch, int stride) {
  float mx[GROUP], inv[GROUP];
  _Pragma("clang loop unroll(full)")
  for (int g = 0; g < NG; g++) mx[g] = -__builtin_inff();
  const int hd4 = hd & ~3;
  for (int j = 0; j < n; j++) {
    const float *kr = kh + (long)j * hd;
    v128_t acc[GROUP];
    _Pragma("clang loop unroll(full)")
    for (int g = 0; g < NG; g++) acc[g] = wasm_f32x4_splat(0.0f);
    for (int i = 0; i < hd4; i += 4) {
      v128_t kv = wasm_v128_load(kr + i);
      _Pragma("clang loop unroll(full)")
      for (int g = 0; g < NG; g++)
        acc[g] = wasm_f32x4_add(acc[g], wasm_f32x4_mul(wasm_v128_load(q0 + g * qstride + i), kv));
    }
    _Pragma("clang loop unroll(full)")
    for (int g = 0; g < NG; g++) {
      float sc = hsum_f32x4(acc[g]);
      for (int i = hd4; i < hd; i++) sc += q0[g * qstride + i] * kr[i];
      sc *= scale;
      scratch[g * stride + j] = sc;
      mx[g] = sc > mx[g] ? sc : mx[g];
    }
  }
  _Pragma("clang loop unroll(full)")
  for (int g = 0; g < NG; g++) {
    float *sr = scratch + g * stride;
    v128_t vm = wasm_f32x4_splat(mx[g]), vsum = wasm_f32x4_splat(0.0f);
    int j = 0;
    for (; j + 4 <= n; j += 4) {
      v128_t e = exp_f32x4(wasm_f32x4_sub(wasm_v128_load(sr + j), vm));
      wasm_v128_store(sr + j, e);
      vsum = wasm_f32x4_add(vsum, e);
    }
    float sum = hsum_f32x4(vsum);
    for (; j < n; j++) {
      float e = exp_f32(sr[j] - mx[g]);
      sr[j] = e;
      sum += e;
    }
    inv[g] = 1.0f / sum;
  }
  int i = 0;
  for (; i + 8 <= hd; i += 8) {
    v128_t a[GROUP][2];
    _Pragma("clang loop unroll(full)")
    for (int g = 0; g < NG; g++) a[g][0] = a[g][1] = wasm_f32x4_splat(0.0f);
    for (int j = 0; j < n; j++) {
      const float *vr = vh + (long)j * hd + i;
      v128_t v0 = wasm_v128_load(vr), v1 = wasm_v128_load(vr + 4);
      _Pragma("clang loop unroll(full)")
      for (int g = 0; g < NG; g++) {
        v128_t p = wasm_f32x4_splat(scratch[g * stride + j] * inv[g]);
        a[g][0] = wasm_f32x4_add(a[g][0], wasm_f32x4_mul(p, v0));
        a[g][1] = wasm_f32x4_add(a[g][1], wasm_f32x4_mul(p, v1));
      }
    }
    _Pragma("clang loop unroll(full)")
    for (int g = 0; g < NG; g++) {
      wasm_v128_store(o0 + g * qstride + i, a[g][0]);
      wasm_v128_store(o0 + g * qstride + i + 4, a[g][1]);
    }
  }
  for (; i < hd; i++) {
    _Pragma("clang loop unroll(full)")
    for (int g = 0; g < NG; g++) {
      float acc = 0.0f;
      for (int j = 0; j < n; j++) acc += scratch[g * stride + j] * inv[g] * vh[(long)j * hd + i];
      o0[g * qstride + i] = acc;
    }
  }
}

void attention(const float *q, const float *k, const float *v, float *kc, float *vc, int cap, int T, int pos0,
               int H, int Hkv, int hd, float scale, float *out, float *scratch, int stride, int h0, int h1) {
  (void)k; (void)v;
  const int rep = H / Hkv;
  for (int h = h0; h < h1;) {
    const int g = h / rep, end = (g + 1) * rep < h1 ? (g + 1) * rep : h1;
    const float *kh = kc + (long)g * cap * hd, *vh = vc + (long)g * cap * hd;
    while (h < end) {
      const int ng = end - h < GROUP ? end - h : GROUP;
      for (int t = 0; t < T; t++) {
        const float *q0 = q + ((long)t * H + h) * hd;
        float *o0 = out + ((long)t * H + h) * hd;
        const int n = pos0 + t + 1;
        switch (ng) {
          case 1: attend(1, q0, hd, kh, vh, n, hd, scale, o0, scratch, stride); break;
          case 2: attend(2, q0, hd, kh, vh, n, hd, scale, o0, scratch, stride); break;
          case 3: attend(3, q0, hd, kh, vh, n, hd, scale, o0, scratch, stride); break;
          default: attend(4, q0, hd, kh, vh, n, hd, scale, o0, scratch, stride); break;
        }
      }
      h += ng;
    }
  }
}
