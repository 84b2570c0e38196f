// The page of bench/bench_wasm.py: webinfer's wasm backend or wllama, one engine per page load,
// with the protocol the peers were measured with (shared/peers/bench.html): n_ctx 1024, greedy
// decode of `decode` tokens after "The capital of France is" with ignore_eos, a 255-token prefill
// (bench/prompt256.txt), a warm-up first, `runs` runs of each. Results land in window.__result.
"use strict";

const q = new URLSearchParams(location.search);
const opts = {
  engine: q.get("engine") || "webinfer",
  backend: q.get("backend") || "wasm",
  threads: +(q.get("threads") || 1),
  runs: +(q.get("runs") || 3),
  decode: +(q.get("decode") || 128),
  nCtx: 1024,
  model: q.get("model") || "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
  prompt: "The capital of France is",
  prefillURL: "/bench/prompt256.txt",
  pyodideURL: q.get("pyodide") || "/pyodide/",
  wheelURL: q.get("wheel") || "/wheel/webinfer-0.1.0-py3-none-any.whl",
  wllamaURL: q.get("wllama") || "/npm/wllama-3.13.0/",
};
const logs = (window.__logs = []);
function say(...a) {
  const s = a.map((x) => (typeof x === "string" ? x : JSON.stringify(x))).join(" ");
  logs.push(s);
  document.getElementById("log").textContent += s + "\n";
}

function env() {
  return { userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency,
    crossOriginIsolated: self.crossOriginIsolated === true };
}

async function runWebinfer() {
  const prefillText = await (await fetch(opts.prefillURL)).text();
  const worker = new Worker("worker.js");
  return await new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => {
      if (data.kind === "log") say("webinfer:", data.text);
      else if (data.kind === "result") { worker.terminate(); resolve(data.result); }
      else if (data.kind === "error") { worker.terminate(); reject(new Error(data.message)); }
    };
    worker.onerror = (e) => reject(new Error("worker error: " + e.message));
    worker.postMessage({ ...opts, prefillText, modelURL: new URL(opts.model, location.href).href });
  });
}

async function runWllama() {
  const prefillText = await (await fetch(opts.prefillURL)).text();
  const { Wllama } = await import(opts.wllamaURL + "esm/index.js");
  const wl = new Wllama({ default: opts.wllamaURL + "esm/wasm/wllama.wasm" },
    { logger: { debug() {}, log() {}, info() {}, warn: (...a) => say("wllama warn:", a.join(" ")),
      error: (...a) => say("wllama error:", a.join(" ")) } });
  const out = { decode: [], prefill: [] };
  let t0 = performance.now();
  const blob = await (await fetch(opts.model)).blob();
  await wl.loadModel([blob], { n_threads: opts.threads, n_gpu_layers: 0, n_ctx: opts.nCtx, n_parallel: 1 });
  out.load_s = (performance.now() - t0) / 1000;
  out.threads = wl.nbThreads;
  out.multi_thread = wl.useMultiThread;
  const complete = (prompt, n) => wl.createCompletion({ prompt, max_tokens: n, temperature: 0, ignore_eos: true,
    cache_prompt: false });
  await complete("Hello", 4);   // warm-up, as the peers' page
  for (let i = 0; i < opts.runs; i++) {
    const r = await complete(opts.prompt, opts.decode);
    const t = r.timings;
    out.decode.push({ tokens_per_s: t.predicted_per_second, tokens: t.predicted_n, text: r.choices[0].text.slice(0, 160) });
    say(`wllama decode ${i + 1}/${opts.runs}: ${t.predicted_per_second.toFixed(2)} tok/s`);
  }
  for (let i = 0; i < opts.runs; i++) {
    const t = (await complete(prefillText, 1)).timings;
    out.prefill.push({ tokens_per_s: t.prompt_per_second, tokens: t.prompt_n });
    say(`wllama prefill ${i + 1}/${opts.runs}: ${t.prompt_per_second.toFixed(2)} tok/s`);
  }
  await wl.exit();
  return out;
}

(async () => {
  const result = { engine: opts.engine, options: opts, env: env() };
  try {
    say(`${opts.engine}: starting`, env());
    Object.assign(result, opts.engine === "wllama" ? await runWllama() : await runWebinfer());
  } catch (e) {
    result.error = String((e && e.stack) || e);
    say("ERROR", result.error);
  }
  window.__result = result;
  say(JSON.stringify(result, null, 1));
})();
