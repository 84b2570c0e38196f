/* barrier: where the threads of run_thread (program.c) meet after each command.
 *
 * Only in the threaded build (kernels_mt.wasm, -matomics, shared memory).
 * sync points to two int32 words in shared memory that the threads share:
 *   sync[0]  threads arrived at the current barrier
 *   sync[1]  barrier generation (bumped by the last thread to arrive)
 * A waiting thread spins on the generation for a while (commands are short
 * and balanced, so the others are usually about to arrive), then sleeps in
 * memory.atomic.wait32 until the last thread's notify.  Waiting is allowed in
 * workers and in Node's main thread, where webinfer's Python runs; a
 * browser's main thread would trap (webinfer never runs there).
 */
#include "common.h"

#ifdef WEBINFER_THREADS

#define SPINS 4000                /* about 10 us of spinning before sleeping: short, because on a
                                     busy machine the spinner may hold the core the others need */
#define SLEEP_NS 10000000LL       /* a sleeper re-checks every 10 ms even if a wake-up were lost */

/* The wait lives in its own function on purpose: with memory.atomic.wait32
 * inlined into the loop below, V8 11.3's baseline compiler (Liftoff, Node 20)
 * lost the loop's state across the wait and the thread slept forever (seen
 * in about half the runs of a 2-thread stress test; never with
 * --no-liftoff, never with this helper). */
__attribute__((noinline)) static void sleep_while_equal(int *p, int v) {
  __builtin_wasm_memory_atomic_wait32(p, v, SLEEP_NS);
}

void barrier(i32 *sync, int nth) {
  i32 gen = __c11_atomic_load((_Atomic i32 *)&sync[1], __ATOMIC_SEQ_CST);
  if (__c11_atomic_fetch_add((_Atomic i32 *)&sync[0], 1, __ATOMIC_SEQ_CST) == nth - 1) {
    __c11_atomic_store((_Atomic i32 *)&sync[0], 0, __ATOMIC_SEQ_CST);
    __c11_atomic_fetch_add((_Atomic i32 *)&sync[1], 1, __ATOMIC_SEQ_CST);
    __builtin_wasm_memory_atomic_notify((int *)&sync[1], (unsigned)nth); /* at most nth - 1 sleep here */
    return;
  }
  for (int i = 0; i < SPINS; i++)
    if (__c11_atomic_load((_Atomic i32 *)&sync[1], __ATOMIC_SEQ_CST) != gen) return;
  while (__c11_atomic_load((_Atomic i32 *)&sync[1], __ATOMIC_SEQ_CST) == gen)
    sleep_while_equal((int *)&sync[1], gen);
}

#endif
