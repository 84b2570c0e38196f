"""Headless Chromium through Selenium, set up the one way that works on a closed network.

Used by the browser tests, bench/bench_browser.py and ``./dev chat``.
Flags (see the design notes on running offline): a fresh profile per browser,
no background networking (Chromium would flood the closed network with
refused connections), no sandbox (we may run as root).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

CHROMIUM = os.environ.get("WEBINFER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WEBINFER_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1000,900"]


class Browser:
    """One headless Chromium with its own throw-away profile; ``quit()`` removes both."""

    def __init__(self, *, extra_flags: tuple[str, ...] = (), script_timeout_s: float = 600):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="webinfer-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for f in [*FLAGS, *extra_flags, f"--user-data-dir={self.profile}"]:
            opts.add_argument(f)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_script_timeout(script_timeout_s)

    def get(self, url: str) -> None:
        self.driver.get(url)

    def run(self, body: str, *args, timeout_s: float = 600, poll_s: float = 0.05):
        """Run an async JS function body (``await`` allowed, ``args`` as ``args[i]``); return its value.

        The promise is started, then polled: WebDriver's own script timeout and
        its HTTP client's 120 s read timeout never cut a long model load short.
        A thrown error comes back as a Python :class:`JSError` with the JS
        ``name``, message and fields (``status``, ``offset``, ...).
        """
        self._runs = getattr(self, "_runs", 0) + 1
        slot = f"__webinfer_run_{self._runs}"
        self.driver.execute_script(
            "const args = Array.from(arguments); const slot = args.shift();\n"
            "window[slot] = null;\n"
            "(async () => {\n" + body + "\n})().then("
            "(v) => { window[slot] = {ok: true, value: v === undefined ? null : v}; },\n"
            "(e) => { let fields = {}; try { fields = JSON.parse(JSON.stringify(e)); } catch {}\n"
            "  window[slot] = {ok: false, name: e && e.name, message: String(e && e.message || e), fields}; });",
            slot, *args)
        t0 = time.monotonic()
        while True:
            r = self.driver.execute_script(f"const r = window.{slot}; if (r) delete window.{slot}; return r;")
            if r:
                break
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"script still running after {timeout_s} s; console:\n" + self.console_tail(80))
            time.sleep(poll_s)
        if not r["ok"]:
            raise JSError(r.get("name") or "Error", r.get("message") or "", r.get("fields") or {})
        return r["value"]

    def wait_for(self, expr: str, *, timeout_s: float = 300, poll_s: float = 0.2):
        """Poll a JS expression until it is truthy; return its value."""
        t0 = time.monotonic()
        while True:
            v = self.driver.execute_script(f"return ({expr});")
            if v:
                return v
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"{expr} still falsy after {timeout_s} s; console:\n" + self.console_tail())
            time.sleep(poll_s)

    def console_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(e["message"][:500] for e in self.driver.get_log("browser")[-n:])
        except Exception as e:  # noqa: BLE001
            return f"(no console: {e})"

    def cdp(self, cmd: str, params: dict | None = None):
        return self.driver.execute_cdp_cmd(cmd, params or {})

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


class JSError(Exception):
    def __init__(self, name: str, message: str, fields: dict):
        super().__init__(f"{name}: {message}")
        self.name, self.message, self.fields = name, message, fields


def pretty(v) -> str:
    return json.dumps(v, indent=1, default=str)
