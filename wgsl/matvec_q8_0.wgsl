// matvec_q8_0: y = W x for one token, W in Q8_0 (layout: _quant_q8_0.wgsl).
// Variants: plain, RESIDUAL (y = r + W x), GATE_UP (y = silu(W_g x) * (W_u x));
// up to 3 matrices sharing x in one dispatch.  Workgroup 256 (8 rows x 32 lanes);
// dispatch ceil(rows / 8).  Body and parameters: _matvec.wgsl.
#define CHUNK_DOT
#include "_quant_q8_0.wgsl"
#include "_matvec.wgsl"
