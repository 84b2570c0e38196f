// webinfer in a dedicated worker for bench.js: boot Pyodide, install the wheel, load the model
// with HTTP range requests (the product's path: no copy of the file in the WASM heap), run driver.py.
"use strict";

self.onmessage = async ({ data: o }) => {
  const post = (m) => self.postMessage(m);
  try {
    const t0 = performance.now();
    importScripts(o.pyodideURL + "pyodide.js");
    const py = await loadPyodide({ indexURL: new URL(o.pyodideURL, location.href).href });
    await py.loadPackage(["numpy", "micropip"], { messageCallback: () => {} });
    py.globals.set("__wheel", new URL(o.wheelURL, location.href).href);
    await py.runPythonAsync("import micropip\nawait micropip.install(__wheel, deps=False)");
    const boot_s = (performance.now() - t0) / 1000;
    py.globals.set("__opts", py.toPy({ ...o, boot_s }));
    py.globals.set("__log", (s) => post({ kind: "log", text: s }));
    const driver = await (await fetch("driver.py")).text();
    const result = await py.runPythonAsync(driver);
    post({ kind: "result", result: JSON.parse(result) });
  } catch (e) {
    post({ kind: "error", message: String((e && e.stack) || e) });
  }
};
