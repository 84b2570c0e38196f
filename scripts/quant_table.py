#!/usr/bin/env python3
"""The quantization table of docs/quantization.md, from scratch: ``.venv/bin/python scripts/quant_table.py``.

For the default model (SmolLM2-135M-Instruct, Q4_1 weights with a Q8_0 embedding: the reference, since
no full-precision original exists) it

1. tokenizes the texts: alice29.txt and plrabn12.txt (evaluation), lcet10.txt and asyoulik.txt
   (calibration; never evaluated on);
2. collects the importance matrix with input covariances on 16 windows of 512 from each calibration text;
3. for every row of ROWS quantizes the model with ``webinfer quantize``'s code, and measures bits per
   weight (all tensor bytes x 8 / all weights, embedding and norms included), file size, perplexity on
   both texts with the fixed protocol (webinfer.quant.perplexity: 16 windows of 512 from an empty cache,
   8176 predictions), and, in a fresh process, peak memory and decode speed (numpy backend, greedy
   64 tokens after "The capital of France is", best of three; once per recipe, since they depend on the
   types only);
4. measures the KV cache types on the reference weights;
5. with ``--llama-python`` (a llama-cpp-python interpreter, see scripts/llama_cpp_peer.py) quantizes
   with llama.cpp's own ``llama_model_quantize`` and measures its perplexity with the same token ids,
   and checks that our files in standard layouts give llama.cpp the logits webinfer computes;
6. writes the tables between the markers in docs/quantization.md and all numbers to results.json.

Every result is cached under --work (default ~/.cache/webinfer/quant), so an interrupted run resumes;
--fresh starts over.  A full run took about two hours on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "engine"))

from webinfer.backends.numpy_backend import KV_DTYPES, NumpyBackend, kv_bytes_per_token  # noqa: E402
from webinfer.formats.gguf import GGUFFile  # noqa: E402
from webinfer.model import load_model  # noqa: E402
from webinfer.quant.imatrix import Imatrix, calibration_windows, collect_imatrix  # noqa: E402
from webinfer.quant.perplexity import perplexity  # noqa: E402
from webinfer.quant.pipeline import quantize_model  # noqa: E402
from webinfer.tokenizer import Tokenizer  # noqa: E402

CACHE = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")
MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXTS = CACHE / "testdata" / "text"
EVAL_TEXTS = ("alice29", "plrabn12")
CALIB_TEXTS = ("lcet10", "asyoulik")   # a technical text and a play: 16 windows of 512 from each
CALIB_WINDOWS = 32
KV_BUDGET = 64 << 20            # bytes of KV cache for the "context that fits" column
DOC = ROOT / "docs" / "quantization.md"

# (row id, recipe, method, note)
ROWS = [
    ("reference", None, None, "the model's own weights (Q4_1, Q8_0 embedding)"),
    ("Q8_0", "Q8_0", "rtn", ""),
    ("Q4_K_M", "Q4_K_M", "rtn", "llama.cpp's mix, packed rows instead of fallbacks"),
    ("Q4_K_M+imatrix", "Q4_K_M", "imatrix", ""),
    ("Q4_0", "Q4_0", "rtn", "embedding in Q4_0 too"),
    ("Q4_0+imatrix", "Q4_0", "imatrix", ""),
    ("W4 rtn", "W4", "rtn", ""),
    ("W4 imatrix", "W4", "imatrix", ""),
    ("W4 gptq", "W4", "gptq", "goal: <= 4.5 bpw, <= +3%"),
    ("Q3_K_M", "Q3_K_M", "rtn", "llama.cpp's mix, packed rows"),
    ("Q3_K_M gptq", "Q3_K_M", "gptq", ""),
    ("Q3_K rtn", "Q3_K", "rtn", "every matrix Q3_K"),
    ("Q3_K imatrix", "Q3_K", "imatrix", ""),
    ("Q3_K gptq", "Q3_K", "gptq", ""),
    ("W3 imatrix", "W3", "imatrix", ""),
    ("W3 gptq", "W3", "gptq", "goal: <= 3.5 bpw, <= +10%"),
    ("Q2_K", "Q2_K", "rtn", "llama.cpp's mix, packed rows"),
    ("Q2_K gptq", "Q2_K", "gptq", ""),
    ("W2 imatrix", "W2", "imatrix", ""),
    ("W2 gptq", "W2", "gptq", "goal: <= 2.7 bpw, <= +35%"),
]
# llama.cpp's quantizer on the same source (no imatrix: llama-cpp-python cannot pass one)
LLAMA_ROWS = ["Q8_0", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"]
# our files in layouts llama.cpp reads (no packed rows): webinfer vs llama.cpp logits
CROSS_CHECK = ["reference", "Q8_0", "Q4_0", "IQ4_NL", "Q5_0"]
# where llama.cpp's quantizer and ours meet on the same type: tensor bytes compared
BYTE_CHECK = ["Q8_0", "Q4_0"]

BENCH_CODE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from webinfer.runtime.engine import Engine
e = Engine.load(sys.argv[1], n_ctx=int(sys.argv[2]) + 80, kv_dtype=sys.argv[4])
prompt = e.tokenize("The capital of France is")
if int(sys.argv[2]) > len(prompt):   # a long context first, for the KV rows
    filler = e.tokenize(open(sys.argv[5], encoding="utf-8").read())[: int(sys.argv[2]) - len(prompt)]
    prompt = filler + prompt
list(e.generate(prompt, max_tokens=8, temperature=0, ignore_eos=True))          # warm-up
speeds = []
for _ in range(3):   # best of three: the machine may be busy with other work
    e.session.reset()
    list(e.generate(prompt, max_tokens=64, temperature=0, ignore_eos=True))
    speeds.append(e.last_stats.decode_tokens_per_s)
print(json.dumps({"decode_tok_s": round(max(speeds), 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "kv_bytes": e.session.cache.nbytes()}))
"""


# ---------------------------------------------------------------------- helpers

def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def cached(path: Path, fn):
    if path.exists():
        return json.loads(path.read_text())
    out = fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


def tokens(work: Path, text: str) -> list[int]:
    p = work / f"{text}.ids.json"
    if not p.exists():
        with GGUFFile.open(MODEL) as g:
            tok = Tokenizer.from_gguf_metadata(g.metadata)
        raw = (TEXTS / f"{text}.txt").read_bytes().decode("utf-8")
        p.write_text(json.dumps(tok.encode(raw, add_special=False, parse_special=False)))
    return json.loads(p.read_text())


def tensor_bits(path: Path) -> tuple[int, int]:
    with GGUFFile.open(path) as g:
        return sum(t.nbytes for t in g), sum(t.n_elements for t in g)


def ppl_of(path: Path, ids: list[int], kv_dtype: str | None = None) -> dict:
    with GGUFFile.open(path) as g:
        model = load_model(g, NumpyBackend())
    r = perplexity(model, ids, ctx=512, n_tokens=8192, kv_dtype=kv_dtype)
    return {"ppl": r.ppl, "n_predictions": r.n_predictions, "seconds": round(r.seconds, 1)}


def bench(path: Path, n_ctx: int = 0, kv_dtype: str = "f32") -> dict:
    out = subprocess.run([sys.executable, "-c", BENCH_CODE, str(path), str(n_ctx), str(ROOT / "engine"), kv_dtype,
                          str(TEXTS / f"{CALIB_TEXTS[0]}.txt")], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- ours

def our_row(work: Path, row, imatrix_fn, ids: dict) -> dict:
    rid, recipe, method, note = row
    path = model_path(work, rid, recipe)
    if recipe is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        log(f"quantize {rid}")
        rep = quantize_model(MODEL, path, recipe, imatrix=imatrix_fn() if method != "rtn" else None, method=method)
        log(f"  {rep.bpw:.3f} bpw in {rep.seconds:.0f} s")
    nbytes, nweights = tensor_bits(path)
    r = {"row": rid, "recipe": recipe or "source", "method": method or "-", "note": note,
         "bpw": 8 * nbytes / nweights, "file_mb": path.stat().st_size / 1e6}
    for text in EVAL_TEXTS:
        log(f"ppl {rid} {text}")
        r[text] = ppl_of(path, ids[text])
    return r


def bench_file(work: Path, recipe) -> Path:
    """A file of ``recipe``'s types (RTN: the method does not change the types, hence not speed or memory)."""
    if recipe is None:
        return MODEL
    path = work / "models" / f"bench_{recipe}.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        log(f"quantize {recipe} (rtn) for the speed and memory measurement")
        quantize_model(MODEL, path, recipe)
    return path


def model_path(work: Path, rid: str, recipe) -> Path:
    return MODEL if recipe is None else work / "models" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", rid) + ".gguf")


def kv_row(work: Path, kv: str, ids: dict) -> dict:
    with GGUFFile.open(MODEL) as g:
        from webinfer.model.args import args_from_metadata
        args = args_from_metadata(g.metadata, set(g.tensors))
    per = kv_bytes_per_token(args, kv)
    r = {"kv_dtype": kv, "bytes_per_token": per, "ctx_in_budget": KV_BUDGET // per}
    for text in EVAL_TEXTS:
        log(f"ppl kv {kv} {text}")
        r[text] = ppl_of(MODEL, ids[text], kv_dtype=kv)
    log(f"bench kv {kv}")
    r.update(bench(MODEL, n_ctx=1024, kv_dtype=kv))
    return r


# ---------------------------------------------------------------------- llama.cpp

def llama(work: Path, py: str, *args) -> list[dict]:
    out = subprocess.run([py, str(ROOT / "scripts" / "llama_cpp_peer.py"), *map(str, args)], capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"llama_cpp_peer.py {args[0]} failed: {out.stderr[-2000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def llama_row(work: Path, py: str, ftype: str) -> dict:
    if ftype == "reference":
        path = MODEL
    else:
        path = work / "llama" / f"{ftype}.gguf"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            log(f"llama.cpp quantize {ftype}")
            llama(work, py, "quantize", MODEL, path, ftype)
    nbytes, nweights = tensor_bits(path)
    r = {"row": f"llama.cpp {ftype}", "bpw": 8 * nbytes / nweights, "file_mb": path.stat().st_size / 1e6}
    log(f"llama.cpp ppl {ftype}")
    res = llama(work, py, "ppl", path, *[work / f"{t}.ids.json" for t in EVAL_TEXTS])
    for text, x in zip(EVAL_TEXTS, res):
        r[text] = {"ppl": x["ppl"], "n_predictions": x["n_predictions"], "seconds": x["seconds"]}
    return r


def byte_check(work: Path, t: str) -> dict:
    """Tensors of the same type in llama.cpp's file and ours (RTN, standard layout): identical bytes?"""
    with GGUFFile.open(work / "llama" / f"{t}.gguf") as a, GGUFFile.open(work / "models" / f"std_{t}.gguf") as b:
        both = [n for n in a.tensors if a.info(n).ggml_type == b.info(n).ggml_type]
        same = sum(bool(np.array_equal(a.raw(n), b.raw(n))) for n in both)
        return {"type": t, "same_type": len(both), "identical": same, "tensors": len(a.tensors)}


def cross_check(work: Path, py: str, t: str, ids: list[int]) -> dict:
    """Our file in a standard layout: logits in llama.cpp vs webinfer on one window."""
    path = MODEL if t == "reference" else work / "models" / f"std_{t}.gguf"
    if not path.exists():
        quantize_model(MODEL, path, t, pack=False)
    win = ids[:512]
    idp = work / "window.json"
    idp.write_text(json.dumps(win))
    out = work / f"llama_logits_{t}.npy"
    llama(work, py, "logits", path, idp, out)
    theirs = np.load(out)
    with GGUFFile.open(path) as g:
        from webinfer.runtime.session import Session
        ours = Session(load_model(g, NumpyBackend()), 512, n_batch=512).evaluate(win, n_logits=512)
    d = np.abs(ours - theirs)
    return {"type": t, "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
            "logit_scale": float(np.abs(ours).max()), "top1_agree": float((ours.argmax(1) == theirs.argmax(1)).mean())}


# ---------------------------------------------------------------------- markdown

def _ppl_cell(r: dict, ref: dict, text: str) -> str:
    p = r[text]["ppl"]
    return f"{p:.2f} ({100 * (p / ref[text]['ppl'] - 1):+.1f}%)"


def markdown(res: dict) -> str:
    ours = res["ours"]
    ref = next(r for r in ours if r["row"] == "reference")
    lines = ["| row | method | bpw | file MB | PPL alice29 (change) | PPL plrabn12 (change) | decode tok/s | "
             "peak RSS MB | note |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in ours:
        lines.append(f"| {r['row']} | {r['method']} | {r['bpw']:.3f} | {r['file_mb']:.1f} | "
                     f"{_ppl_cell(r, ref, 'alice29')} | {_ppl_cell(r, ref, 'plrabn12')} | "
                     f"{r.get('decode_tok_s', float('nan')):.1f} | {r.get('peak_rss_mb', float('nan')):.0f} | "
                     f"{r['note']} |")
    out = ["<!-- quant-table:start (generated by scripts/quant_table.py; do not edit by hand) -->", "",
           "### webinfer", ""] + lines
    if res.get("llama"):
        lref = res["llama"][0]
        out += ["", "### llama.cpp's quantizer (llama-cpp-python 0.3.36, same source, texts and token ids; "
                "changes against its own evaluation of the reference)", "",
                "| row | bpw | file MB | PPL alice29 (change) | PPL plrabn12 (change) |", "|---|---:|---:|---:|---:|"]
        for r in res["llama"]:
            out.append(f"| {r['row']} | {r['bpw']:.3f} | {r['file_mb']:.1f} | {_ppl_cell(r, lref, 'alice29')} | "
                       f"{_ppl_cell(r, lref, 'plrabn12')} |")
    if res.get("cross"):
        out += ["", "### Our files in llama.cpp (logits of one 512-token window of alice29)", "",
                "llama.cpp's CPU kernels quantize the activations (to 8 bits) inside every matrix product, so "
                "its logits differ from webinfer's float32 ones even on the reference file; our files differ "
                "by the same amount. Where both quantizers write the same type, the tensor bytes are compared "
                "too: " + "; ".join(f"{b['type']}: {b['identical']} of {b['same_type']} tensors identical"
                                    for b in res.get("bytes", [])) + ".", "",
                "| type | max abs logit difference | mean abs difference | largest logit | top-1 agreement |",
                "|---|---:|---:|---:|---:|"]
        for c in res["cross"]:
            out.append(f"| {c['type']} | {c['max_abs_diff']:.4f} | {c['mean_abs_diff']:.5f} | {c['logit_scale']:.1f} | "
                       f"{100 * c['top1_agree']:.1f}% |")
    kref = res["kv"][0]
    out += ["", "### KV cache (reference weights; context in a 64 MiB budget; decode after a 1024-token context)", "",
            "| KV type | bytes per token | context in 64 MiB | vs f32 | PPL alice29 (change) | PPL plrabn12 (change) | "
            "decode tok/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for k in res["kv"]:
        out.append(f"| {k['kv_dtype']} | {k['bytes_per_token']} | {k['ctx_in_budget']} | "
                   f"{k['ctx_in_budget'] / kref['ctx_in_budget']:.2f}x | {_ppl_cell(k, kref, 'alice29')} | "
                   f"{_ppl_cell(k, kref, 'plrabn12')} | {k['decode_tok_s']:.1f} |")
    out += ["", f"Machine: {res['machine']}; generated {res['date']}.", "", "<!-- quant-table:end -->"]
    return "\n".join(out)


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else ""
    start, end = "<!-- quant-table:start", "<!-- quant-table:end -->"
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + text + doc[doc.index(end) + len(end):]
    else:
        doc = doc + "\n" + text + "\n"
    DOC.write_text(doc)


# ---------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=CACHE / "quant")
    ap.add_argument("--llama-python", default=os.environ.get("WEBINFER_LLAMA_PYTHON"),
                    help="python of a venv with llama-cpp-python (llama.cpp rows; skipped without it)")
    ap.add_argument("--rows", default=None, help="comma-separated row ids to run (default: all)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached results")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/quantization.md")
    ap.add_argument("--no-bench", action="store_true", help="skip decode speed and memory (fill them in later)")
    ap.add_argument("--only-ours", action="store_true", help="only webinfer's rows (no KV, no llama.cpp, no doc)")
    ap.add_argument("--imatrix-only", action="store_true", help="only collect the importance matrix")
    ns = ap.parse_args()
    work = ns.work
    (work / "results").mkdir(parents=True, exist_ok=True)
    if ns.fresh:
        for p in (work / "results").glob("*.json"):
            p.unlink()
    ids = {t: tokens(work, t) for t in (*EVAL_TEXTS, *CALIB_TEXTS)}
    imx_path = work / "imatrix-calib-cov.gguf"
    imx_cache: dict = {}

    def imatrix() -> Imatrix:
        if "m" not in imx_cache:
            if not imx_path.exists():
                log("imatrix on", CALIB_TEXTS)
                calib = calibration_windows([ids[t] for t in CALIB_TEXTS], ctx=512, n_chunks=CALIB_WINDOWS)
                with GGUFFile.open(MODEL) as g:
                    collect_imatrix(g, calib, ctx=512, with_cov=True,
                                    dataset=" + ".join(f"{t}.txt" for t in CALIB_TEXTS)).save(imx_path)
            imx_cache["m"] = Imatrix.load(imx_path)
        return imx_cache["m"]

    if ns.imatrix_only:
        imatrix()
        return 0
    wanted = set(ns.rows.split(",")) if ns.rows else None
    res = {"machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, numpy {np.__version__}",
           "date": time.strftime("%Y-%m-%d"), "ours": [], "llama": [], "cross": [], "kv": []}
    for row in ROWS:
        if wanted and row[0] not in wanted:
            continue
        key = re.sub(r"[^A-Za-z0-9_.-]+", "_", row[0])
        rp = work / "results" / f"{key}.json"
        r = cached(rp, lambda: our_row(work, row, imatrix, ids))
        if not ns.no_bench:   # speed and memory depend on the types only: measured once per recipe
            r.update(cached(work / "results" / f"bench_{row[1] or 'reference'}.json",
                            lambda: bench(bench_file(work, row[1]))))
        res["ours"].append(r)
    if ns.only_ours:
        print(json.dumps(res["ours"], indent=1))
        return 0
    for kv in KV_DTYPES:
        res["kv"].append(cached(work / "results" / f"kv_{kv}.json", lambda: kv_row(work, kv, ids)))
    if ns.llama_python:
        for ftype in ["reference", *LLAMA_ROWS]:
            res["llama"].append(cached(work / "results" / f"llama_{ftype}.json",
                                       lambda: llama_row(work, ns.llama_python, ftype)))
        for t in CROSS_CHECK:
            res["cross"].append(cached(work / "results" / f"cross_{t}.json",
                                       lambda: cross_check(work, ns.llama_python, t, ids["alice29"])))
        res["bytes"] = [byte_check(work, t) for t in BYTE_CHECK]
    (work / "results.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    if not ns.no_doc:
        write_doc(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
