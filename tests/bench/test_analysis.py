"""Regressions, ratio tables, recommendations, the generated performance page, targets and suites."""

from __future__ import annotations

import pytest

from webinfer.bench import analysis, report, targets
from webinfer.bench.record import metric, summary
from webinfer.bench.suite import target_protocol

from .synthetic import REGRESSED, history


def test_summary():
    s = summary([3.0, 1.0, 2.0], "s")
    assert s == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "values": [3.0, 1.0, 2.0], "unit": "s"}
    with pytest.raises(KeyError, match="known"):
        metric("speed", [1.0])


def test_the_planted_regression_and_nothing_else_is_flagged():
    flagged = [j for j in analysis.regressions(history(4)) if j["flagged"]]
    assert [(j["series"], j["metric"]) for j in flagged] == [REGRESSED]
    (j,) = flagged
    assert j["run_id"] == "run-3-1" and j["commit"] == "04abcdef"
    assert j["change"] == pytest.approx(-0.4, abs=0.03) and j["worse_by"] > analysis.NOISE_FACTOR * j["noise"]
    assert not [j for j in analysis.regressions(history(4, regress=False)) if j["flagged"]]


def test_noise_decides():
    # A 10 % drop is a regression when runs agree to 1 %, and is not when they spread over 30 %.
    def rec(i, values):
        return {"id": f"r{i}", "time": f"2026-01-0{i + 1}T00:00:00Z", "status": "ok", "engine": "webinfer",
                "target": "t", "model": "m", "metrics": {"decode_tps": metric("decode_tps", values)},
                "commit": {"short": f"c{i}"}}
    tight = [rec(0, [10, 10.1, 9.9]), rec(1, [10, 10.1, 9.9]), rec(2, [10, 10.1, 9.9]), rec(3, [9, 9.05, 8.95])]
    loose = [rec(0, [10, 13, 7]), rec(1, [10, 13, 7]), rec(2, [10, 13, 7]), rec(3, [9, 12, 6])]
    assert analysis.regressions(tight, flagged_only=True)
    assert not analysis.regressions(loose, flagged_only=True)
    # one earlier run shows the change but cannot call it a regression: the between-run noise is unknown
    (j,) = analysis.regressions(tight[1:2] + tight[3:], latest_only=True)
    assert j["worse"] and not j["flagged"] and "earlier run" in j["reason"]
    # lower is better for times: a slower TTFT is flagged, a faster one is an improvement
    t = [{**rec(i, [10, 10, 10]), "metrics": {"ttft_s": metric("ttft_s", [v])}} for i, v in enumerate([1, 1, 1, 2])]
    (j,) = analysis.regressions(t, latest_only=True)
    assert j["flagged"] and not j["improved"]


def test_a_machine_wide_slowdown_is_not_a_regression_of_the_target():
    recs = history(4, regress=False)
    for r in recs:  # during the last run everything, the baseline included, ran 40 % slower
        if r["suite_id"] == "suite3" and r["status"] == "ok":
            m = r["metrics"]["decode_tps"]
            r["metrics"] = {**r["metrics"], "decode_tps": {**m, "median": m["median"] * 0.6,
                                                             "min": m["min"] * 0.6, "max": m["max"] * 0.6}}
    judged = [j for j in analysis.regressions(recs, latest_only=True) if j["metric"] == "decode_tps"]
    by = {j["series"]: j for j in judged}
    assert all(not j["flagged"] for t, j in by.items() if t != "cpython-numpy")
    assert "baseline of the same run" in by["chromium-numpy"]["reason"]
    # the baseline itself has nothing to be compared with in its run: judged on its raw values
    assert by["cpython-numpy"]["flagged"] and by["cpython-numpy"]["ratio_worse"] is None


def test_compare_commits_targets_engines():
    recs = history(4)
    c = analysis.compare(recs, "01abcdef", "04abcdef")
    assert c["kind"] == "commit"
    row = next(r for r in c["rows"] if r["label"].startswith("chromium-numpy") and r["metric"] == "decode_tps")
    assert row["ratio"] == pytest.approx(0.6, abs=0.03) and row["better"] is False
    c = analysis.compare(recs, "chromium-numpy", "wllama")
    assert c["kind"] == "target" and all(r["same_suite"] for r in c["rows"])
    c = analysis.compare(recs, "webinfer", "wllama")  # wllama is a target and an engine: engine wins
    assert c["kind"] == "engine"
    assert {r["label"] for r in c["rows"]} == {"chromium-numpy vs wllama", "chromium-webgpu vs wllama"}
    text = analysis.format_compare(c)
    assert "B/A" in text and "decode_tps" in text
    with pytest.raises(KeyError):
        analysis.compare(recs, "nothing", "wllama")


def test_baseline_ratios_come_from_the_same_suite():
    recs = history(2)
    ratios = analysis.baseline_ratios(recs, "cpython-numpy")
    assert ratios["run-0-0"]["decode_tps"] == 1.0
    assert ratios["run-0-1"]["decode_tps"] == pytest.approx(6 / 30, rel=0.05)


def test_recommendations_respect_the_budget():
    recs = history(3)
    best = analysis.recommendations(recs, 1024)
    assert [(r["target"], r["quant"]) for r in best] == [("cpython-numpy", "Q4_1")]
    assert [r["target"] for r in analysis.recommendations(recs, 500)] == ["chromium-webgpu"]
    assert analysis.recommendations(recs, 10) == []


def test_report_is_generated_from_records():
    md = report.render(history(4))
    assert md.startswith("# Performance") and "GENERATED" in md
    for section in ("## How the numbers were taken", "## Latest run", "## Next to the peers", "## History",
                    "## Regressions", "## Compatibility", "## Which configuration to use"):
        assert section in md
    assert "| chromium-numpy | decode |" in md  # the planted regression
    assert "`01abcdef`" in md and "`04abcdef`" in md
    assert "llama-cpp-python is not installed" in md
    assert "No results yet" in report.render([])


def test_suites_and_targets_are_consistent():
    all_targets = targets.targets()
    cfg = targets.config()
    assert cfg["baseline"] in all_targets
    for name, s in cfg["suites"].items():
        ts, proto = targets.suite(name)
        assert [t.name for t in ts] == s["targets"]
        for k in ("runs", "decode_tokens", "warmup_tokens", "decode_prompt", "n_ctx"):
            assert k in proto
    slow = all_targets["chromium-webgpu"]
    _, full = targets.suite("full")
    assert target_protocol(full, slow)["decode_tokens"] == 16
    _, smoke = targets.suite("smoke")
    assert target_protocol(smoke, slow)["decode_tokens"] == 4  # a cap, never a raise
    with pytest.raises(Exception, match="known"):
        targets.suite("nope")


def test_unavailable_targets_say_why(monkeypatch):
    monkeypatch.setenv(targets.LLAMA_CPP_PYTHON_ENV, "/nonexistent/python")
    why = targets.unavailable(targets.targets()["llama-cpp"])
    assert "llama-cpp-python" in why


def test_runs_of_another_suite_are_another_series():
    recs = history(3, regress=False)
    smoke = {**recs[-2], "id": "smoke-run", "suite_id": "s-smoke", "time": "2026-01-09T00:00:00Z",
             "protocol": {"suite": "smoke", "decode_tokens": 4},
             "metrics": {"decode_tps": metric("decode_tps", [1.0])}}  # 4 tokens: much slower, not comparable
    assert not analysis.regressions(recs + [smoke], flagged_only=True)
    assert analysis.suite_of({"protocol": {"decode_tokens": 128}}) == "full"  # older records without a name


def test_a_targets_threads_bind_blas_in_the_measuring_process():
    from webinfer.bench.native import thread_env

    env = thread_env(1)
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["OMP_NUM_THREADS"] == "1"


def test_imported_lines_do_not_hide_the_latest_harness_run():
    recs = history(2)
    foreign = {**recs[0], "id": "imp-1", "suite_id": "imp-1", "time": "2026-02-01T00:00:00Z", "protocol": {}}
    assert {r["suite_id"] for r in analysis.latest_suite(recs + [foreign])} == {"suite1"}


def test_recommendations_choose_among_the_quantizations_of_a_model():
    base = [r for r in history(1) if r["target"] == "cpython-numpy"][0]
    big = {**base, "id": "q8", "model": "M.Q8_0", "model_title": "M", "quant": "Q8_0",
           "metrics": {"decode_tps": metric("decode_tps", [20.0]), "peak_rss_mb": metric("peak_rss_mb", [900.0])}}
    small = {**base, "id": "q4", "model": "M.Q4_0", "model_title": "M", "quant": "Q4_0",
             "metrics": {"decode_tps": metric("decode_tps", [15.0]), "peak_rss_mb": metric("peak_rss_mb", [500.0])}}
    assert [r["quant"] for r in analysis.recommendations([big, small], 1000)] == ["Q8_0"]
    assert [r["quant"] for r in analysis.recommendations([big, small], 600)] == ["Q4_0"]


def test_the_llama_cpp_runner_end_to_end_with_a_stand_in(tmp_path, monkeypatch):
    """The native peer's plumbing (interpreter choice, subprocess, JSON, record) with a fake llama_cpp."""
    import os
    import sys
    from pathlib import Path

    from webinfer.bench import native

    fake = Path(__file__).with_name("fake_llama_cpp")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(targets.LLAMA_CPP_PYTHON_ENV, sys.executable)
    assert targets.unavailable(targets.targets()["llama-cpp"]) is None
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    r = native.run_llama_cpp(targets.llama_cpp_python(), {
        "model": str(model), "runs": 2, "decode_tokens": 8, "warmup_tokens": 2, "decode_prompt": "The capital",
        "prefill_text": "x" * 100, "n_ctx": 256, "threads": 1})
    assert set(r["metrics"]) == {"load_s", "ttft_s", "decode_tps", "prefill_tps", "peak_rss_mb"}
    assert r["metrics"]["decode_tps"]["n"] == 2 and r["metrics"]["decode_tps"]["median"] > 0
    assert r["protocol"]["prefill_tokens"] == 101 and r["versions"]["llama_cpp_python"] == "0.0.0-fake"
