// matvec_f32: y = W x for one token, W in F32 (layout: _quant_f32.wgsl).
// Variants: plain, RESIDUAL (y = r + W x), GATE_UP (y = silu(W_g x) * (W_u x));
// up to 3 matrices sharing x in one dispatch.  Workgroup 256 (8 rows x 32 lanes);
// dispatch ceil(rows / 8).  Body and parameters: _matvec.wgsl.
#define CHUNK_DOT
#include "_quant_f32.wgsl"
#include "_matvec.wgsl"
