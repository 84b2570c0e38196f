"""Running a suite: every target of one invocation, the baseline first, each stored as a record.

A target that cannot run here is stored as "skipped" with the reason, one that
breaks as "failed" with the error: the compatibility matrix is made of both.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Callable

from . import native
from .db import ResultsDB
from .record import commit_info, machine_info, model_description, new_id, new_record, python_versions, repo_root
from .targets import Target, baseline_name, llama_cpp_python, pick, unavailable

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def target_protocol(base: dict, target: Target) -> dict:
    """The suite's protocol with the target's caps applied (slow targets decode fewer tokens, fewer runs)."""
    p = dict(base)
    for k, cap in target.protocol.items():
        p[k] = min(p[k], cap) if isinstance(cap, (int, float)) and isinstance(p.get(k), (int, float)) else cap
    return p


def resolve_protocol(protocol: dict) -> dict:
    """Read the prefill text (bench/prompt256.txt, optionally cut to ``prefill_chars``)."""
    p = dict(protocol)
    if "prefill_text" not in p:
        root = repo_root()
        path = Path(p["prefill_file"]) if root is None else root / p["prefill_file"]
        text = path.read_text(encoding="utf-8")
        if p.get("prefill_chars"):
            text = text[: int(p["prefill_chars"])]
        p["prefill_text"] = text
    return p


def run_suite(targets: list[Target], protocol: dict, model_path: Path, db: ResultsDB | None, *,
              baseline: bool = True, suite_name: str = "custom", log: Log = _stderr) -> list[dict]:
    """Measure ``targets`` (the baseline target prepended unless present or ``baseline`` is False).

    ``suite_name`` is stored in each record's protocol: runs are compared only within a suite."""
    if baseline and baseline_name() not in [t.name for t in targets]:
        targets = pick([baseline_name()]) + list(targets)
    protocol = resolve_protocol(protocol)
    suite_id = new_id()
    commit, machine = commit_info(), machine_info()
    model = model_description(Path(model_path))
    log(f"[bench] suite {suite_id[:8]} at {commit['short']}{' (dirty)' if commit['dirty'] else ''}: "
        f"{len(targets)} targets on {model['name']} ({model['quant']}), {machine.get('cpu')} x{machine.get('cpus')}")
    server = None
    records = []
    try:
        for t in targets:
            p = target_protocol(protocol, t)
            stored_protocol = {k: v for k, v in p.items() if k != "prefill_text"} | {"suite": suite_name}
            rec = new_record(suite_id=suite_id, target=t.name, engine=t.engine, runtime=t.runtime, backend=t.backend,
                             model=model, protocol=stored_protocol, commit=commit, machine=machine,
                             threads=t.threads)
            rec["extra"]["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]  # a busy machine shows here
            why = unavailable(t)
            if why:
                rec.update(status="skipped", error=why)
                log(f"[bench] {t.name}: skipped: {why}")
            else:
                log(f"[bench] {t.name}: {t.description}")
                try:
                    if t.in_browser and server is None:
                        from .browser import PageServer

                        server = PageServer()
                    result = _measure(t, p, model, server, log)
                    if "skipped" in result:
                        rec.update(status="skipped", error=result["skipped"])
                        log(f"[bench] {t.name}: skipped: {result['skipped']}")
                    else:
                        rec["status"] = "ok"
                    for k in ("metrics", "capability", "versions"):
                        if k in result:
                            rec[k] = result[k]
                    rec["extra"].update(result.get("extra") or {})
                    rec["protocol"].update(result.get("protocol") or {})
                    for k in ("browser", "engine_version", "threads", "profile"):
                        if result.get(k) is not None:
                            rec[k] = result[k]
                except Exception as e:  # noqa: BLE001 - one broken target must not lose the others
                    rec.update(status="failed", error=f"{type(e).__name__}: {e}"[:2000])
                    rec["extra"]["traceback"] = traceback.format_exc()[-4000:]
                    log(f"[bench] {t.name}: FAILED: {rec['error'][:300]}")
            if t.engine == "webinfer" and not rec.get("engine_version"):
                rec["engine_version"] = python_versions()["webinfer"]
            if rec["status"] == "ok":
                m = rec["metrics"]
                log(f"[bench] {t.name}: decode {m['decode_tps']['median']:.1f} tok/s, prefill "
                    f"{m['prefill_tps']['median']:.1f} tok/s, TTFT {m['ttft_s']['median'] * 1000:.0f} ms, "
                    f"load {m['load_s']['median']:.2f} s")
            if db is not None:
                db.add(rec)
            records.append(rec)
    finally:
        if server is not None:
            server.close()
    return records


def _measure(t: Target, p: dict, model: dict, server, log: Log) -> dict:
    opts = {"model": model["path"], "backend": t.backend, "runs": p["runs"], "decode_tokens": p["decode_tokens"],
            "warmup_tokens": p["warmup_tokens"], "decode_prompt": p["decode_prompt"],
            "prefill_text": p["prefill_text"], "n_ctx": p["n_ctx"], "threads": t.threads}
    if t.runtime == "cpython" and t.engine == "webinfer":
        r = native.run_webinfer(opts)
        loaded = str(r.get("backend_loaded") or t.backend)  # e.g. "webgpu (llvmpipe ...)" or "numpy"
        if loaded.split()[0] != t.backend:
            return {"skipped": f"webinfer fell back to {r['backend_loaded']!r} (no {t.backend} device here?)",
                    "capability": r.get("capability")}
        return r
    if t.engine == "llama.cpp":
        return native.run_llama_cpp(llama_cpp_python(), opts)
    if t.in_browser:
        from . import browser

        url = browser.model_url_for(Path(model["path"]))
        on_log = lambda line: log(f"[bench]   {line}")  # noqa: E731
        if t.engine == "wllama":
            return browser.run_wllama(server, t, p, url, on_log)
        return browser.run_webinfer(server, t, p, url, on_log)
    raise ValueError(f"no runner for target {t.name!r} ({t.engine} on {t.runtime})")
