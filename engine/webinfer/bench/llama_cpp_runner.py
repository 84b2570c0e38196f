"""llama.cpp natively through llama-cpp-python, on webinfer's benchmark protocol.

Standalone on purpose (it imports nothing from webinfer): it may run in another
interpreter that has llama_cpp installed::

    python llama_cpp_runner.py '{"model": PATH, "runs": 3, "decode_tokens": 128, "threads": 1, ...}'

prints one JSON object on its last stdout line. Decode: the prompt is evaluated
untimed, then ``decode_tokens`` greedy single-token steps (argmax of the last
logits, as the peer script bench_llama.py does); TTFT is the prompt's eval plus
the first argmax. Prefill: the prefill text into an empty cache in one batch.
"""

import json
import platform
import resource
import statistics
import sys
import time


def summary(xs, unit):
    r = lambda x: float(f"{x:.4g}")  # noqa: E731
    return {"median": r(statistics.median(xs)), "min": r(min(xs)), "max": r(max(xs)), "n": len(xs),
            "values": [r(x) for x in xs], "unit": unit}


def main(opts):
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama

    nt = int(opts.get("threads") or 1)
    loads = []
    t0 = time.perf_counter()
    llm = Llama(model_path=opts["model"], n_ctx=opts["n_ctx"], n_batch=512, n_ubatch=512, n_threads=nt,
                n_threads_batch=nt, logits_all=False, verbose=False)
    loads.append(time.perf_counter() - t0)

    def last_logits():
        p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(p, shape=(llm.n_vocab(),))

    def decode_run(n):
        llm.reset()
        toks = llm.tokenize(opts["decode_prompt"].encode(), add_bos=True)
        t = time.perf_counter()
        llm.eval(toks)
        out = [int(np.argmax(last_logits()))]
        ttft = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n - 1):
            llm.eval([out[-1]])
            out.append(int(np.argmax(last_logits())))
        llama_cpp.llama_synchronize(llm._ctx.ctx)
        dt = time.perf_counter() - t
        return (n - 1) / dt if n > 1 else 0.0, ttft, llm.detokenize(out).decode("utf-8", "replace"), len(toks)

    def prefill_run():
        llm.reset()
        toks = llm.tokenize(opts["prefill_text"].encode(), add_bos=True)
        t = time.perf_counter()
        llm.eval(toks)
        llama_cpp.llama_synchronize(llm._ctx.ctx)
        return len(toks) / (time.perf_counter() - t), len(toks)

    decode_run(opts["warmup_tokens"]), prefill_run()
    d = [decode_run(opts["decode_tokens"]) for _ in range(opts["runs"])]
    p = [prefill_run() for _ in range(opts["runs"])]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in range(opts["runs"] - 1):
        del llm
        t0 = time.perf_counter()
        llm = Llama(model_path=opts["model"], n_ctx=opts["n_ctx"], n_threads=nt, verbose=False)
        loads.append(time.perf_counter() - t0)
    return {
        "metrics": {"load_s": summary(loads, "s"), "ttft_s": summary([x[1] for x in d], "s"),
                    "decode_tps": summary([x[0] for x in d], "tok/s"),
                    "prefill_tps": summary([x[0] for x in p], "tok/s"),
                    "peak_rss_mb": summary([peak], "MB")},
        "protocol": {"decode_prompt_tokens": d[0][3], "prefill_tokens": p[0][1]},
        "extra": {"text": d[0][2][:200]},
        "capability": {"llama_cpp_system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace")},
        "versions": {"llama_cpp_python": llama_cpp.__version__, "python": platform.python_version(),
                     "numpy": np.__version__},
        "engine_version": llama_cpp.__version__,
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
