"""End to end in headless Chromium: the script-tag API (web/webinfer.js) on the default model.

One browser, one page; the first test loads the engine into ``window.engine``
and the next ones reuse it (booting Pyodide and loading the model is ~15 s).
The cache tests then load again in the same profile: from OPFS, after an
interrupted download, after corrupting the stored copy, and under a quota.
"""

from __future__ import annotations

import pytest

from .helpers import API_PAGE, MODEL_SHA256, MODEL_URL, load_chromium

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]

SIZE = 98362432
CHUNK = 4 << 20


@pytest.fixture(scope="module")
def page(chrome, web_server, pages):
    (pages / "api.html").write_text(API_PAGE)
    chrome.get(web_server.url + "t/api.html")
    chrome.run("await webinfer.cache.clear();")
    return chrome


def model_bytes_served(server) -> int:
    return server.stats_snapshot().get(MODEL_URL, 0)


def js_error(page, body, *args):
    with pytest.raises(load_chromium().JSError) as e:
        page.run(body, *args)
    return e.value


def test_load_progress_and_paris(page, web_server):
    r = page.run("""
        const progress = [];
        window.engine = await webinfer.load({model: args[0], pyodideIndexURL: "/pyodide/",
                                             onProgress: (p) => progress.push(p)});
        let text = "";
        for await (const piece of engine.generate("The capital of France is", {max_tokens: 4, temperature: 0}))
          text += piece;
        return {text, progress, stats: engine.stats, caps: engine.capabilities, model: engine.model};
    """, MODEL_URL)
    assert r["text"].startswith(" Paris"), r["text"]
    prog = r["progress"]
    phases = [p["phase"] for p in prog]
    assert phases[0] == "boot" and phases[-1] == "ready" and "tensors" in phases
    assert all(set(p) >= {"progress", "loaded", "total", "text"} for p in prog)
    tensor = [p for p in prog if p["phase"] == "tensors"]
    assert tensor[-1]["tensors"] == tensor[-1]["n_tensors"] == 272
    fractions = [p["progress"] for p in prog]
    assert fractions == sorted(fractions) and fractions[-1] == 1
    # Tensors are loaded while the download runs: the first comes long before the whole file.
    load = r["stats"]["load"]
    assert load["source"] == "network" and load["network_bytes"] == SIZE and load["file_bytes"] == SIZE
    assert load["requests"] >= SIZE // CHUNK and load["sha256"] == MODEL_SHA256
    assert load["first_tensor_s"] < load["load_s"]
    assert any(p.get("rate", 0) > 0 for p in prog)
    assert load["wasm_heap_peak_bytes"] > SIZE  # float32 weights on the numpy backend: honest, not small
    gen = r["stats"]["generation"]
    assert gen["completion_tokens"] == 4 and gen["ttft_s"] > 0 and gen["decode_tokens_per_s"] > 0
    env = r["caps"]["environment"]
    assert env["runtime"] == "pyodide" and env["wasm_simd"] and env["opfs"]
    assert r["model"]["architecture"] == "llama" and r["model"]["n_layers"] == 30


def test_streaming_and_chat_shapes(page):
    r = page.run("""
        const times = [], pieces = [];
        for await (const p of engine.generate("Count: 1, 2, 3,", {max_tokens: 6, temperature: 0})) {
          pieces.push(p); times.push(performance.now());
        }
        const chunks = [];
        const stream = await engine.chat.completions.create({
          messages: [{role: "user", content: "What is the capital of France?"}],
          stream: true, max_tokens: 8, temperature: 0});
        for await (const c of stream) chunks.push(c);
        const full = await engine.chat.completions.create({
          messages: [{role: "user", content: "What is the capital of France?"}], max_tokens: 8, temperature: 0});
        return {pieces, spread: times[times.length - 1] - times[0], chunks, full};
    """)
    assert len(r["pieces"]) >= 3 and r["spread"] > 50  # pieces arrive one by one, not all at the end
    chunks = r["chunks"]
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["usage"]["completion_tokens"] >= 1
    full = r["full"]
    assert full["object"] == "chat.completion"
    assert full["choices"][0]["message"]["content"] == streamed  # greedy: same text both ways
    assert "Paris" in streamed
    assert full["usage"]["prompt_tokens"] > 5


def test_abort_and_break(page):
    r = page.run("""
        const ac = new AbortController();
        const pieces = [];
        let error = null;
        try {
          for await (const p of engine.generate("Once upon a time", {max_tokens: 200, temperature: 0, signal: ac.signal})) {
            pieces.push(p);
            if (pieces.length === 3) ac.abort();
          }
        } catch (e) { error = {name: e.name, message: e.message}; }
        let n = 0;
        for await (const p of engine.generate("Once upon a time", {max_tokens: 200, temperature: 0})) {
          if (++n === 2) break;  // leaving the loop stops the generation too
        }
        const after = await engine.complete("The capital of France is", {max_tokens: 3, temperature: 0});
        const pre = new AbortController(); pre.abort();
        let preError = null;
        try { for await (const p of engine.generate("x", {signal: pre.signal})); } catch (e) { preError = e.name; }
        return {pieces, error, after, preError, stats: engine.stats.generation};
    """)
    assert r["error"]["name"] == "AbortError" and len(r["pieces"]) == 3
    assert r["after"].startswith(" Paris")  # the worker lives on after an abort
    assert r["preError"] == "AbortError"


def test_errors_are_specific(page, web_server):
    def err(body, *args):
        return js_error(page, body, *args)

    e = err("return await engine.complete('hi', {max_tokens: 0});")
    assert e.name == "InvalidArgumentError" and "max_tokens" in e.message
    e = err("return await engine.complete('hi', {bogus: 1});")
    assert e.name == "InvalidArgumentError" and "bogus" in e.message
    e = err("return await engine.chat.completions.create({messages: 'hi'});")
    assert e.name == "InvalidArgumentError" and "messages" in e.message
    e = err("return await engine.complete('hello '.repeat(2100), {max_tokens: 2});")
    assert e.name == "ContextOverflowError" and "context" in e.message
    e = err("return await webinfer.load({});")
    assert e.name == "InvalidArgumentError" and "model" in e.message
    e = err("return await webinfer.load({model: '/models/nope.gguf', pyodideIndexURL: '/pyodide/'});")
    assert e.name == "DownloadError" and "404" in e.message and e.fields.get("status") == 404
    e = err("return await webinfer.load({model: args[0], pyodideIndexURL: '/no-pyodide-here/'});", MODEL_URL)
    assert e.name == "BootError" and "pyodideIndexURL" in e.message
    e = err("return await webinfer.load({model: args[0], pyodideIndexURL: '/pyodide/', timeouts: {boot: 20}});",
            MODEL_URL)
    assert e.name == "TimeoutError" and "boot" in e.message
    e = err("""const ac = new AbortController(); setTimeout(() => ac.abort(), 50);
               return await webinfer.load({model: args[0], pyodideIndexURL: '/pyodide/', signal: ac.signal});""",
            MODEL_URL)
    assert e.name == "AbortError"


def test_second_load_comes_from_the_cache(page, web_server):
    before = model_bytes_served(web_server)
    r = page.run("""
        window.engine2 = await webinfer.load({model: args[0], pyodideIndexURL: "/pyodide/"});
        const text = await engine2.complete("The capital of France is", {max_tokens: 3, temperature: 0});
        const listed = await webinfer.cache.list();
        await engine2.unload();
        let unloaded = null;
        try { await engine2.complete("x"); } catch (e) { unloaded = e.name; }
        return {text, load: engine2.stats.load, listed, unloaded};
    """, MODEL_URL)
    load = r["load"]
    assert load["source"] == "cache" and load["network_bytes"] == 0 and load["requests"] == 0
    assert load["verified"] and load["sha256"] == MODEL_SHA256  # re-hashed against the recorded digest
    assert model_bytes_served(web_server) - before <= 1  # at most the 1-byte preflight
    assert r["text"].startswith(" Paris")
    assert any(m["complete"] and m["size"] == SIZE for m in r["listed"])
    assert r["unloaded"] == "UnloadedError"


def test_interrupted_download_resumes(page, web_server):
    cut = 40_000_000
    e = js_error(page, """return await webinfer.load({model: args[0] + "?cut=" + args[1], cacheKey: "resume-test",
                                                     pyodideIndexURL: "/pyodide/"});""", MODEL_URL, cut)
    assert e.name == "DownloadError" and "interrupted" in e.message and "resumes" in e.message
    kept = cut // CHUNK * CHUNK
    assert e.fields["offset"] == kept
    r = page.run("""
        const e = await webinfer.load({model: args[0], cacheKey: "resume-test", sha256: args[1],
                                       pyodideIndexURL: "/pyodide/"});
        const text = await e.complete("The capital of France is", {max_tokens: 3, temperature: 0});
        await e.unload();
        return {text, load: e.stats.load};
    """, MODEL_URL, MODEL_SHA256)
    load = r["load"]
    assert load["source"] == "resumed" and load["cached_bytes"] == kept
    assert load["network_bytes"] == SIZE - kept and load["verified"]
    assert r["text"].startswith(" Paris")


def test_corrupt_cached_copy_is_refetched(page):
    r = page.run("""
        const key = "resume-test";
        const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
        const name = "model-" + [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 32);
        const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("webinfer");
        const w = await (await dir.getFileHandle(name + ".gguf")).createWritable({keepExistingData: true});
        await w.write({type: "write", position: 50000000, data: new Uint8Array([1, 2, 3, 4])});
        await w.close();
        const e = await webinfer.load({model: args[0], cacheKey: key, pyodideIndexURL: "/pyodide/"});
        const text = await e.complete("The capital of France is", {max_tokens: 3, temperature: 0});
        await e.unload();
        return {text, load: e.stats.load};
    """, MODEL_URL)
    load = r["load"]
    assert "sha256" in load["refetched_because"] and load["network_bytes"] == SIZE
    assert r["text"].startswith(" Paris")


def test_full_quota_is_a_clear_error(page, web_server):
    origin = web_server.url.rstrip("/")
    page.cdp("Storage.overrideQuotaForOrigin", {"origin": origin, "quotaSize": 150_000_000})
    try:
        e = js_error(page, """return await webinfer.load({model: args[0], cacheKey: "quota-test",
                                                         pyodideIndexURL: "/pyodide/"});""", MODEL_URL)
        listed = page.run("return (await webinfer.cache.list()).map((m) => m.key);")
    finally:
        page.cdp("Storage.overrideQuotaForOrigin", {"origin": origin})
    assert e.name == "StorageQuotaError" and "cache: false" in e.message and e.fields["needed"] > 0
    assert "quota-test" not in listed  # nothing partial kept


def test_cache_false_reads_ranges_directly(page):
    r = page.run("""
        const e = await webinfer.load({model: args[0], cache: false, pyodideIndexURL: "/pyodide/"});
        const text = await e.complete("The capital of France is", {max_tokens: 3, temperature: 0});
        await e.unload();
        await engine.unload();
        await webinfer.cache.clear();
        return {text, load: e.stats.load, left: await webinfer.cache.list()};
    """, MODEL_URL)
    assert r["load"]["source"] == "direct" and r["text"].startswith(" Paris")
    assert r["left"] == []
