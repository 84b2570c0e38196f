// embed_q4_0: embedding lookup, rows of a Q4_0 table dequantized for T token ids
// (layout: _quant_q4_0.wgsl).  Workgroup 64, one thread per 4 outputs; dispatch
// ceil(T * dim / 256).  Body and parameters: _embed.wgsl.
#include "_quant_q4_0.wgsl"
#include "_embed.wgsl"
