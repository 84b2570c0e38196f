// matvec_q4_k: y = W x for one token, W in Q4_K (layout: _quant_q4_k.wgsl).
// Variants: plain, RESIDUAL (y = r + W x), GATE_UP (y = silu(W_g x) * (W_u x));
// up to 3 matrices sharing x in one dispatch.  Workgroup 256 (8 rows x 32 lanes);
// dispatch ceil(rows / 8).  Body and parameters: _matvec.wgsl.
#define CHUNK_DOT
#include "_quant_q4_k.wgsl"
#include "_matvec.wgsl"
