/* run: execute a program of kernel calls (a command buffer) in one call.
 *
 * The backend records a whole forward pass (or any sequence of ops) as
 * commands and hands them over at once, so a decode step crosses from Python
 * to WASM once instead of once per op.  A command is a run of int32 words:
 *
 *   word 0: opcode, plus NO_BARRIER (bit 16) when the next command touches none
 *           of the memory this one does, so threads need not meet in between
 *   word 1: number of words in this command (>= 2)   then its arguments
 *
 * Pointers are byte addresses in the memory the kernels run on; floats are
 * passed as their bit patterns.  The opcodes and argument orders are mirrored
 * in engine/webinfer/backends/wasm_program.py (one table, checked by the tests).
 *
 * Threads: run_thread(cmd, n, tid, nth, sync) does thread tid's share of
 * every command: rows of a matmul, heads of attention, and tokens of all the
 * others, split the same way by every command (share_lo), so a chain of
 * token-split commands on the same tokens never reads another thread's
 * rows.  With nth > 1 the threads meet at a barrier (barrier.c) after every
 * command that does not carry NO_BARRIER.
 */
#include "common.h"

enum {
  OP_RMSNORM = 1,    /* x, w, out, T, D, eps */
  OP_QUANT = 2,      /* x, T, K, qx, dx, sx, isx */
  OP_MATMUL_Q = 3,   /* type, w, rows, K, T, qx, dx, sx, isx, y, ldy */
  OP_MATMUL_F32 = 4, /* w, rows, K, x, T, y, ldy */
  OP_ROPE = 5,       /* x, T, H, hd, half, cos, sin, pos0, neox */
  OP_KV_STORE = 6,   /* k, v, kc, vc, cap, T, pos0, Hkv, hd */
  OP_ATTENTION = 7,  /* q, kc, vc, cap, T, pos0, H, Hkv, hd, scale, out, scratch, scratch_stride */
  OP_SWIGLU = 8,     /* g, u, out, T, n: T rows of n */
  OP_ADD = 9,        /* a, b, T, n: T rows of n */
  OP_ADD_ROWS = 10,  /* y, b, T, n: y[t] += b for every row t */
};

#define NO_BARRIER (1 << 16)

#define P(i) ((void *)(uintptr_t)(u32)c[i])
#define F(k) __builtin_bit_cast(float, c[k])

INLINE int share_lo(int n, int tid, int nth) { return (int)((long)n * tid / nth); }

#ifdef WEBINFER_THREADS
void barrier(i32 *sync, int nth);
#define BARRIER() do { if (nth > 1 && !(c[0] & NO_BARRIER)) barrier(sync, nth); } while (0)
#else
#define BARRIER() do { } while (0)
#endif

/* Returns 0, or the index of the first malformed command plus 1. */
static int run_program(const i32 *cmd, int nwords, int tid, int nth, i32 *sync) {
  (void)sync;
  int idx = 0;
  const i32 *end = cmd + nwords;
  while (cmd < end) {
    const i32 *c = cmd;
    int len = c[1];
    if (len < 2 || cmd + len > end) return idx + 1;
    if (cmd + len == end && (c[0] & NO_BARRIER)) return idx + 1; /* the last command must end with a barrier */
    switch (c[0] & ~NO_BARRIER) {
      case OP_RMSNORM: {
        int T = c[5], lo = share_lo(T, tid, nth), hi = share_lo(T, tid + 1, nth), D = c[6];
        if (hi > lo) rmsnorm((const float *)P(2) + (long)lo * D, P(3), (float *)P(4) + (long)lo * D, hi - lo, D, F(7));
        break;
      }
      case OP_QUANT: {
        int T = c[3], K = c[4], lo = share_lo(T, tid, nth), hi = share_lo(T, tid + 1, nth), KB = K / QBLOCK;
        if (hi > lo)
          quantize_act((const float *)P(2) + (long)lo * K, hi - lo, K, (i16 *)P(5) + (long)lo * K,
                       (float *)P(6) + lo * KB, (float *)P(7) + lo * KB, (i32 *)P(8) + lo * KB);
        break;
      }
      case OP_MATMUL_Q: {
        int rows = c[4];
        matmul_q(c[2], P(3), rows, c[5], P(7), P(8), P(9), P(10), c[6], P(11), c[12], share_lo(rows, tid, nth), share_lo(rows, tid + 1, nth));
        break;
      }
      case OP_MATMUL_F32: {
        int rows = c[3];
        matmul_f32(P(2), rows, c[4], P(5), c[6], P(7), c[8], share_lo(rows, tid, nth), share_lo(rows, tid + 1, nth));
        break;
      }
      case OP_ROPE: {
        int T = c[3], H = c[4], hd = c[5], lo = share_lo(T, tid, nth), hi = share_lo(T, tid + 1, nth);
        if (hi > lo) rope((float *)P(2) + (long)lo * H * hd, hi - lo, H, hd, c[6], P(7), P(8), c[9] + lo, c[10]);
        break;
      }
      case OP_KV_STORE: {
        int T = c[7], Hkv = c[9], hd = c[10], lo = share_lo(T, tid, nth), hi = share_lo(T, tid + 1, nth);
        if (hi > lo)
          kv_store((const float *)P(2) + (long)lo * Hkv * hd, (const float *)P(3) + (long)lo * Hkv * hd, P(4), P(5), c[6],
                   hi - lo, c[8] + lo, Hkv, hd);
        break;
      }
      case OP_ATTENTION: {
        int H = c[8];
        attention(P(2), 0, 0, P(3), P(4), c[5], c[6], c[7], H, c[9], c[10], F(11), P(12),
                  (float *)P(13) + (long)tid * c[14], share_lo(H, tid, nth), share_lo(H, tid + 1, nth));
        break;
      }
      case OP_SWIGLU: {
        long n = c[6], lo = share_lo(c[5], tid, nth) * n, hi = share_lo(c[5], tid + 1, nth) * n;
        if (hi > lo) swiglu((const float *)P(2) + lo, (const float *)P(3) + lo, (float *)P(4) + lo, hi - lo);
        break;
      }
      case OP_ADD: {
        long n = c[5], lo = share_lo(c[4], tid, nth) * n, hi = share_lo(c[4], tid + 1, nth) * n;
        if (hi > lo) add_inplace((float *)P(2) + lo, (const float *)P(3) + lo, hi - lo);
        break;
      }
      case OP_ADD_ROWS: {
        int T = c[4], n = c[5], lo = share_lo(T, tid, nth), hi = share_lo(T, tid + 1, nth);
        for (int t = lo; t < hi; t++) add_inplace((float *)P(2) + (long)t * n, P(3), n);
        break;
      }
      default:
        return idx + 1;
    }
    BARRIER();
    cmd += len;
    idx++;
  }
  return 0;
}

EXPORT(run) int run(const i32 *cmd, int nwords) { return run_program(cmd, nwords, 0, 1, 0); }

#ifdef WEBINFER_THREADS
EXPORT(run_thread) int run_thread(const i32 *cmd, int nwords, int tid, int nth, i32 *sync) {
  return run_program(cmd, nwords, tid, nth, sync);
}
#endif
