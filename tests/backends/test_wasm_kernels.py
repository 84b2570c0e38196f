"""The WASM SIMD kernels and the wasm backend, checked inside Pyodide under Node.

The kernels exist only inside Pyodide, so the checks (tests/backends/wasm_checks.py)
run there: one Node process boots Pyodide, installs the freshly built wheel
and runs them all; each check is one test here.  CPython compares the greedy
tokens the wasm backend produced with its own numpy backend's.  Skips, with
the reason, when Node, the Pyodide dist or the model is missing (scripts/setup.sh
installs them all, so they run in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from . import wasm_checks

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")
PYODIDE = Path(os.environ.get("WEBINFER_PYODIDE") or CACHE / "pyodide" / "0.27.7")
MODELS = CACHE / "models"
NODE_TIMEOUT_S = 600


def _build_wheel(out: Path) -> Path:
    """A fresh wheel in a private folder (build/wheel/ is shared with tests that rebuild it)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, stdout=subprocess.DEVNULL)
    (wheel,) = out.glob("webinfer-*.whl")
    return wheel


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    node = shutil.which("node")
    if not node:
        pytest.skip("node is missing: run scripts/setup.sh")
    if not (PYODIDE / "pyodide.mjs").exists():
        pytest.skip(f"no Pyodide dist at {PYODIDE}: run scripts/setup.sh")
    if not (MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf").exists():
        pytest.skip("the default model is missing: run scripts/setup.sh")
    wheel = _build_wheel(tmp_path_factory.mktemp("wheel"))
    out_dir = tmp_path_factory.mktemp("wasm_out")
    code = "import sys; sys.path.insert(0, '/wasm_tests'); import wasm_checks; await wasm_checks.main()"
    proc = subprocess.run(
        [node, str(ROOT / "web/node/run_pyodide.mjs"), "--wheel", str(wheel),
         "--mount", f"{Path(__file__).parent}:/wasm_tests", "--mount", f"{MODELS}:/models", "--mount", f"{out_dir}:/out", "--code", code],
        capture_output=True, text=True, timeout=NODE_TIMEOUT_S, cwd=ROOT)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("CHECK "):
            rec = json.loads(line[6:])
            out[rec["name"]] = rec
    out["_out_dir"] = out_dir
    if not out:
        pytest.fail(f"the Pyodide run reported nothing (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return out


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in wasm_checks.CHECKS if "cpython" not in n])
def test_in_pyodide(results, name):
    rec = results.get(name)
    assert rec is not None, f"check {name} did not run (the Pyodide process died?)"
    assert rec["ok"], rec["detail"]


# The numpy references run in a subprocess with one BLAS thread: on this 2-core
# machine a busy neighbour makes multi-threaded OpenBLAS 10x slower than one thread.
_REFERENCE = """
import json, sys
import numpy as np
from webinfer.backends.numpy_backend import NumpyBackend
from webinfer.formats.gguf import GGUFFile
from webinfer.model import load_model
from webinfer.runtime.session import Session
from webinfer.tokenizer import Tokenizer

req = json.load(open(sys.argv[1]))
g = GGUFFile.open(req["model"])
tok = Tokenizer.from_gguf_metadata(g.metadata)
model = load_model(g, NumpyBackend())
greedy = {}
for prompt in req["prompts"]:
    s = Session(model, 512)
    logits = s.prefill(tok.encode(prompt, add_special=True, parse_special=True))
    out = []
    for _ in range(32):
        out.append(int(np.argmax(logits)))
        logits = s.evaluate([out[-1]])[-1]
    greedy[prompt] = out
json.dump(greedy, open(req["greedy_out"], "w"))
logits = Session(model, 512).evaluate(req["prefill_ids"], n_logits=3)
np.save(req["prefill_out"], logits)
"""


@pytest.fixture(scope="module")
def numpy_reference(results, default_model_path, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("numpy_ref")
    saved = np.load(results["_out_dir"] / "prefill.npz")
    req = {"model": str(default_model_path), "prompts": wasm_checks.PROMPTS, "prefill_ids": saved["ids"].tolist(),
           "greedy_out": str(d / "greedy.json"), "prefill_out": str(d / "prefill.npy")}
    (d / "req.json").write_text(json.dumps(req))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", _REFERENCE, str(d / "req.json")], check=True, env=env, timeout=600)
    return {"greedy": json.loads((d / "greedy.json").read_text()), "prefill": np.load(d / "prefill.npy"),
            "prefill_wasm": saved["logits"]}


@pytest.mark.model
@pytest.mark.slow
def test_greedy_matches_cpython_numpy(results, numpy_reference, default_gguf):
    """The wasm backend's 32 greedy tokens (in Pyodide) equal the numpy backend's (CPython) on 3 prompts."""
    from webinfer.tokenizer import Tokenizer

    rec = results["greedy_tokens_for_cpython_comparison"]
    assert rec["ok"], rec["detail"]
    tok = Tokenizer.from_gguf_metadata(default_gguf.metadata)
    for prompt, got in rec["detail"].items():
        want = numpy_reference["greedy"][prompt]
        assert got == want, f"{prompt!r}: wasm {tok.decode(got)!r} != numpy {tok.decode(want)!r}"


@pytest.mark.model
@pytest.mark.slow
def test_prefill_logits_match_cpython_numpy(results, numpy_reference):
    """A 255-token prefill on the wasm backend against the numpy backend's logits (CPython)."""
    rec = results["prefill_logits_for_cpython_comparison"]
    assert rec["ok"], rec["detail"]
    got, want = numpy_reference["prefill_wasm"], numpy_reference["prefill"]
    assert (got.argmax(-1) == want.argmax(-1)).all()
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 2e-3, f"relative logit error {err:.2e}"
