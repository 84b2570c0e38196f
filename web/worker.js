// webinfer's dedicated Web Worker: boots Pyodide, installs the webinfer wheel
// with micropip, then hands every message to Python (webinfer.browser.worker),
// which posts its own replies. The page's main thread never runs the model.
//
// Protocol: the page sends {kind, id, content}; replies are {kind, id, content}
// with kind "progress" | "chunk" | "return" | "throw". Only "boot" is handled
// here; see engine/webinfer/browser/worker.py for the rest.
"use strict";

let handle = null; // Python: webinfer.browser.worker.handle(kind, id, content)

function post(kind, id, content) {
  self.postMessage({ kind, id, content });
}

function errorContent(e, name) {
  return { name: (e && e.name && e.name !== "Error" ? e.name : name), message: String((e && e.message) || e) };
}

async function boot(id, { pyodideIndexURL, wheelURL }) {
  const t0 = performance.now();
  const step = (text) => post("progress", id, { phase: "boot", progress: 0, loaded: 0, total: 0, text,
                                                elapsed_s: (performance.now() - t0) / 1000 });
  step("starting Python (Pyodide)");
  try {
    importScripts(pyodideIndexURL + "pyodide.js");
  } catch (e) {
    throw Object.assign(new Error(`could not load Pyodide from ${pyodideIndexURL}pyodide.js (${e.message}); ` +
      "check pyodideIndexURL"), { name: "BootError" });
  }
  const pyodide = await loadPyodide({
    indexURL: pyodideIndexURL,
    stdout: (s) => console.log("[webinfer]", s),
    stderr: (s) => console.warn("[webinfer]", s),
  });
  self.pyodide = pyodide; // for debugging from the console
  step("loading numpy");
  const failed = [];
  await pyodide.loadPackage(["numpy", "micropip"], { messageCallback: () => {}, errorCallback: (m) => failed.push(m) });
  if (failed.length) {
    throw Object.assign(new Error(`could not load numpy from ${pyodideIndexURL}: ${failed.join("; ")}`), { name: "BootError" });
  }
  step("installing webinfer");
  pyodide.globals.set("__webinfer_wheel", wheelURL);
  try {
    await pyodide.runPythonAsync("import micropip\nawait micropip.install(__webinfer_wheel)");
  } catch (e) {
    throw Object.assign(new Error(`could not install webinfer from ${wheelURL}: ${e.message.trim().split("\n").pop()}`),
      { name: "BootError" });
  }
  const worker = pyodide.pyimport("webinfer.browser.worker");
  handle = worker.handle;
  const version = pyodide.runPython("import webinfer; webinfer.__version__");
  return { pyodide_version: pyodide.version, webinfer_version: version, boot_s: (performance.now() - t0) / 1000 };
}

self.onmessage = (ev) => {
  const { kind, id, content } = ev.data || {};
  if (kind === "boot") {
    if (handle) return post("throw", id, { name: "BootError", message: "this worker has already booted" });
    boot(id, content || {}).then((r) => post("return", id, r), (e) => post("throw", id, errorContent(e, "BootError")));
    return;
  }
  if (!handle) return post("throw", id, { name: "BootError", message: "the webinfer worker has not booted yet" });
  // Python posts the replies itself; handle() never rejects.
  handle(kind, id, content);
};
