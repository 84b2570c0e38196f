#!/usr/bin/env python3
"""llama.cpp's side of the quantization table, run with a llama-cpp-python interpreter (not webinfer's venv).

llama-cpp-python builds from its sdist (scripts/assets.json pins it); on CPUs with AMX, build it with
``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"``: the native build crashed
here with a general-protection fault in its AMX code.

    python llama_cpp_peer.py quantize SRC.gguf OUT.gguf Q4_K_M      llama_model_quantize, no imatrix
    python llama_cpp_peer.py ppl MODEL.gguf IDS.json [IDS.json...]  perplexity, one JSON line per text
    python llama_cpp_peer.py logits MODEL.gguf IDS.json OUT.npy     all logits of one window

Perplexity follows webinfer.quant.perplexity and shared/peers/ppl_llama.py: token ids are given
(webinfer's tokenizer, which matches llama.cpp's on these texts), 16 windows of 512 from an empty
cache, NLL over positions 0..510 in float64.
"""

from __future__ import annotations

import ctypes
import json
import math
import sys
import time

import numpy as np

FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12,
          "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ4_NL": 25}
CTX = 512


def quantize(src: str, dst: str, ftype: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = 2
    params.allow_requantize = True   # the source is itself quantized (Q4_1), as in the numbers
    t0 = time.time()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed with {rc}")
    print(json.dumps({"ftype": ftype, "seconds": round(time.time() - t0, 1)}))


def _llama(model: str):
    from llama_cpp import Llama

    return Llama(model_path=model, n_ctx=CTX, n_batch=CTX, n_ubatch=CTX, logits_all=True, flash_attn=False,
                 n_threads=2, n_threads_batch=2, verbose=False)


def _window_logits(llm, win: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(win)
    return np.array(llm.scores[: len(win)], dtype=np.float64)


def ppl(model: str, id_files: list[str]) -> None:
    llm = _llama(model)
    for path in id_files:
        toks = json.load(open(path))[: 16 * CTX]
        t0 = time.time()
        nll, cnt = 0.0, 0
        for w in range(len(toks) // CTX):
            win = toks[w * CTX : (w + 1) * CTX]
            lg = _window_logits(llm, win)[:-1]
            m = lg.max(axis=1, keepdims=True)
            lse = (m + np.log(np.exp(lg - m).sum(axis=1, keepdims=True)))[:, 0]
            nll += float((lse - lg[np.arange(CTX - 1), np.array(win[1:])]).sum())
            cnt += CTX - 1
        print(json.dumps({"ids": path, "ppl": math.exp(nll / cnt), "n_predictions": cnt,
                          "seconds": round(time.time() - t0, 1)}), flush=True)


def logits(model: str, id_file: str, out: str) -> None:
    np.save(out, _window_logits(_llama(model), json.load(open(id_file))).astype(np.float32))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"quantize": lambda: quantize(*args), "ppl": lambda: ppl(args[0], args[1:]),
     "logits": lambda: logits(*args)}[cmd]()
