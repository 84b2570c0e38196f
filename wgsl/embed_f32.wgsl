// embed_f32: embedding lookup, rows of a F32 table dequantized for T token ids
// (layout: _quant_f32.wgsl).  Workgroup 64, one thread per 4 outputs; dispatch
// ceil(T * dim / 256).  Body and parameters: _embed.wgsl.
#include "_quant_f32.wgsl"
#include "_embed.wgsl"
