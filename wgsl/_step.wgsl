// _step: the per-step state every planned kernel reads (an include, not a kernel).
//
// One small storage buffer per session.  The CPU writes it only when the
// session jumps (a new prompt); in steady-state decode the sampling kernel
// advances it on the GPU, so a recorded step can be replayed unchanged.
struct Step {
    pos0: u32,       // position of the first token of this forward pass
    n_tokens: u32,   // tokens in this forward pass (1 while decoding)
    n_out: u32,      // tokens sampled so far (index into the OUT ring)
    done: u32,       // 1 once a stop token was sampled (later samples are marked)
}
