// Run Python inside Pyodide under Node with the webinfer wheel installed by micropip.
//
//   node web/node/run_pyodide.mjs --wheel build/wheel/webinfer-*.whl [--mount HOST:GUEST ...] (--code "..." | FILE.py)
//
// The Pyodide dist comes from $WEBINFER_PYODIDE (default: the cache folder that
// scripts/setup.sh fills); nothing is fetched from the network.  Host folders
// are mounted with NODEFS so Python can read model files in place.
import { readFileSync, existsSync } from "node:fs";
import { homedir } from "node:os";
import { resolve, basename } from "node:path";

const args = process.argv.slice(2);
const opts = { mounts: [], wheel: null, code: null, file: null };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--wheel") opts.wheel = args[++i];
  else if (a === "--mount") opts.mounts.push(args[++i]);
  else if (a === "--code") opts.code = args[++i];
  else opts.file = a;
}
const cache = process.env.WEBINFER_CACHE || resolve(homedir(), ".cache/webinfer");
const dist = process.env.WEBINFER_PYODIDE || resolve(cache, "pyodide/0.27.7");
if (!existsSync(resolve(dist, "pyodide.mjs"))) {
  console.error(`no Pyodide dist at ${dist}: run scripts/setup.sh`);
  process.exit(2);
}
const { loadPyodide } = await import(resolve(dist, "pyodide.mjs"));
const py = await loadPyodide({ indexURL: dist + "/" });
await py.loadPackage(["numpy", "micropip"], { messageCallback: () => {} });
for (const m of opts.mounts) {
  const [host, guest] = m.split(":");
  py.FS.mkdirTree(guest);
  py.FS.mount(py.FS.filesystems.NODEFS, { root: resolve(host) }, guest);
}
if (opts.wheel) {
  const name = basename(opts.wheel);
  py.FS.writeFile(`/tmp/${name}`, readFileSync(opts.wheel));
  await py.runPythonAsync(`import micropip\nawait micropip.install("emfs:/tmp/${name}", deps=False)`);
}
const code = opts.code ?? readFileSync(opts.file, "utf8");
try {
  await py.runPythonAsync(code);
} catch (e) {
  console.error(String(e.message || e));
  process.exit(1);
}
