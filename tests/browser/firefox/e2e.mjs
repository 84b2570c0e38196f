// The script-tag API end to end in Firefox ESR, driven over WebDriver BiDi by puppeteer-core
// (Debian has no geckodriver; Firefox speaks BiDi itself). Run by tests/browser/test_firefox.py:
//
//   node tests/browser/firefox/e2e.mjs http://127.0.0.1:PORT/t/api.html [/usr/bin/firefox-esr]
//
// Prints one JSON object: what each check saw. The Python test asserts on it.
import puppeteer from "puppeteer-core";

const [url, executablePath = "/usr/bin/firefox-esr"] = process.argv.slice(2);
const browser = await puppeteer.launch({ browser: "firefox", executablePath, headless: true, protocolTimeout: 600000 });
const out = {};
try {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`[firefox console] ${m.text()}\n`));
  await page.goto(url);
  Object.assign(out, await page.evaluate(async (model) => {
    const r = { userAgent: navigator.userAgent };
    const progress = [];
    const engine = await webinfer.load({ model, pyodideIndexURL: "/pyodide/", onProgress: (p) => progress.push(p.phase) });
    r.phases = [...new Set(progress)];
    r.load = engine.stats.load;
    r.capabilities = engine.capabilities.environment;
    r.pieces = [];
    for await (const p of engine.generate("The capital of France is", { max_tokens: 4, temperature: 0 })) r.pieces.push(p);
    const ac = new AbortController();
    let n = 0;
    try {
      for await (const p of engine.generate("Once upon a time", { max_tokens: 100, signal: ac.signal })) {
        if (++n === 2) ac.abort();
      }
    } catch (e) { r.abortError = e.name; }
    try { await engine.complete("x", { max_tokens: 0 }); } catch (e) { r.invalidError = { name: e.name, message: e.message }; }
    const chat = await engine.chat.completions.create({ messages: [{ role: "user", content: "What is the capital of France?" }],
                                                       max_tokens: 8, temperature: 0 });
    r.chat = chat.choices[0].message.content;
    await engine.unload();
    const again = await webinfer.load({ model, pyodideIndexURL: "/pyodide/" });
    r.second = again.stats.load;
    await again.unload();
    await webinfer.cache.clear();
    return r;
  }, "/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
