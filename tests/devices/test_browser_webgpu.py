"""The browser device: navigator.gpu through Pyodide's FFI, in headless Chromium (SwiftShader).

One page boots Pyodide (the local dist), installs the freshly built wheel,
fetches the default model into Pyodide's file system and runs, in Python
inside the page: the kernel self-test on SwiftShader, then the Engine on the
WebGPU backend, greedy, 32 tokens.  They must equal the numpy backend's tokens
(computed here in CPython), and the steady-state decode must make one
Python-to-JS call (one submit) per token with no Python-side encoding.

Self-contained on purpose (scripts/serve.py and Selenium only), so it does
not depend on the browser runtime's worker protocol.  About a minute here:
SwiftShader runs WGSL at 1-2 GFLOP/s.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MODEL_URL = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-unsafe-webgpu"]
PAGE = """<!doctype html><meta charset="utf-8"><script src="/pyodide/pyodide.js"></script><script>
window.boot = async (wheel, model) => {
  const py = await loadPyodide({indexURL: "/pyodide/"});
  await py.loadPackage(["numpy", "micropip"]);
  await py.pyimport("micropip").install(wheel, {deps: false});
  const bytes = new Uint8Array(await (await fetch(model)).arrayBuffer());
  py.FS.writeFile("/model.gguf", bytes);
  window.py = py;
  return "ok";
};
</script>"""

IN_PAGE = """
import json
from webinfer.runtime.engine import Engine
from webinfer.backends.webgpu.selftest import run_selftest
from webinfer.capability import detect

e = Engine.load("/model.gguf", backend="webgpu", n_ctx=256)
pm = e.model
report = detect(pm.device)
checks = run_selftest(pm.device, matvec_lanes=pm.profile.matvec_lanes, matmul=pm.profile.matmul)
stream = e.stream("The capital of France is", max_tokens=32, temperature=0, ignore_eos=True)
tokens = [next(stream).token_id for _ in range(4)]
before = pm.device.stats.snapshot()
tokens += [c.token_id for c in stream if c.token_id is not None]
d = pm.device.stats - before
json.dumps({"backend": e.backend_name, "profile": pm.profile.name, "adapter": report.adapter,
            "features": report.features, "jspi": report.jspi,
            "failed": [str(c) for c in checks if not c.ok], "n_checks": len(checks),
            "tokens": tokens, "n_steady": 28, "runs": d.runs, "submits": d.submits, "reads": d.reads,
            "bytes_read": d.bytes_read, "writes": d.writes, "encode_calls": d.encode_calls,
            "created": d.buffers_created + d.bind_groups_created + d.pipelines_created,
            "decode_tok_s": e.last_stats.decode_tokens_per_s})
"""


def _serve():
    spec = importlib.util.spec_from_file_location("webinfer_serve_for_webgpu", ROOT / "scripts" / "serve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def page_result(default_model_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Chromium / chromedriver missing: run scripts/setup.sh")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed")
    serve = _serve()
    if not (serve.default_mounts()["/pyodide/"] / "pyodide.js").exists():
        pytest.skip("the Pyodide dist is missing: run scripts/setup.sh")
    tmp = Path(tempfile.mkdtemp(prefix="webinfer-webgpu-"))
    wheel = serve.build_wheel(tmp / "wheel")
    (tmp / "page").mkdir()
    (tmp / "page" / "index.html").write_text(PAGE)
    srv = serve.start(serve.default_mounts() | {"/t/": tmp / "page", "/w/": tmp / "wheel"})
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in [*FLAGS, f"--user-data-dir={tmp / 'profile'}"]:
        opts.add_argument(f)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(900)
    try:
        driver.get(srv.url + "/t/index.html")
        cb = "const done = arguments[arguments.length - 1];"
        ok = driver.execute_async_script(cb + "boot(arguments[0], arguments[1]).then(done, (e) => done('ERR ' + e));",
                                         f"/w/{wheel.name}", MODEL_URL)
        assert ok == "ok", ok
        out = driver.execute_async_script(
            cb + "py.runPythonAsync(arguments[0]).then((v) => done(String(v)), (e) => done('ERR ' + e));", IN_PAGE)
        assert not out.startswith("ERR"), out[-3000:]
        yield json.loads(out)
    finally:
        driver.quit()
        srv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def numpy_tokens(default_gguf, default_model):
    from tests.backends.test_wgsl_backend import numpy_greedy_tokens

    return numpy_greedy_tokens(default_gguf, default_model)


@pytest.mark.model
@pytest.mark.slow
def test_swiftshader_adapter_and_kernels(page_result):
    r = page_result
    assert r["backend"].startswith("webgpu"), r["backend"]
    assert r["adapter"]["is_fallback"] and r["profile"] == "software-adapter"
    assert r["jspi"] is True
    assert r["failed"] == [] and r["n_checks"] >= 28


@pytest.mark.model
@pytest.mark.slow
def test_greedy_32_tokens_in_the_browser_equal_numpy(page_result, numpy_tokens, default_gguf):
    from webinfer.tokenizer import Tokenizer

    assert page_result["tokens"] == numpy_tokens
    text = Tokenizer.from_gguf_metadata(default_gguf.metadata).decode(page_result["tokens"])
    assert text.startswith(" Paris")
    print(f"\n[SwiftShader] decode {page_result['decode_tok_s']:.2f} tok/s")


@pytest.mark.model
@pytest.mark.slow
def test_one_js_crossing_per_token_in_the_browser(page_result):
    r = page_result
    n = r["n_steady"]
    assert r["runs"] == r["submits"] == n            # one encodeAndSubmit call into JS per token
    assert r["reads"] == n and r["bytes_read"] == 4 * n
    assert r["encode_calls"] == 0                     # the JS encoder walks the plan, not Python
    assert r["writes"] == 0 and r["created"] == 0
