"""``webinfer`` command line: generate, chat, info.

Errors a user can cause (bad file, bad option, prompt too long) print one
line to stderr and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

from . import __version__
from .errors import WebinferError

EXIT_USER_ERROR = 2


# ------------------------------------------------------------------ helpers

class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width, self._last = stream, width, 0.0
        self.enabled = stream.isatty() or "--progress" in sys.argv

    def __call__(self, p: dict) -> None:
        now = time.perf_counter()
        done = p["loaded"] >= p["total"]
        if not self.enabled or (now - self._last < 0.1 and not done):
            return
        self._last = now
        frac = p["progress"]
        bar = "#" * int(frac * self.width)
        mb = p["loaded"] / 1e6
        self.stream.write(f"\rloading [{bar:<{self.width}}] {frac:6.1%} {mb:7.1f} MB "
                          f"{p['tensors']}/{p['n_tensors']} tensors")
        if done:
            self.stream.write("\n")
        self.stream.flush()


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=None,
                   help="GGUF file or known model name (default: the registry's default model)")
    p.add_argument("--backend", default="numpy", choices=["numpy", "webgpu"],
                   help="compute backend: numpy, or webgpu (wgpu-py; numpy if no adapter) (default: numpy)")
    p.add_argument("--profile", default=None, help="webgpu run profile (default: chosen from the device; "
                   "see `webinfer doctor`)")
    p.add_argument("--n-ctx", type=int, default=None, help="context length in tokens (default: 2048)")
    p.add_argument("--kv-dtype", default=None, choices=["f32", "f16", "int8", "int4"],
                   help="KV cache storage on the numpy backend (default f32; int8 fits ~3.9x the context)")
    p.add_argument("--progress", action="store_true", help="show the load progress bar even when not a TTY")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--max-tokens", "-n", type=int, default=256, help="tokens to generate at most (default 256)")
    g.add_argument("--temperature", "-t", type=float, default=0.7, help="0 = greedy (default 0.7)")
    g.add_argument("--top-k", type=int, default=40, help="0 disables (default 40)")
    g.add_argument("--top-p", type=float, default=0.95, help="1 disables (default 0.95)")
    g.add_argument("--min-p", type=float, default=0.05, help="0 disables (default 0.05)")
    g.add_argument("--repeat-penalty", type=float, default=1.0, help="1 disables (default 1.0)")
    g.add_argument("--seed", type=int, default=None, help="random seed for reproducible sampling")
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    g.add_argument("--stats", action="store_true", help="print token counts and speed to stderr at the end")


def _sampling(ns) -> dict:
    return dict(temperature=ns.temperature, top_k=ns.top_k, top_p=ns.top_p, min_p=ns.min_p,
                repetition_penalty=ns.repeat_penalty, seed=ns.seed)


def _load(ns):
    from .runtime.engine import Engine

    engine = Engine.load(ns.model, backend=ns.backend, n_ctx=ns.n_ctx, progress=ProgressBar(), profile=ns.profile,
                         kv_dtype=ns.kv_dtype)
    if ns.backend != "numpy":
        print(f"webinfer: backend {engine.backend_name}", file=sys.stderr)
    return engine


def _print_stats(engine) -> None:
    s = engine.last_stats
    if s is not None:
        d = s.as_dict()
        print(f"[{d['prompt_tokens']} prompt tokens ({d['reused_tokens']} cached), {d['completion_tokens']} generated; "
              f"prefill {d['prefill_tokens_per_s']:.1f} tok/s, decode {d['decode_tokens_per_s']:.1f} tok/s, "
              f"TTFT {d['ttft_s'] * 1000:.0f} ms; backend {engine.backend_name}]", file=sys.stderr)


# ------------------------------------------------------------------ commands

def cmd_generate(ns) -> int:
    engine = _load(ns)
    prompt = ns.prompt if ns.prompt != "-" else sys.stdin.read()
    for piece in engine.generate(prompt, max_tokens=ns.max_tokens, stop=ns.stop, **_sampling(ns)):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if ns.stats:
        _print_stats(engine)
    return 0


def cmd_chat(ns) -> int:
    engine = _load(ns)
    messages = [{"role": "system", "content": ns.system}] if ns.system else []

    def answer(text: str) -> None:
        messages.append({"role": "user", "content": text})
        reply = []
        for chunk in engine.chat.completions.create(messages=messages, stream=True, max_tokens=ns.max_tokens,
                                                    stop=ns.stop or None, **_sampling(ns)):
            piece = chunk["choices"][0]["delta"].get("content", "")
            reply.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})
        if ns.stats:
            _print_stats(engine)

    if ns.message:
        for m in ns.message:
            if len(ns.message) > 1:
                print(f"> {m}")
            answer(m)
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        print("webinfer chat: type a message, /reset to start over, Ctrl-D to quit.", file=sys.stderr)
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            return 0
        line = line.strip()
        if not line:
            continue
        if line == "/reset":
            del messages[1 if ns.system else 0:]
            continue
        answer(line)


def cmd_info(ns) -> int:
    from .formats.gguf import GGUFFile
    from .models import resolve_model

    with GGUFFile.open(resolve_model(ns.file)) as g:
        if ns.json:
            md = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in g.metadata.items()}
            if not ns.full:
                md = {k: (f"<{len(v)} items>" if isinstance(v, list) and len(v) > 16 else v) for k, v in md.items()}
            tensors = [{"name": t.name, "type": t.type_name, "shape": list(t.shape), "offset": t.offset,
                        "nbytes": t.nbytes} for t in g]
            json.dump({"version": g.version, "metadata": md, "tensors": tensors}, sys.stdout, indent=1)
            print()
            return 0
        print(f"GGUF v{g.version}, {len(g.metadata)} metadata keys, {len(g.tensors)} tensors, "
              f"{g.source.size / 1e6:.1f} MB")
        print("\nmetadata:")
        for k, v in g.metadata.items():
            if hasattr(v, "__len__") and not isinstance(v, str) and len(v) > 8 and not ns.full:
                text = f"[{len(v)} items: {', '.join(repr(x) for x in list(v[:4]))}, ...]"
            else:
                text = repr(v.tolist() if hasattr(v, "tolist") else v)
            if len(text) > 120 and not ns.full:
                text = text[:117] + "..."
            print(f"  {k:<44} {text}")
        print("\ntensors:")
        print(f"  {'name':<36} {'type':<6} {'shape':<18} {'MB':>8}")
        total = 0
        for t in g:
            total += t.nbytes
            print(f"  {t.name:<36} {t.type_name:<6} {str(list(t.shape)):<18} {t.nbytes / 1e6:8.2f}")
        n = sum(t.n_elements for t in g)
        print(f"\n  {n / 1e6:.1f} M weights, {total / 1e6:.1f} MB, {8 * total / n:.2f} bits per weight")
    return 0


def cmd_perplexity(ns) -> int:
    from .formats.gguf import GGUFFile
    from .models import resolve_model
    from .quant.perplexity import perplexity
    from .runtime.engine import BACKENDS
    from .model import load_model
    from .tokenizer import Tokenizer

    try:
        raw = open(ns.text, "rb").read()
    except OSError as e:
        raise WebinferError(f"cannot read {ns.text}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WebinferError(f"{ns.text} is not UTF-8 text (bad byte at {e.start})") from None
    g = GGUFFile.open(resolve_model(ns.model))
    tok = Tokenizer.from_gguf_metadata(g.metadata)
    ids = tok.encode(text, add_special=False, parse_special=False)
    model = load_model(g, BACKENDS[ns.backend](), _tensor_progress(ProgressBar()))

    def show(done: int, total: int, ppl: float) -> None:
        print(f"\rwindow {done}/{total}  running PPL {ppl:.4f}", end="", file=sys.stderr, flush=True)

    r = perplexity(model, ids, ctx=ns.ctx, n_tokens=ns.n_tokens or None, progress=show, kv_dtype=ns.kv_dtype)
    print(file=sys.stderr)
    if ns.json:
        print(json.dumps({"model": str(ns.model), "text": ns.text, **r.as_dict()}))
    else:
        print(f"PPL = {r.ppl:.4f}  (mean NLL {r.mean_nll:.5f} over {r.n_predictions} predictions, "
              f"{r.n_windows} windows of {r.ctx}; text has {r.n_tokens_text} tokens; {r.seconds:.1f} s)")
    return 0


def cmd_doctor(ns) -> int:
    from .capability import choose_profile, detect, profile_names

    report = detect()
    profile = choose_profile(report, ns.profile)
    selftest = None
    if ns.selftest and report.webgpu:
        from .backends.webgpu.selftest import selftest_report
        from .devices import open_device

        selftest = selftest_report(open_device(), matvec_lanes=profile.matvec_lanes, matmul=profile.matmul)
    if ns.json:
        out = {"report": report.as_dict(), "profile": profile.as_dict()}
        if selftest is not None:
            out["selftest_ok"] = selftest[0]
        print(json.dumps(out, indent=1))
        return 0 if selftest is None or selftest[0] else 1
    print(report.format())
    print(f"\nprofile          {profile.name}: {profile.description}")
    for k, v in profile.as_dict().items():
        if k not in ("name", "description"):
            print(f"  {k:<20} {v}")
    print(f"\nprofiles: {', '.join(profile_names())} (override with --profile NAME)")
    if selftest is not None:
        print("\n" + selftest[1])
        return 0 if selftest[0] else 1
    return 0


def _tensor_progress(bar: ProgressBar):
    """Adapt a ProgressBar to load_model's per-tensor callback."""
    def on_tensor(done: int, total: int, n_done: int, n_total: int, name: str) -> None:
        bar({"loaded": done, "total": total, "tensors": n_done, "n_tensors": n_total,
             "progress": done / total if total else 1.0})
    return on_tensor


def _read_text(path: str) -> str:
    try:
        raw = open(path, "rb").read()
    except OSError as e:
        raise WebinferError(f"cannot read {path}: {e.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WebinferError(f"{path} is not UTF-8 text (bad byte at {e.start})") from None


def cmd_quantize(ns) -> int:
    from .models import resolve_model
    from .quant.imatrix import Imatrix
    from .quant.pipeline import quantize_model

    imatrix = Imatrix.load(ns.imatrix) if ns.imatrix else None
    show = sys.stderr.isatty() or "--progress" in sys.argv

    def progress(i: int, n: int, name: str) -> None:
        if show:
            print(f"\r[{i + 1}/{n}] {name:<40}", end="", file=sys.stderr, flush=True)

    r = quantize_model(resolve_model(ns.input), ns.output, ns.type, imatrix=imatrix, method=ns.method,
                       pack=not ns.no_pack, progress=progress)
    if show:
        print(file=sys.stderr)
    types = ", ".join(f"{n} {t}" for t, n in r.type_counts().items())
    print(f"{ns.output}: {r.recipe} ({r.method}), {r.file_bytes / 1e6:.1f} MB, {r.bpw:.3f} bits per weight; "
          f"tensors: {types}; {len(r.packed)} with packed rows; {r.seconds:.1f} s")
    return 0


def cmd_imatrix(ns) -> int:
    from .formats.gguf import GGUFFile
    from .models import resolve_model
    from .quant.imatrix import calibration_windows, collect_imatrix
    from .tokenizer import Tokenizer

    with GGUFFile.open(resolve_model(ns.model)) as g:
        tok = Tokenizer.from_gguf_metadata(g.metadata)
        texts = [tok.encode(_read_text(t), add_special=False, parse_special=False) for t in ns.text]
        ids = calibration_windows(texts, ctx=ns.ctx, n_chunks=ns.chunks or 1 << 30)

        def show(i: int, n: int, s: float) -> None:
            print(f"\rwindow {i}/{n}  {s:.0f} s", end="", file=sys.stderr, flush=True)

        m = collect_imatrix(g, ids, ctx=ns.ctx, with_cov=ns.cov, progress=show,
                            dataset=" + ".join(t.replace("\\", "/").rsplit("/", 1)[-1] for t in ns.text))
    print(file=sys.stderr)
    m.save(ns.output)
    print(f"{ns.output}: {len(m.sum2)} matrices, {m.chunk_count} windows of {m.chunk_size} tokens"
          + (f", {len(m.cov)} covariances" if m.cov else ""))
    return 0


# ------------------------------------------------------------------ main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="webinfer", description="Run GGUF language models with webinfer.")
    p.add_argument("--version", action="version", version=f"webinfer {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="complete a prompt, streaming the text",
                       description="Complete PROMPT (or stdin with '-') and stream the continuation.")
    g.add_argument("prompt")
    _add_model_args(g)
    _add_sampling_args(g)
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("chat", help="chat with the model using its chat template",
                       description="Interactive streaming chat; with -M, answer the given message(s) and exit.")
    c.add_argument("--message", "-M", action="append", help="a user message to answer (repeatable), non-interactive")
    c.add_argument("--system", default=None, help="system prompt")
    _add_model_args(c)
    _add_sampling_args(c)
    c.set_defaults(func=cmd_chat)

    i = sub.add_parser("info", help="print a GGUF file's metadata and tensor table")
    i.add_argument("file", nargs="?", default=None, help="GGUF file or known model name (default model if omitted)")
    i.add_argument("--full", action="store_true", help="do not abbreviate long values")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("doctor", help="what this machine offers: WebGPU adapter, features, limits, run profile")
    d.add_argument("--profile", default=None, help="show this profile instead of the one chosen")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--selftest", action="store_true", help="also check the WGSL kernels on this GPU against numpy")
    d.set_defaults(func=cmd_doctor)

    pp = sub.add_parser("perplexity", help="perplexity of a model on a text file",
                        description="Perplexity over non-overlapping windows, each from an empty cache "
                                    "(see webinfer.quant.perplexity for the exact protocol).")
    pp.add_argument("model", help="GGUF file or known model name")
    pp.add_argument("text", help="UTF-8 text file (its bytes are used as they are, line endings included)")
    pp.add_argument("--ctx", type=int, default=512, help="window length in tokens (default 512)")
    pp.add_argument("--n-tokens", type=int, default=8192, help="use the first N tokens (default 8192; 0 = all)")
    pp.add_argument("--backend", default="numpy", choices=["numpy"])
    pp.add_argument("--json", action="store_true", help="print the result as one JSON line")
    pp.add_argument("--kv-dtype", default=None, choices=["f32", "f16", "int8", "int4"],
                    help="KV cache storage (default f32)")
    pp.set_defaults(func=cmd_perplexity)

    q = sub.add_parser("quantize", help="requantize a GGUF model (types, mixes, importance matrix, GPTQ)",
                       description="Write OUT: the model of IN with its matrices quantized to TYPE (a ggml type such "
                                   "as Q4_K, or a recipe such as Q4_K_M or W4; CATEGORY=TYPE overrides may follow, "
                                   "e.g. 'Q4_K,token_embd=Q6_K').  See docs/quantization.md.")
    q.add_argument("input", help="source GGUF file or known model name")
    q.add_argument("output", help="GGUF file to write")
    q.add_argument("--type", "-t", required=True, help="type or recipe")
    q.add_argument("--imatrix", default=None, help="importance matrix from `webinfer imatrix`")
    q.add_argument("--method", default=None, choices=["rtn", "imatrix", "gptq"],
                   help="rtn (round to nearest), imatrix (weighted scale search), gptq (error feedback; "
                        "needs an imatrix collected with --cov). Default: imatrix with --imatrix, else rtn")
    q.add_argument("--no-pack", action="store_true",
                   help="never pack rows (keeps the file loadable by llama.cpp; 256-wide types then need "
                        "rows that are multiples of 256)")
    q.set_defaults(func=cmd_quantize)

    im = sub.add_parser("imatrix", help="collect an importance matrix on calibration text",
                        description="Run MODEL over TEXT in windows of --ctx tokens and store the mean squared "
                                    "input of every matrix (llama.cpp's GGUF imatrix format).")
    im.add_argument("model", help="GGUF file or known model name")
    im.add_argument("text", nargs="+", help="UTF-8 calibration text(s), windows taken in equal shares from each "
                                            "(never the evaluation text; mixing genres helps)")
    im.add_argument("-o", "--output", required=True, help="imatrix file to write (.gguf)")
    im.add_argument("--ctx", type=int, default=512, help="window length in tokens (default 512)")
    im.add_argument("--chunks", type=int, default=32, help="windows to run in all (default 32; 0 = all)")
    im.add_argument("--cov", action="store_true", help="also store full input covariances (for --method gptq; "
                                                       "about 400 MB for the default model)")
    im.set_defaults(func=cmd_imatrix)

    from .bench.cli import add_parser as add_bench_parser  # webinfer bench: engine/webinfer/bench/cli.py

    add_bench_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except WebinferError as e:
        print(f"webinfer: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
