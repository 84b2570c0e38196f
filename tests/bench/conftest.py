"""Fixtures for the benchmark tests: headless Chromium and the dashboard's server."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives headless Chromium (scripts/setup.sh installs it)")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    d = ROOT / "test-artifacts"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="module")
def chromium():
    from webinfer.bench.browser import Chromium
    from webinfer.bench.targets import browser_missing

    why = browser_missing()
    if why:
        pytest.skip(why)
    b = Chromium(webgpu=False)
    yield b
    b.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dashboard-data")


@pytest.fixture(scope="module")
def dash_server(pages):
    """The dashboard's server (web/ at /, /t/ -> a temp folder for test data), uPlot vendored."""
    from webinfer.bench import dashboard

    try:
        dashboard.vendor()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    srv = dashboard.start_server(mounts={"/t/": pages})
    yield srv.url.rstrip("/")
    srv.shutdown()
    srv.server_close()


def open_dashboard(chromium, url: str, timeout_s: float = 30) -> dict:
    chromium.get(url)
    t0 = time.monotonic()
    while True:
        state = chromium.js("window.dashboard && {ready: window.dashboard.ready, error: window.dashboard.error}")
        if state and (state["ready"] or state["error"]):
            break
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"the dashboard did not render in {timeout_s} s:\n{chromium.console_tail()}")
        time.sleep(0.1)
    assert not state["error"], state["error"]
    return chromium.js("{charts: window.dashboard.charts, flagged: window.dashboard.flagged, "
                       "recommendations: window.dashboard.recommendations}")


def png_is_blank(path: Path) -> bool:
    """True if a PNG (8-bit, as Chromium writes them) has almost no variation: decompress the image
    data and count distinct row filters + bytes; a blank page has a handful."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    return len(set(raw)) < 16


def canvas_ink(chromium) -> list[int]:
    """For every uPlot canvas on the page, the number of pixels that are neither transparent nor white."""
    return chromium.js("""[...document.querySelectorAll('.uplot canvas')].map((c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240)) n++;
        return n; })""")
