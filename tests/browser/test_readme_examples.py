"""The README's web page example works as written (headless Chromium), and the JS build is current."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

import webinfer

from .helpers import ROOT


def readme_block(lang: str, after: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(after):]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def test_js_build_is_current_and_versions_agree():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_web.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    src = (ROOT / "web" / "webinfer.mjs").read_text()
    assert f'VERSION = "{webinfer.__version__}"' in src
    assets = json.loads((ROOT / "scripts" / "assets.json").read_text())
    assert f'PYODIDE_VERSION = "{assets["pyodide"]["dist"].split("/")[1]}"' in src


@pytest.mark.browser
@pytest.mark.model
@pytest.mark.slow
def test_readme_web_page(chrome, web_server, pages):
    html = readme_block("html", "## In a web page")
    assert len(html.strip().splitlines()) <= 13
    (pages / "readme.html").write_text(html)
    chrome.get(web_server.url + "t/readme.html")
    t0, last, text = time.monotonic(), None, ""
    while time.monotonic() - t0 < 300:
        text = chrome.driver.execute_script("return document.getElementById('out').textContent")
        if text.startswith("The capital of France is Paris") and text == last:
            break  # finished: the text stopped growing
        last = text
        time.sleep(2)
    assert text.startswith("The capital of France is Paris"), text + "\n" + chrome.console_tail()
