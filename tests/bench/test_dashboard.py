"""The dashboard page in headless Chromium, on a test database with a planted regression."""

from __future__ import annotations

import json

import pytest

from webinfer.bench import dashboard
from webinfer.bench.db import ResultsDB

from .conftest import canvas_ink, open_dashboard, png_is_blank
from .synthetic import history

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def test_db(pages):
    with ResultsDB(pages / "test.sqlite") as db:
        for r in history(4):
            db.add(r)
        dashboard.export(db.records(), pages / "results.json")
    return pages / "results.json"


def test_vendored_uplot_matches_its_pin():
    d = dashboard.vendor()
    pins = dashboard._pinned_sha256()
    assert set(pins) == set(dashboard.VENDORED)
    for name, sha in pins.items():
        assert dashboard._sha256(d / name) == sha


def test_dashboard_renders_flags_and_drills_down(chromium, dash_server, test_db, artifacts):
    chromium.driver.set_window_size(1400, 1000)
    s = open_dashboard(chromium, dash_server + "/dashboard/?data=/t/results.json")
    charts = {c["id"]: c for c in s["charts"]}
    for cid in ("decode_tps", "prefill_tps", "ttft_s", "load_s", "load_cached_s", "memory", "across"):
        assert charts[cid]["points"] > 0, f"chart {cid} is empty"
    assert charts["decode_tps"]["series"] == 4 and charts["decode_tps"]["points"] == 16
    assert all(n > 500 for n in canvas_ink(chromium)), "a chart canvas has nothing drawn on it"

    # the planted regression, and only it, is flagged
    assert s["flagged"] == 1
    rows = chromium.js("[...document.querySelectorAll('#regressions tr.flagged')].map((r) => "
                       "[r.dataset.run, r.dataset.metric, r.cells[0].textContent])")
    assert rows == [["run-3-1", "decode_tps", "chromium-numpy"]]

    # drill-down: a regression row, then a chart point, show the full record
    chromium.driver.find_element("css selector", "#regressions tr.flagged").click()
    rec = json.loads(chromium.js("document.getElementById('record').textContent"))
    assert rec["id"] == "run-3-1" and rec["capability"]["page"]["webgpu"]["adapter"]["architecture"] == "swiftshader"
    _click_point(chromium, "decode_tps", series="cpython-numpy", index=0)
    rec = json.loads(chromium.js("document.getElementById('record').textContent"))
    assert rec["target"] == "cpython-numpy" and rec["commit"]["short"] == "01abcdef"

    # compatibility matrix: statuses per place, features from the capability reports
    compat = chromium.js("[...document.querySelectorAll('#compat td.ok, #compat td.skipped')].map((c) => c.textContent)")
    assert compat.count("ok") == 4 and compat.count("skipped") == 1
    assert "swiftshader" in chromium.js("document.getElementById('features').textContent")

    # recommendations follow the budget
    assert s["recommendations"] == 1
    chromium.js("(() => { const b = document.getElementById('f-budget'); b.value = 10;"
                " b.dispatchEvent(new Event('input')); })()")
    assert "nothing measured fits" in chromium.js("document.getElementById('recommendations').textContent")

    # the ratio view redraws every chart from the same-run baseline ratios
    chromium.driver.find_element("css selector", "#f-ratio").click()
    assert "x baseline" in chromium.js("document.querySelector('#chart-decode_tps .u-title').textContent")

    shot = artifacts / "dashboard.png"
    chromium.driver.find_element("css selector", "#f-ratio").click()
    chromium.driver.set_window_size(1400, 2600)
    chromium.screenshot(shot)
    assert shot.stat().st_size > 20_000 and not png_is_blank(shot)


def _click_point(chromium, chart: str, *, series: str, index: int) -> None:
    """Move the mouse onto a data point of a uPlot chart and click it (as a person would)."""
    from selenium.webdriver.common.action_chains import ActionChains

    pos = chromium.js(f"""(() => {{
        const u = window.dashboard.plots().find((p) => p._webinfer && p._webinfer.spec.id === {json.dumps(chart)});
        const si = u.series.findIndex((s) => s.label === {json.dumps(series)});
        const xs = u.data[0], ys = u.data[si];
        let k = -1, seen = -1;
        for (let i = 0; i < xs.length; i++) if (ys[i] != null && ++seen === {index}) {{ k = i; break; }}
        const r = u.over.getBoundingClientRect();
        return {{x: u.valToPos(xs[k], 'x'), y: u.valToPos(ys[k], 'y'), w: r.width, h: r.height}};
    }})()""")
    over = chromium.driver.find_element("css selector", f"#chart-{chart} .u-over")
    # Selenium offsets are from the element's centre.
    ActionChains(chromium.driver).move_to_element_with_offset(
        over, int(pos["x"] - pos["w"] / 2) + 1, int(pos["y"] - pos["h"] / 2)).click().perform()


def test_dashboard_says_what_is_missing(chromium, dash_server):
    chromium.get(dash_server + "/dashboard/?data=/t/nothing.json")
    chromium.driver.implicitly_wait(0)
    import time

    t0 = time.monotonic()
    while not chromium.js("window.dashboard && window.dashboard.error") and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    assert "webinfer bench --serve" in chromium.js("window.dashboard.error")
