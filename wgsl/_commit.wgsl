// _commit: hand a sampled token to the next step, on the GPU (an include).
//
// Needs STEP (read_write), IDS, OUT and P.ring / P.n_stop / P.stop.  The token
// becomes the next forward pass's input (IDS[0]), is appended to the OUT ring
// the host reads back (4 bytes a token), and the step advances by the tokens
// just evaluated.  A token in the stop list sets STEP.done; tokens sampled
// after that are marked with the high bit, so a batch of k steps recorded in
// one submit tells the host where generation stopped.

const AFTER_STOP: u32 = 0x80000000u;

fn commit(tok: u32) {
    var mark = 0u;
    if (STEP.done != 0u) { mark = AFTER_STOP; }
    OUT[STEP.n_out % P.ring] = tok | mark;
    STEP.n_out = STEP.n_out + 1u;
    STEP.pos0 = STEP.pos0 + STEP.n_tokens;
    STEP.n_tokens = 1u;
    IDS[0] = tok;
    for (var i = 0u; i < P.n_stop; i++) {
        if (tok == P.stop[i / 4u][i % 4u]) { STEP.done = 1u; }
    }
}
