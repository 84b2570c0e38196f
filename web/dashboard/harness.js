// The browser side of `webinfer bench`: measures webinfer (in its worker) and
// wllama on one page, with the same protocol as the CPython runner
// (engine/webinfer/bench/native.py). The Python harness (bench/browser.py) opens
// harness.html in headless Chromium and calls these functions; a person can open
// harness.html in any browser and press "run" to get the same JSON.
//
//   webinferBench.probe()            -> capability facts the page can see
//   webinferBench.runWebinfer(opts)  -> {loads, decode, prefill, memory, capabilities, model, ...}
//   webinferBench.runWllama(opts)    -> {load_s, decode, prefill, threads, ...}
//
// opts: {model (URL), runs, decodeTokens, warmupTokens, decodePrompt, prefillText, nCtx,
//        backend (webinfer), threads (wllama), pyodideIndexURL, wllamaURL}
// Progress lines go to window.__benchLog (the harness prints them).
"use strict";

(function () {
  const log = (window.__benchLog = window.__benchLog || []);
  const say = (...a) => {
    const s = a.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join(" ");
    log.push(s);
    const pre = document.getElementById("log");
    if (pre) pre.textContent += s + "\n";
  };
  const MB = 1024 * 1024;
  const now = () => performance.now() / 1000;

  // ---------------------------------------------------------------- capability

  // Tiny modules that only validate where a WASM feature exists (as wasm-feature-detect does).
  const WASM_SIMD = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
    65, 0, 253, 15, 253, 98, 11]);
  const WASM_MEMORY64 = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 5, 3, 1, 4, 1]);
  const valid = (bytes) => { try { return WebAssembly.validate(bytes); } catch { return false; } };

  async function probe() {
    const nav = navigator;
    const out = {
      userAgent: nav.userAgent,
      hardwareConcurrency: nav.hardwareConcurrency ?? null,
      deviceMemory: nav.deviceMemory ?? null,
      crossOriginIsolated: self.crossOriginIsolated === true,
      sharedArrayBuffer: typeof SharedArrayBuffer !== "undefined",
      wasm: { simd: valid(WASM_SIMD), memory64: valid(WASM_MEMORY64), jspi: typeof WebAssembly.Suspending === "function" },
      webgpu: { api: !!nav.gpu, adapter: null },
    };
    if (nav.gpu) {
      try {
        const ad = await nav.gpu.requestAdapter();
        if (ad) {
          const info = ad.info || {};
          const limits = {};
          for (const k of ["maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize",
            "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX", "maxStorageBuffersPerShaderStage"]) {
            limits[k] = ad.limits[k];
          }
          out.webgpu.adapter = { vendor: info.vendor, architecture: info.architecture, description: info.description,
            isFallbackAdapter: info.isFallbackAdapter ?? ad.isFallbackAdapter ?? null,
            subgroupMinSize: info.subgroupMinSize ?? null, features: [...ad.features].sort(), limits };
        }
      } catch (e) {
        out.webgpu.error = String(e && e.message || e);
      }
    }
    return out;
  }

  function jsHeapMB() {
    const m = performance.memory;
    return m ? m.usedJSHeapSize / MB : null;
  }

  // ---------------------------------------------------------------- webinfer

  async function runWebinfer(o) {
    const out = { probe: await probe(), loads: [], decode: [], prefill: [], errors: [] };
    const loadOpts = { model: o.model, pyodideIndexURL: o.pyodideIndexURL || "/pyodide/", n_ctx: o.nCtx || 1024,
      backend: o.backend, cache: true, timeouts: { generate: 1800000 } };
    let last = 0;
    const onProgress = (p) => { const t = now(); if (t - last > 2) { last = t; say("  load:", p.text || p.phase); } };
    // 1st load: a fresh profile, so the model comes over the network; 2nd: from the browser cache (OPFS).
    for (const kind of ["network", "cached"]) {
      say(`webinfer: load (${kind})`);
      const t0 = now();
      const engine = await webinfer.load({ ...loadOpts, onProgress });
      const wall = now() - t0;
      out.loads.push({ kind, wall_s: wall, boot: engine.stats.boot, load: engine.stats.load });
      out.model = engine.model;
      out.capabilities = engine.capabilities;
      const loaded = String(engine.model?.backend || "").split(" ")[0];  // "webgpu (adapter...)" -> "webgpu"
      if (o.backend && loaded && loaded !== o.backend) {
        out.backend_mismatch = { requested: o.backend, loaded: engine.model.backend };
        await engine.unload();
        return out;
      }
      if (kind === "network") { await engine.unload(); continue; }
      // Timed by the page's clock around the stream (what a user sees, worker messaging included):
      // TTFT = request -> first piece; decode = the tokens after the first over the time after it.
      // The worker's own numbers are kept as engine_stats.
      const gen = async (prompt, n) => {
        await engine.reset();
        let text = "", first = null;
        const t = now();
        for await (const piece of engine.generate(prompt, { max_tokens: n, temperature: 0, ignore_eos: true })) {
          if (first === null) first = now();
          text += piece;
        }
        const end = now();
        const g = engine.stats.generation || {};
        const count = g.completion_tokens || 0;
        first = first ?? end;
        return { prompt_tokens: g.prompt_tokens, completion_tokens: count, ttft_s: first - t,
          prefill_tokens_per_s: g.prompt_tokens / (first - t),
          decode_tokens_per_s: count > 1 && end > first ? (count - 1) / (end - first) : 0,
          wall_s: end - t, engine_stats: g, text: text.slice(0, 200) };
      };
      say("webinfer: warm-up");
      await gen(o.decodePrompt, o.warmupTokens || 8);
      await gen(o.prefillText, 1);
      for (let i = 0; i < o.runs; i++) {
        const r = await gen(o.decodePrompt, o.decodeTokens);
        say(`webinfer: decode run ${i + 1}/${o.runs}: ${r.decode_tokens_per_s.toFixed(2)} tok/s`);
        out.decode.push(r);
      }
      for (let i = 0; i < o.runs; i++) {
        const r = await gen(o.prefillText, 1);
        say(`webinfer: prefill run ${i + 1}/${o.runs}: ${r.prefill_tokens_per_s.toFixed(2)} tok/s`);
        out.prefill.push(r);
      }
      const s = await engine.refreshStats();
      out.memory = { ...s.memory, js_heap_mb: jsHeapMB() };
      await engine.unload();
    }
    return out;
  }

  // ---------------------------------------------------------------- wllama

  async function runWllama(o) {
    const out = { probe: await probe(), decode: [], prefill: [], threads: o.threads || 1 };
    const base = o.wllamaURL || "/npm/wllama-3.13.0/";
    const { Wllama } = await import(base + "esm/index.js");
    const wl = new Wllama({ default: base + "esm/wasm/wllama.wasm" }, { logger: { debug() {}, log() {}, info() {},
      warn: (...a) => say("wllama warn:", a.join(" ")), error: (...a) => say("wllama error:", a.join(" ")) } });
    say("wllama: fetch + load");
    let t0 = now();
    const blob = await (await fetch(o.model)).blob();
    out.fetch_s = now() - t0;
    const t1 = now();
    await wl.loadModel([blob], { n_threads: o.threads || 1, n_gpu_layers: 0, n_ctx: o.nCtx || 1024, n_parallel: 1 });
    out.model_init_s = now() - t1;
    out.load_s = now() - t0;
    out.useMultiThread = wl.useMultiThread;
    out.nbThreads = wl.nbThreads;
    const complete = (prompt, n) => wl.createCompletion({ prompt, max_tokens: n, temperature: 0, ignore_eos: true,
      cache_prompt: false });
    say("wllama: warm-up");
    await complete(o.decodePrompt, o.warmupTokens || 8);
    for (let i = 0; i < o.runs; i++) {
      t0 = now();
      const r = await complete(o.decodePrompt, o.decodeTokens);
      out.decode.push({ wall_s: now() - t0, timings: r.timings, usage: r.usage, text: r.choices[0].text.slice(0, 200) });
      say(`wllama: decode run ${i + 1}/${o.runs}: ${r.timings.predicted_per_second.toFixed(2)} tok/s`);
    }
    for (let i = 0; i < o.runs; i++) {
      t0 = now();
      const r = await complete(o.prefillText, 1);
      out.prefill.push({ wall_s: now() - t0, timings: r.timings, usage: r.usage });
      say(`wllama: prefill run ${i + 1}/${o.runs}: ${r.timings.prompt_per_second.toFixed(2)} tok/s`);
    }
    out.js_heap_mb = jsHeapMB();
    await wl.exit();
    return out;
  }

  window.webinferBench = { probe, runWebinfer, runWllama, log };
})();
