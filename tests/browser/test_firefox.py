"""The script-tag API end to end in Firefox ESR (Debian), over WebDriver BiDi with puppeteer-core.

Debian ships Firefox ESR but no geckodriver, so Selenium cannot drive it;
Firefox speaks WebDriver BiDi itself and puppeteer-core (npm, pinned in
tests/browser/firefox/package-lock.json, installed by scripts/setup.sh) talks
BiDi.  The checks mirror the Chromium ones: progress, greedy " Paris",
streaming, abort, an argument error, chat, and the second load from OPFS.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .helpers import API_PAGE, ROOT

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
DRIVER = ROOT / "tests" / "browser" / "firefox"


def test_script_tag_api_in_firefox(web_server, pages):
    if not shutil.which("firefox-esr") or not (DRIVER / "node_modules" / "puppeteer-core").exists():
        pytest.skip("Firefox ESR or puppeteer-core missing: run scripts/setup.sh")
    (pages / "api-firefox.html").write_text(API_PAGE)
    r = subprocess.run(["node", str(DRIVER / "e2e.mjs"), web_server.url + "t/api-firefox.html", FIREFOX],
                       capture_output=True, text=True, timeout=600, cwd=DRIVER)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in out, out.get("error", "") + r.stderr[-2000:]
    assert "Firefox/" in out["userAgent"]
    assert "".join(out["pieces"]).startswith(" Paris") and len(out["pieces"]) >= 2
    assert {"boot", "tensors", "ready"} <= set(out["phases"])
    assert out["load"]["network_bytes"] == out["load"]["file_bytes"] and out["capabilities"]["opfs"]
    assert out["abortError"] == "AbortError"
    assert out["invalidError"]["name"] == "InvalidArgumentError"
    assert "Paris" in out["chat"]
    assert out["second"]["source"] == "cache" and out["second"]["network_bytes"] == 0
