// embed_q4_1: embedding lookup, rows of a Q4_1 table dequantized for T token ids
// (layout: _quant_q4_1.wgsl).  Workgroup 64, one thread per 4 outputs; dispatch
// ceil(T * dim / 256).  Body and parameters: _embed.wgsl.
#include "_quant_q4_1.wgsl"
#include "_embed.wgsl"
