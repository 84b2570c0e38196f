// embed_q6_k: embedding lookup, rows of a Q6_K table dequantized for T token ids
// (layout: _quant_q6_k.wgsl).  Workgroup 64, one thread per 4 outputs; dispatch
// ceil(T * dim / 256).  Body and parameters: _embed.wgsl.
#include "_quant_q6_k.wgsl"
#include "_embed.wgsl"
