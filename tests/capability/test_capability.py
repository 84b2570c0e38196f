"""Capability report and run profiles: detection on this machine, the rule table, overrides, doctor."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from webinfer.capability import CapabilityReport, Profile, choose_profile, detect, get_profile, profile_names
from webinfer.errors import InvalidArgumentError

UA_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
UA_CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
UA_SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15"
UA_ANDROID = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36"


def _report(**kw) -> CapabilityReport:
    r = CapabilityReport(webgpu=True, adapter={"vendor": "x", "is_fallback": False})
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def _browser(ua: str, **kw) -> CapabilityReport:
    from webinfer.capability.report import _browser_name

    return _report(environment="browser", user_agent=ua, browser=_browser_name(ua),
                   mobile="mobi" in ua.lower() or "android" in ua.lower(), **kw)


@pytest.mark.parametrize("report,name", [
    (_report(webgpu=False), "no-webgpu"),
    (_browser(UA_FIREFOX, webgpu=False), "wasm-cpu"),
    (_report(adapter={"vendor": "llvmpipe", "is_fallback": True}), "software-adapter"),
    (_browser(UA_CHROME, adapter={"vendor": "google", "architecture": "swiftshader", "is_fallback": True}),
     "software-adapter"),
    (_browser(UA_CHROME), "chromium-desktop"),
    (_browser(UA_FIREFOX), "firefox"),
    (_browser(UA_SAFARI), "safari"),
    (_browser(UA_ANDROID), "mobile"),
    (_report(), "native-gpu"),
])
def test_rules_pick_the_profile(report, name):
    assert choose_profile(report).name == name


def test_every_profile_is_complete_and_sane():
    for name in profile_names():
        p = get_profile(name)
        assert p.description and p.backend in ("webgpu", "wasm", "numpy") and p.matmul in ("tiled", "rowwise")
        assert p.readback_batch >= 1 and p.attn_splits >= 1 and 256 % p.matvec_lanes == 0
    assert get_profile("firefox").readback_batch > 1          # slow readback: batch the steps


def test_overrides_are_checked():
    p = choose_profile(_report(), readback_batch=4)
    assert isinstance(p, Profile) and p.name == "native-gpu" and p.readback_batch == 4
    assert choose_profile(_report(), "firefox").name == "firefox"
    with pytest.raises(InvalidArgumentError, match="valid:"):
        choose_profile(_report(), readback_batches=4)
    with pytest.raises(InvalidArgumentError, match="known:"):
        get_profile("netscape")
    with pytest.raises(InvalidArgumentError):
        get_profile("firefox").with_overrides(attn_splits=0)


def test_detect_here_and_doctor():
    r = detect()
    json.loads(r.to_json())
    assert r.environment == "cpython"
    if not r.webgpu:
        assert r.webgpu_error and choose_profile(r).name == "no-webgpu"
        return
    assert r.limits["maxStorageBufferBindingSize"] > 0 and r.adapter["vendor"] is not None
    out = subprocess.run([sys.executable, "-m", "webinfer", "doctor"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "webgpu           yes" in out.stdout and f"profile          {choose_profile(r).name}" in out.stdout
    js = subprocess.run([sys.executable, "-m", "webinfer", "doctor", "--json", "--profile", "firefox"],
                        capture_output=True, text=True, timeout=120)
    assert json.loads(js.stdout)["profile"]["name"] == "firefox"
