"""Browser runners: webinfer (in its Pyodide worker) and wllama in headless Chromium.

One local server (scripts/serve.py: the web/ folder, the wheel, Pyodide, the
models, plus /npm/ for wllama and /bench/ for the prompts) serves
web/dashboard/harness.html; each target gets a fresh Chromium profile, so the
first model load comes over the network and the second from the browser's
cache. The page's functions (web/dashboard/harness.js) do the measuring; here
their results become metrics.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..models import cache_dir
from .record import metric, repo_root

MiB = 1024 * 1024
CHROMIUM_ENV, CHROMEDRIVER_ENV = "WEBINFER_CHROMIUM", "WEBINFER_CHROMEDRIVER"
# Flags that work headless as root on a closed network (design notes: OFFLINE.md), and the
# ones that make Chromium offer WebGPU on SwiftShader, its software Vulkan.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000"]
WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--use-angle=swiftshader", "--enable-features=Vulkan",
                "--use-webgpu-adapter=swiftshader", "--enable-precise-memory-info"]
TARGET_TIMEOUT_S = 3600   # one target, all its runs
POLL_S = 0.5


def chromium_paths() -> tuple[str, str]:
    return os.environ.get(CHROMIUM_ENV, "/usr/bin/chromium"), os.environ.get(CHROMEDRIVER_ENV, "/usr/bin/chromedriver")


def load_script(name: str):
    """A module from the checkout's scripts/ folder (not a package), e.g. ``load_script("serve")``."""
    key = f"webinfer_scripts_{name}"
    if key not in sys.modules:
        root = repo_root()
        if root is None or not (root / "scripts" / f"{name}.py").exists():
            raise RuntimeError(f"scripts/{name}.py not found: the browser benchmarks run from a webinfer checkout")
        spec = importlib.util.spec_from_file_location(key, root / "scripts" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


class Chromium:
    """One headless Chromium with a throw-away profile, driven by Selenium."""

    def __init__(self, *, webgpu: bool = True, script_timeout_s: float = 120):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        chromium, driver = chromium_paths()
        self.profile = tempfile.mkdtemp(prefix="webinfer-bench-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = chromium
        for f in [*FLAGS, *(WEBGPU_FLAGS if webgpu else []), f"--user-data-dir={self.profile}"]:
            opts.add_argument(f)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            self.driver = webdriver.Chrome(service=Service(driver), options=opts)
        except Exception:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_script_timeout(script_timeout_s)

    @property
    def version(self) -> str:
        caps = self.driver.capabilities
        return f"Chromium {caps.get('browserVersion', '?')}"

    def get(self, url: str) -> None:
        self.driver.get(url)

    def js(self, expr: str, *args):
        return self.driver.execute_script(f"return ({expr});", *args)

    def call(self, fn: str, arg: dict, *, timeout_s: float = TARGET_TIMEOUT_S,
             on_log: Callable[[str], None] | None = None):
        """Start ``await fn(arg)`` in the page and poll until it settles; forward its log lines."""
        self.driver.execute_script(
            "window.__benchDone = null; Promise.resolve().then(() => " + fn + "(arguments[0]))"
            ".then((v) => { window.__benchDone = {ok: true, value: v}; },"
            " (e) => { window.__benchDone = {ok: false, error: String(e && e.stack || e), name: e && e.name}; });",
            arg)
        seen, t0 = 0, time.monotonic()
        while True:
            state = self.driver.execute_script(
                "return {done: window.__benchDone, log: (window.__benchLog || []).slice(arguments[0])};", seen)
            for line in state["log"]:
                if on_log:
                    on_log(line)
            seen += len(state["log"])
            if state["done"] is not None:
                d = state["done"]
                if not d["ok"]:
                    raise RuntimeError(f"{fn} failed in the page: {d['error'][:1500]}")
                return d["value"]
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"{fn} did not finish in {timeout_s:.0f} s; console:\n{self.console_tail()}")
            time.sleep(POLL_S)

    def console_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(e["message"][:300] for e in self.driver.get_log("browser")[-n:])
        except Exception as e:  # noqa: BLE001
            return f"(no console: {e})"

    def screenshot(self, path: str | os.PathLike) -> None:
        self.driver.save_screenshot(str(path))

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


class PageServer:
    """scripts/serve.py's server with the harness mounts; an isolated (COOP/COEP) twin on demand."""

    def __init__(self, *, build_wheel: bool = True):
        self.serve = load_script("serve")
        if build_wheel:
            self.serve.build_wheel()
        self.mounts = self.serve.default_mounts() | {"/npm/": cache_dir() / "npm", "/bench/": repo_root() / "bench"}
        self._servers: dict[bool, object] = {}

    def url(self, *, isolate: bool = False) -> str:
        if isolate not in self._servers:
            self._servers[isolate] = self.serve.start(self.mounts, isolate=isolate)
        return self._servers[isolate].url.rstrip("/")

    def close(self) -> None:
        for srv in self._servers.values():
            srv.shutdown()
            srv.server_close()
        self._servers.clear()

    def __enter__(self) -> "PageServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------ runners

def _page_options(protocol: dict, model_url: str, **kw) -> dict:
    return {"model": model_url, "runs": protocol["runs"], "decodeTokens": protocol["decode_tokens"],
            "warmupTokens": protocol["warmup_tokens"], "decodePrompt": protocol["decode_prompt"],
            "prefillText": protocol["prefill_text"], "nCtx": protocol["n_ctx"], **kw}


def _open_harness(server: PageServer, target, on_log) -> Chromium:
    browser = Chromium(webgpu=True)
    try:
        browser.get(server.url(isolate=target.isolate) + "/dashboard/harness.html")
        browser.js("window.webinferBench !== undefined")
    except Exception:
        browser.quit()
        raise
    return browser


def run_webinfer(server: PageServer, target, protocol: dict, model_url: str,
                 on_log: Callable[[str], None] | None = None) -> dict:
    """webinfer in the page's worker; the measurements, or ``{"skipped": why}`` if the browser runtime
    loaded another backend than the target's."""
    browser = _open_harness(server, target, on_log)
    try:
        r = browser.call("webinferBench.runWebinfer", _page_options(protocol, model_url, backend=target.backend),
                         on_log=on_log)
        version = browser.version
    finally:
        browser.quit()
    if r.get("backend_mismatch"):
        m = r["backend_mismatch"]
        return {"skipped": f"the browser runtime has no {m['requested']!r} backend yet (it loaded {m['loaded']!r})",
                "browser": version, "capability": {"page": r.get("probe"), "worker": r.get("capabilities")}}
    net, cached = r["loads"][0], r["loads"][1]
    mem = r.get("memory") or {}
    heap = [b for b in (mem.get("wasm_heap_bytes"), (cached.get("load") or {}).get("wasm_heap_peak_bytes")) if b]
    metrics = {
        "boot_s": metric("boot_s", [ld["boot"]["boot_s"] for ld in r["loads"] if ld.get("boot")]),
        "load_s": metric("load_s", [net["load"]["load_s"]]),
        "load_cached_s": metric("load_cached_s", [cached["load"]["load_s"]]),
        "ttft_s": metric("ttft_s", [d["ttft_s"] for d in r["decode"]]),
        "decode_tps": metric("decode_tps", [d["decode_tokens_per_s"] for d in r["decode"]]),
        "prefill_tps": metric("prefill_tps", [p["prefill_tokens_per_s"] for p in r["prefill"]]),
    }
    if heap:
        metrics["wasm_heap_mb"] = metric("wasm_heap_mb", [max(heap) / MiB])
    if mem.get("js_heap_mb"):
        metrics["js_heap_mb"] = metric("js_heap_mb", [mem["js_heap_mb"]])
    gpu = mem.get("gpu_buffer_bytes") or mem.get("gpu_bytes")
    if gpu:
        metrics["gpu_buffer_mb"] = metric("gpu_buffer_mb", [gpu / MiB])
    boot = r["loads"][-1].get("boot") or {}
    profile = (r.get("capabilities") or {}).get("profile")
    return {
        "browser": version,
        "profile": profile.get("name") if isinstance(profile, dict) else profile,
        "metrics": metrics,
        "protocol": {"decode_prompt_tokens": r["decode"][0]["prompt_tokens"],
                     "prefill_tokens": r["prefill"][0]["prompt_tokens"]},
        "capability": {"page": r.get("probe"), "worker": r.get("capabilities")},
        "versions": {"webinfer": boot.get("webinfer_version"), "pyodide": boot.get("pyodide_version"),
                     "browser": version},
        "extra": {"text": r["decode"][0].get("text"), "loads": r["loads"], "decode_runs": r["decode"],
                  "prefill_runs": r["prefill"], "memory": mem, "model": r.get("model")},
    }


def run_wllama(server: PageServer, target, protocol: dict, model_url: str,
               on_log: Callable[[str], None] | None = None) -> dict:
    """wllama (llama.cpp in WASM) on the same page and model; llama.cpp's own timings."""
    browser = _open_harness(server, target, on_log)
    try:
        r = browser.call("webinferBench.runWllama", _page_options(protocol, model_url, threads=target.threads),
                         on_log=on_log)
        version = browser.version
    finally:
        browser.quit()
    dec = [d["timings"] for d in r["decode"]]
    pre = [p["timings"] for p in r["prefill"]]
    metrics = {
        "load_s": metric("load_s", [r["load_s"]]),
        # llama.cpp's timings: the prompt's eval plus one decode step is the first token.
        "ttft_s": metric("ttft_s", [(t["prompt_ms"] + t["predicted_ms"] / max(t["predicted_n"], 1)) / 1000
                                    for t in dec]),
        "decode_tps": metric("decode_tps", [t["predicted_per_second"] for t in dec]),
        "prefill_tps": metric("prefill_tps", [t["prompt_per_second"] for t in pre]),
    }
    if r.get("js_heap_mb"):
        metrics["js_heap_mb"] = metric("js_heap_mb", [r["js_heap_mb"]])
    return {
        "browser": version,
        "metrics": metrics,
        "protocol": {"decode_prompt_tokens": dec[0].get("prompt_n"), "prefill_tokens": pre[0].get("prompt_n")},
        "capability": {"page": r.get("probe"), "wllama": {"useMultiThread": r.get("useMultiThread"),
                                                         "nbThreads": r.get("nbThreads")}},
        "versions": {"wllama": "3.13.0", "browser": version},
        "engine_version": "3.13.0",
        "threads": r.get("nbThreads") or target.threads,
        "extra": {"text": r["decode"][0].get("text"), "fetch_s": r.get("fetch_s"), "model_init_s": r.get("model_init_s"),
                  "decode_runs": r["decode"], "prefill_runs": r["prefill"]},
    }


def model_url_for(path: Path) -> str:
    """The URL the page loads the model from: /models/ serves the asset cache's models folder."""
    models = cache_dir() / "models"
    try:
        rel = Path(path).resolve().relative_to(models.resolve())
    except ValueError as e:
        raise RuntimeError(f"browser targets load models from {models} (served at /models/); "
                           f"{path} is elsewhere: copy it there") from e
    return "/models/" + rel.as_posix()
