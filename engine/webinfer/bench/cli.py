"""``webinfer bench``: run the benchmark suite, compare, report, serve the dashboard.

    webinfer bench                          run the full suite on this machine, store it, print a table
    webinfer bench --suite quick            a shorter suite (smoke | quick | full)
    webinfer bench --targets cpython-numpy,wllama --runs 5
    webinfer bench --compare A B            ratios B/A: two commits, targets, engines or backends
    webinfer bench --report                 regenerate docs/performance.md from the database
    webinfer bench --serve                  ... then serve the dashboard (web/dashboard/)
    webinfer bench --no-run --serve         only serve the dashboard
    webinfer bench --list                   targets, whether each can run here, suites
    webinfer bench --import FILE.jsonl      add records (ours or the older per-script JSON lines)
    webinfer bench --export FILE.json       the dashboard's JSON
    webinfer bench --check                  exit 1 if a target's latest run regressed

Results go to --db (default $WEBINFER_BENCH_DB, else bench/results/webinfer.sqlite
in the checkout, whose history is committed as bench/results/runs.jsonl).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_FAILED = 1


def add_parser(sub) -> argparse.ArgumentParser:
    b = sub.add_parser("bench", help="benchmark suite, results database, comparisons and the dashboard",
                       description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--suite", default="full", help="smoke | quick | full (default full; see data/bench.json)")
    b.add_argument("--targets", default=None, help="comma-separated targets instead of the suite's")
    b.add_argument("--model", "-m", default=None, help="GGUF file or known model name (default model)")
    b.add_argument("--runs", type=int, default=None, help="timed runs per measurement (suite default)")
    b.add_argument("--decode-tokens", type=int, default=None, help="tokens per decode run (suite default)")
    b.add_argument("--prefill-chars", type=int, default=None, help="cut the prefill text to N characters")
    b.add_argument("--no-baseline", action="store_true", help="do not prepend the baseline target")
    b.add_argument("--db", default=None, help="results database (default bench/results/webinfer.sqlite)")
    b.add_argument("--no-run", action="store_true", help="do not run anything (with --report / --serve)")
    b.add_argument("--compare", nargs=2, metavar=("A", "B"), help="print ratios B/A and exit")
    b.add_argument("--report", nargs="?", const="", default=None, metavar="PATH",
                   help="write the performance page (default docs/performance.md)")
    b.add_argument("--serve", action="store_true", help="serve the dashboard when done (Ctrl-C stops)")
    b.add_argument("--port", type=int, default=8000, help="dashboard port (default 8000; 0 = any free port)")
    b.add_argument("--list", action="store_true", help="list targets and suites and exit")
    b.add_argument("--import", dest="import_", nargs="+", metavar="FILE", help="import JSON-lines files and exit")
    b.add_argument("--export", metavar="FILE", help="write the dashboard JSON and exit")
    b.add_argument("--check", action="store_true", help="exit 1 if any target's latest run is a regression")
    b.add_argument("--json", action="store_true", help="print the new records as JSON lines")
    b.set_defaults(func=cmd_bench)
    return b


def _open_db(ns):
    from .db import ResultsDB

    return ResultsDB.open(ns.db)


def cmd_list() -> int:
    from .targets import config, targets, unavailable

    print("targets:")
    for t in targets().values():
        why = unavailable(t)
        print(f"  {t.name:<16} {'ready' if not why else 'skipped'}  {t.description}")
        if why:
            print(f"  {'':<16}          ({why})")
    print("suites:")
    for name, s in config()["suites"].items():
        print(f"  {name:<8} {', '.join(s['targets'])}\n  {'':<8} {s.get('description', '')}")
    return 0


def print_suite(records: list[dict], ratios: dict) -> None:
    head = f"{'target':<16} {'status':<8} {'decode':>12} {'prefill':>12} {'TTFT ms':>9} {'load s':>7} {'mem MB':>8} {'x base':>7}"
    print(head)
    print("-" * len(head))
    for r in records:
        m = r["metrics"]
        if r["status"] != "ok":
            print(f"{r['target']:<16} {r['status']:<8} {(r.get('error') or '')[:70]}")
            continue
        from .analysis import memory_mb

        mem = memory_mb(r)
        ratio = ratios.get(r["id"], {}).get("decode_tps")
        print(f"{r['target']:<16} {'ok':<8} {m['decode_tps']['median']:>8.2f} t/s {m['prefill_tps']['median']:>8.1f} t/s"
              f" {m['ttft_s']['median'] * 1000:>9.0f} {m['load_s']['median']:>7.2f} "
              f"{(f'{mem:.0f}' if mem else '-'):>8} {(f'{ratio:.2f}' if ratio else '-'):>7}")


def cmd_bench(ns) -> int:
    from ..errors import InvalidArgumentError
    from . import analysis
    if ns.list:
        return cmd_list()
    status = 0
    with _open_db(ns) as db:
        if ns.import_:
            for f in ns.import_:
                print(f"{f}: {db.import_jsonl(f)} new records")
            return 0
        if ns.compare:
            records = db.records()
            try:
                c = analysis.compare(records, *ns.compare)
            except KeyError as e:
                raise InvalidArgumentError(f"{e.args[0]!r} is not a commit, target, engine or backend in {db.path}") from None
            except ValueError as e:
                raise InvalidArgumentError(str(e)) from None
            print(analysis.format_compare(c))
            return 0
        if ns.export:
            from .dashboard import export

            print(export(db.records(), Path(ns.export)))
            return 0
        if not ns.no_run:
            status = run(ns, db)
        records = db.records()
        if ns.report is not None:
            from .record import repo_root
            from .report import write

            path = Path(ns.report) if ns.report else (repo_root() or Path(".")) / "docs" / "performance.md"
            print(f"[bench] wrote {write(records, path)}", file=sys.stderr)
        if ns.check:
            flagged = [j for j in analysis.regressions(records, latest_only=True) if j["flagged"]]
            for j in flagged:
                print(f"REGRESSION {j['series']} {j['metric']}: {j['value']:.4g} vs recent {j['baseline']:.4g} "
                      f"(noise ±{j['noise']:.2g}, {j['change']:+.1%}) at {j['commit']}")
            if flagged:
                status = EXIT_FAILED
        if ns.serve:
            from .dashboard import serve

            serve(records, port=ns.port)
    return status


def run(ns, db) -> int:
    from ..models import resolve_model
    from . import analysis
    from .suite import run_suite
    from .targets import baseline_name, pick, suite

    targets, protocol = suite(ns.suite)
    if ns.targets:
        targets = pick([t.strip() for t in ns.targets.split(",") if t.strip()])
    for key, value in (("runs", ns.runs), ("decode_tokens", ns.decode_tokens), ("prefill_chars", ns.prefill_chars)):
        if value is not None:
            if value < 1:
                from ..errors import InvalidArgumentError

                raise InvalidArgumentError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
            protocol[key] = value
    if protocol["decode_tokens"] < 2:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError("--decode-tokens must be >= 2 (the first token belongs to the prefill)")
    # A suite changed from the command line is another protocol: its runs form their own history.
    changed = any(v is not None for v in (ns.runs, ns.decode_tokens, ns.prefill_chars))
    records = run_suite(targets, protocol, resolve_model(ns.model), db, baseline=not ns.no_baseline,
                        suite_name=ns.suite + ("-custom" if changed else ""))
    print_suite(records, analysis.baseline_ratios(records, baseline_name()))
    if ns.json:
        for r in records:
            print(json.dumps(r))
    print(f"[bench] {len(records)} records in {db.path}", file=sys.stderr)
    return EXIT_FAILED if any(r["status"] == "failed" for r in records) else 0
