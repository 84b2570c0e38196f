"""Reading the results: series over time, noise, regressions, ratio tables, recommendations.

A *series* is one configuration measured again and again: the same engine,
target, model, quant, profile and threads, on the same machine
(record.machine_id), with the same protocol (suite and token counts: a
4-token smoke decode is not compared with a 128-token one).

Noise and regressions. A run's own noise is half its spread ((max - min) / 2
over its runs). The recent history of a series is its last
:data:`HISTORY_WINDOW` ok runs before the one judged; its baseline is the
median of their medians. The noise allowed is the largest of: the run's own
noise, the history's typical own noise (median), the spread of the history's
medians (1.4826 x MAD, a robust standard deviation), and
:data:`MIN_RELATIVE_NOISE` of the baseline. A metric is worse when it is
below (above, for times and memory) the baseline by more than
:data:`NOISE_FACTOR` times that noise.

On a shared machine other work comes and goes between runs, and one earlier
run says nothing about that. So a metric is *flagged* only when
- the series has at least :data:`MIN_HISTORY_TO_FLAG` earlier runs (their
  medians' spread is the between-run noise), and
- it is worse both as a raw value and as a ratio to the baseline target of its
  own invocation (where that ratio exists): a machine that was busier during
  the whole run slows the baseline too, and is not a regression of the target.
Judgments with less history are kept (``flagged`` false, ``reason`` says why).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Iterable

from .record import MEMORY_METRICS, METRICS

HISTORY_WINDOW = 5
MIN_HISTORY = 1           # one earlier run is enough to show a change ...
MIN_HISTORY_TO_FLAG = 3   # ... three are needed to know the between-run noise and call it a regression
NOISE_FACTOR = 2.0        # worse than the baseline by more than twice the measured noise
MIN_RELATIVE_NOISE = 0.03  # never call a 3 % change a regression: the 2-core machine swings that much
JUDGED_METRICS = ("decode_tps", "prefill_tps", "ttft_s", "load_s", "load_cached_s",
                  "peak_rss_mb", "wasm_heap_mb", "gpu_buffer_mb")


def suite_of(rec: dict) -> str:
    """The suite a record was measured in; older records (no name) by their decode length."""
    p = rec.get("protocol") or {}
    if p.get("suite"):
        return p["suite"]
    return "full" if (p.get("decode_tokens") or 0) >= 64 else "other"


def series_key(rec: dict) -> tuple:
    p = rec.get("protocol") or {}
    return (rec.get("engine"), rec.get("target"), rec.get("model"), rec.get("quant"), rec.get("profile"),
            rec.get("threads"), (rec.get("machine") or {}).get("id"), suite_of(rec),
            p.get("decode_tokens"), p.get("prefill_tokens"))


def series_name(rec: dict) -> str:
    name = rec.get("target") or "?"
    if rec.get("profile"):
        name += f" [{rec['profile']}]"
    return name


def own_noise(m: dict) -> float:
    return (m.get("max", m["median"]) - m.get("min", m["median"])) / 2


def ok(records: Iterable[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "ok"]


def by_series(records: Iterable[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in sorted(ok(records), key=lambda r: (r["time"], r["id"])):
        out[series_key(r)].append(r)
    return out


# ------------------------------------------------------------------ regressions

def _worse(hist: list[dict], m: dict, name: str) -> tuple[float, float, float]:
    """(baseline, noise, worse_by) of summary ``m`` against the summaries ``hist`` (module docstring)."""
    medians = [h["median"] for h in hist]
    base = statistics.median(medians)
    mad = statistics.median([abs(x - base) for x in medians]) * 1.4826 if len(medians) > 1 else 0.0
    noise = max(own_noise(m), statistics.median([own_noise(h) for h in hist]), mad, MIN_RELATIVE_NOISE * abs(base))
    higher_better = METRICS.get(name, ("", True))[1]
    return base, noise, (base - m["median"]) if higher_better else (m["median"] - base)


def _ratio_summary(rec: dict, name: str, ratios: dict) -> dict | None:
    r = ratios.get(rec["id"], {}).get(name)
    if r is None:
        return None
    m = rec["metrics"][name]
    scale = r / m["median"] if m["median"] else 0.0  # the baseline's value is median / r
    return {"median": r, "min": m.get("min", m["median"]) * scale, "max": m.get("max", m["median"]) * scale}


def judge(history: list[dict], current: dict, name: str, ratios: dict | None = None,
          baseline: str | None = None) -> dict | None:
    """Compare ``current``'s metric ``name`` with the history of its series; None if not comparable.
    ``ratios``: :func:`baseline_ratios` of the records (target ``baseline``), for the same-invocation check."""
    m = current["metrics"].get(name)
    hist_recs = [h for h in history if name in h.get("metrics", {})][-HISTORY_WINDOW:]
    if m is None or len(hist_recs) < MIN_HISTORY:
        return None
    base, noise, worse_by = _worse([h["metrics"][name] for h in hist_recs], m, name)
    worse = worse_by > NOISE_FACTOR * noise
    reason = None
    if worse and len(hist_recs) < MIN_HISTORY_TO_FLAG:
        reason = f"only {len(hist_recs)} earlier run(s): the between-run noise is unknown"
    ratio_worse = None
    if ratios:
        cur_r = _ratio_summary(current, name, ratios)
        hist_r = [x for x in (_ratio_summary(h, name, ratios) for h in hist_recs) if x is not None]
        if cur_r is not None and len(hist_r) == len(hist_recs) and current["target"] != baseline:
            _, rnoise, rworse = _worse(hist_r, cur_r, name)
            ratio_worse = rworse > NOISE_FACTOR * rnoise
            if worse and not ratio_worse and reason is None:
                reason = "the baseline of the same run slowed down as much: the machine, not the target"
    return {
        "run_id": current["id"], "metric": name, "value": m["median"], "baseline": base,
        "noise": noise, "change": (m["median"] - base) / base if base else 0.0,
        "worse_by": worse_by, "worse": worse, "ratio_worse": ratio_worse,
        "flagged": worse and reason is None, "reason": reason,
        "improved": -worse_by > NOISE_FACTOR * noise, "history": len(hist_recs),
        "series": series_name(current), "model": current.get("model"),
        "commit": (current.get("commit") or {}).get("short"), "time": current["time"],
    }


def regressions(records: Iterable[dict], *, flagged_only: bool = False, latest_only: bool = False,
                baseline: str | None = None) -> list[dict]:
    """Every (run, metric) judged against its series' recent history (see the module docstring)."""
    from .targets import baseline_name

    records = list(records)
    baseline = baseline or baseline_name()
    ratios = baseline_ratios(records, baseline)
    out = []
    for runs in by_series(records).values():
        start = len(runs) - 1 if latest_only else 1
        for i in range(max(start, 1), len(runs)):
            for name in JUDGED_METRICS:
                j = judge(runs[:i], runs[i], name, ratios, baseline)
                if j is not None and (j["flagged"] or not flagged_only):
                    out.append(j)
    return out


# ------------------------------------------------------------------ comparisons

def from_harness(rec: dict) -> bool:
    """Made by ``webinfer bench`` (not imported from another script's JSON lines)."""
    return bool((rec.get("protocol") or {}).get("suite"))


def latest_suite(records: list[dict]) -> list[dict]:
    """The records of the most recent suite that has an ok run (a harness suite where there is one)."""
    good = [r for r in ok(records) if from_harness(r)] or ok(records)
    if not good:
        return []
    last = max(good, key=lambda r: r["time"])["suite_id"]
    return [r for r in records if r["suite_id"] == last]


def baseline_ratios(records: list[dict], baseline: str) -> dict[str, dict[str, float]]:
    """run id -> metric -> value / the same suite's baseline target's value."""
    out: dict[str, dict[str, float]] = {}
    by_suite: dict[str, list[dict]] = defaultdict(list)
    for r in ok(records):
        by_suite[r.get("suite_id")].append(r)
    for runs in by_suite.values():
        base = next((r for r in runs if r["target"] == baseline), None)
        if base is None:
            continue
        for r in runs:
            out[r["id"]] = {k: m["median"] / base["metrics"][k]["median"]
                            for k, m in r["metrics"].items()
                            if k in base["metrics"] and base["metrics"][k]["median"]}
    return out


KINDS = ("target", "engine", "backend", "commit")


def kinds(records: list[dict], key: str) -> list[str]:
    """What ``key`` can name in these records, in :data:`KINDS` order ("wllama" is a target and an engine)."""
    out = [f for f in KINDS[:3] if any(r.get(f) == key for r in records)]
    if any(((r.get("commit") or {}).get("short") or "").startswith(key[:8]) or
           ((r.get("commit") or {}).get("sha") or "").startswith(key) for r in records):
        out.append("commit")
    if not out:
        raise KeyError(key)
    return out


def _pick(records: list[dict], field: str, key: str) -> list[dict]:
    if field == "commit":
        return [r for r in records if ((r.get("commit") or {}).get("sha") or "").startswith(key)
                or ((r.get("commit") or {}).get("short") or "").startswith(key[:8])]
    return [r for r in records if r.get(field) == key]


DEFAULT_COMPARE = ("decode_tps", "prefill_tps", "ttft_s", "load_s", "load_cached_s", "peak_rss_mb", "wasm_heap_mb",
                   "gpu_buffer_mb")


def compare(records: list[dict], a: str, b: str, metrics: Iterable[str] = DEFAULT_COMPARE) -> dict:
    """Ratios B / A. Two commits: each target's latest ok run at each commit. Two targets, engines or
    backends: the latest suite that ran both (so the ratio comes from one invocation), else the latest
    runs of each; every A configuration against every B one of the same model (the same runtime first).
    Returns ``{kind, a, b, rows: [{label, metric, a, b, ratio, better, same_suite}]}``."""
    good = ok(records)
    ka, kb = kinds(good, a), kinds(good, b)
    common = [k for k in ka if k in kb]
    if not common:
        raise ValueError(f"cannot compare a {ka[0]} ({a}) with a {kb[0]} ({b})")
    kind = common[0]
    pairs: list[tuple[str, dict, dict]] = []
    if kind == "commit":
        latest = lambda rs: {(r["target"], r["model"], (r.get("machine") or {}).get("id")): r  # noqa: E731
                             for r in sorted(rs, key=lambda r: r["time"])}
        la, lb = latest(_pick(good, kind, a)), latest(_pick(good, kind, b))
        pairs = [(f"{k[0]} ({k[1]})", la[k], lb[k]) for k in la if k in lb]
    else:
        ra, rb = _pick(good, kind, a), _pick(good, kind, b)
        shared = [s for s in dict.fromkeys(r["suite_id"] for r in sorted(rb, key=lambda r: r["time"]))
                  if any(x["suite_id"] == s for x in ra)]
        if shared:
            ra = [r for r in ra if r["suite_id"] == shared[-1]]
            rb = [r for r in rb if r["suite_id"] == shared[-1]]
        last = lambda rs: {(r["target"], r["model"]): r for r in sorted(rs, key=lambda r: r["time"])}  # noqa: E731
        xa, xb = list(last(ra).values()), list(last(rb).values())
        cand = [(x, y) for x in xa for y in xb if x["model"] == y["model"] and x["target"] != y["target"]]
        same_rt = [(x, y) for x, y in cand if x["runtime"] == y["runtime"]]
        pairs = [(f"{x['target']} vs {y['target']}", x, y) for x, y in (same_rt or cand)]
    rows = []
    for label, x, y in pairs:
        for name in metrics:
            if name in x["metrics"] and name in y["metrics"]:
                va, vb = x["metrics"][name]["median"], y["metrics"][name]["median"]
                ratio = vb / va if va else float("nan")
                higher_better = METRICS[name][1]
                clear = abs(ratio - 1) > MIN_RELATIVE_NOISE
                rows.append({"label": label, "metric": name, "a": va, "b": vb, "ratio": ratio,
                             "better": ((ratio > 1) == higher_better) if clear else None,
                             "same_suite": x["suite_id"] == y["suite_id"]})
    return {"kind": kind, "a": a, "b": b, "rows": rows}


UNIT_SHORT = {"tok/s": "t/s", "s": "s", "MB": "MB"}


def format_compare(c: dict) -> str:
    if not c["rows"]:
        return f"nothing to compare: no configuration was measured for both {c['a']} and {c['b']}"
    w = max(len(r["label"]) for r in c["rows"])
    head = f"{'configuration':<{w}}  {'metric':<13} {'A':>12} {'B':>12} {'B/A':>7}"
    lines = [f"{c['kind']}s: A = {c['a']}, B = {c['b']}", head, "-" * len(head)]
    for r in c["rows"]:
        unit = UNIT_SHORT.get(METRICS[r["metric"]][0], "")
        mark = "" if r["better"] is None else ("  B better" if r["better"] else "  B worse")
        lines.append(f"{r['label']:<{w}}  {r['metric']:<13} {r['a']:>8.4g} {unit:<3} {r['b']:>8.4g} {unit:<3}"
                     f" {r['ratio']:>7.3f}{mark}")
    if not all(r["same_suite"] for r in c["rows"]):
        lines.append("(some pairs come from different invocations: their ratios carry the machine's noise)")
    lines.append(f"(B better / worse: beyond {MIN_RELATIVE_NOISE:.0%}; tokens/s higher is better, times and memory lower)")
    return "\n".join(lines)


# ------------------------------------------------------------------ recommendations

def memory_mb(rec: dict) -> float | None:
    """What the configuration needed: GPU buffers, else the WASM heap, else peak RSS."""
    for name in MEMORY_METRICS:
        if name in rec.get("metrics", {}):
            return rec["metrics"][name]["median"]
    return None


def model_family(rec: dict) -> str:
    """What the quantizations of one model share: the GGUF's general.name, else the file's stem."""
    return rec.get("model_title") or rec.get("model") or "?"


def recommendations(records: list[dict], budget_mb: float, metric: str = "decode_tps") -> list[dict]:
    """Per model (all its quantizations together) and machine: the fastest webinfer configuration
    (target, profile, quant) whose memory fits ``budget_mb``, from each series' latest ok run."""
    latest: dict[tuple, dict] = {}
    for r in sorted(ok(records), key=lambda r: r["time"]):
        if r.get("engine") == "webinfer" and metric in r["metrics"]:
            latest[series_key(r)] = r
    best: dict[tuple, dict] = {}
    for r in latest.values():
        mem = memory_mb(r)
        if mem is not None and mem > budget_mb:
            continue
        k = (model_family(r), (r.get("machine") or {}).get("id"))
        if k not in best or r["metrics"][metric]["median"] > best[k]["metrics"][metric]["median"]:
            best[k] = r
    return [{"model": model_family(r), "file": r["model"], "target": r["target"], "backend": r["backend"], "runtime": r["runtime"],
             "profile": r.get("profile"), "quant": r.get("quant"), "value": r["metrics"][metric]["median"],
             "memory_mb": memory_mb(r), "run_id": r["id"]} for r in best.values()]
