"""CI's smoke benchmark: the real harness end to end on the default model (numbers are not checked),
then the dashboard on what it measured.

About a minute: CPython numpy, webinfer in Pyodide in headless Chromium, and wllama in the same
browser, each with 1 run of 4 tokens (the "smoke" suite in data/bench.json).
"""

from __future__ import annotations

import pytest

from webinfer.bench import dashboard
from webinfer.bench.db import ResultsDB
from webinfer.bench.targets import browser_missing
from webinfer.cli import main

from .conftest import canvas_ink, open_dashboard, png_is_blank

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def smoke_db(tmp_path_factory, default_model_path):
    d = tmp_path_factory.mktemp("smoke")
    status = main(["bench", "--suite", "smoke", "--db", str(d / "smoke.sqlite"), "--report", str(d / "performance.md")])
    with ResultsDB(d / "smoke.sqlite") as db:
        records = db.records()
    return d, status, records


def test_smoke_suite_stores_complete_records(smoke_db):
    d, status, records = smoke_db
    by_target = {r["target"]: r for r in records}
    assert set(by_target) == {"cpython-numpy", "chromium-numpy", "wllama"}
    assert status == 0, [(r["target"], r["error"]) for r in records if r["status"] == "failed"]
    base = by_target["cpython-numpy"]
    assert base["status"] == "ok"
    assert {"load_s", "ttft_s", "decode_tps", "prefill_tps", "peak_rss_mb"} <= set(base["metrics"])
    assert base["extra"]["text"].startswith(" Paris")  # greedy output: the engine really ran
    for r in records:
        assert r["commit"]["sha"] and r["machine"]["id"] and r["machine"]["cpus"]
        assert r["model_sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        assert r["quant"] == "Q4_1" and r["suite_id"] == base["suite_id"]
    if browser_missing():
        assert by_target["chromium-numpy"]["status"] == "skipped"
        return
    web = by_target["chromium-numpy"]
    assert web["status"] == "ok", web["error"]
    assert {"boot_s", "load_s", "load_cached_s", "ttft_s", "decode_tps", "prefill_tps", "wasm_heap_mb"} <= set(web["metrics"])
    assert web["browser"].startswith("Chromium") and web["versions"]["pyodide"] == "0.27.7"
    assert web["capability"]["page"]["wasm"]["simd"] is True
    assert web["extra"]["loads"][1]["load"]["source"] == "cache"  # the second load came from OPFS
    assert web["extra"]["text"].startswith(" Paris")
    wl = by_target["wllama"]
    if wl["status"] != "skipped":
        assert wl["status"] == "ok", wl["error"]
        assert wl["engine"] == "wllama" and wl["metrics"]["decode_tps"]["median"] > 0
    assert "## Latest run" in (d / "performance.md").read_text()


def test_dashboard_renders_the_smoke_results(smoke_db, chromium, dash_server, pages, artifacts):
    d, _, records = smoke_db
    dashboard.export(records, pages / "smoke.json")
    s = open_dashboard(chromium, dash_server + "/dashboard/?data=/t/smoke.json")
    charts = {c["id"]: c for c in s["charts"]}
    for cid in ("decode_tps", "prefill_tps", "ttft_s", "load_s", "memory", "across"):
        assert charts[cid]["points"] > 0, f"chart {cid} is empty"
    assert all(n > 200 for n in canvas_ink(chromium))
    shot = artifacts / "dashboard-smoke.png"
    chromium.driver.set_window_size(1400, 2200)
    chromium.screenshot(shot)
    assert not png_is_blank(shot)
