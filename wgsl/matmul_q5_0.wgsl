// matmul_q5_0: Y = X W^T for T tokens (prefill), W in Q5_0 (layout: _quant_q5_0.wgsl).
// Variants: plain, RESIDUAL (Y = R + X W^T).  Workgroup 16x16, tile 64 rows x 64
// tokens; dispatch (ceil(rows / 64), ceil(T / 64)).  Body and parameters: _matmul.wgsl.
#include "_quant_q5_0.wgsl"
#include "_matmul.wgsl"
