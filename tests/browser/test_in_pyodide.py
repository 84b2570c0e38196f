"""The engine inside Pyodide (pytest-pyodide, ``--runtime=chrome,node``): same wheel, same answers.

Each test body runs inside Pyodide; the host side (CPython) computes what
to expect with the same package and passes it in.  The webinfer wheel and the
model come from scripts/serve.py (CORS on, so the pytest-pyodide page on
another port can fetch them).  The model is loaded once per runtime and kept
in the interpreter (``sys._webinfer_test_engine``) for the later tests.

Run alone: ``.venv/bin/python -m pytest tests/browser/test_in_pyodide.py --runtime=node``.
The root conftest points pytest-pyodide at the test dist built by setup
(``$WEBINFER_CACHE/pyodide/0.27.7-test``) and picks chrome and node.
"""

from __future__ import annotations

import numpy as np
import pytest
from pytest_pyodide import run_in_pyodide

from .helpers import CACHE, MODEL_URL, load_serve

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]

VOCAB_DIR = CACHE / "testdata" / "vocab"
TRICKY = ["Hello world", "  leading spaces and\ttabs\n\nnewlines", "naïve café — déjà vu", "日本語のテキスト",
          "emoji 🤗🚀 and numbers 1234567 3.14159", "<|im_start|>user\nHi<|im_end|>", "don't won't y'all's",
          "x = np.zeros((3, 4), dtype=np.float32)  # shape comment"]


@run_in_pyodide(packages=["micropip", "numpy"])
async def _install(selenium, url):
    import micropip

    await micropip.install(url)


@pytest.fixture
def pyo(selenium, web_server):
    """A Pyodide (per runtime, shared by the module) with the freshly built webinfer wheel installed."""
    if not selenium.run("import importlib.util\nimportlib.util.find_spec('webinfer') is not None"):
        wheel = load_serve().build_wheel()  # built by the web_server fixture; this only finds it
        _install(selenium, web_server.url + "wheel/" + wheel.name)
    return selenium


@run_in_pyodide(packages=["numpy"])
async def _ensure_engine(selenium, url):
    import sys

    if getattr(sys, "_webinfer_test_engine", None) is None:
        from pyodide.http import pyfetch

        from webinfer.formats.source import BytesSource
        from webinfer.runtime.engine import Engine

        data = await (await pyfetch(url)).bytes()
        sys._webinfer_test_engine = Engine.load(BytesSource(data), n_ctx=256)


@pytest.fixture
def engine(pyo, web_server):
    _ensure_engine(pyo, web_server.url + MODEL_URL.lstrip("/"))
    return pyo


def read_vocab_cases(name: str, limit: int = 60) -> list[tuple[str, list[int]]]:
    """llama.cpp's test-tokenizer-0 vectors: inputs split on the separator, one line of ids each."""
    base = VOCAB_DIR / f"ggml-vocab-{name}.gguf"
    if not base.with_suffix(".gguf.inp").exists():
        pytest.skip(f"{base}.inp missing: run scripts/setup.sh")
    raw = base.with_suffix(".gguf.inp").read_bytes().split(b"\n__ggml_vocab_test__\n")
    outs = base.with_suffix(".gguf.out").read_text(encoding="utf-8").split("\n")
    return [(s.decode("utf-8"), [int(x) for x in o.split()]) for s, o in zip(raw, outs)][:limit]


# ------------------------------------------------------------------------ tests


@run_in_pyodide(packages=["numpy"])
def _gguf_roundtrip(selenium):
    import io

    import numpy as np

    from webinfer.formats.ggml_types import GGMLType
    from webinfer.formats.gguf import GGUFFile
    from webinfer.formats.gguf_writer import GGUFWriter

    buf = io.BytesIO()
    w = GGUFWriter(buf)
    w.add_metadata("general.architecture", "llama")
    w.add_metadata("general.name", "tiny ✓")
    x = np.arange(64, dtype=np.float32).reshape(2, 32)
    w.add_tensor("x", x, GGMLType.F32, (2, 32))
    w.write()
    g = GGUFFile.from_bytes(buf.getvalue())
    assert g.metadata["general.name"] == "tiny ✓"
    assert (g.tensor("x") == x).all()
    return g.version


def test_gguf_reader_writer(pyo):
    assert _gguf_roundtrip(pyo) == 3


@run_in_pyodide(packages=["numpy"])
def _model_header(selenium):
    import sys

    g = sys._webinfer_test_engine.gguf
    t = g.tensors["blk.0.attn_q.weight"]
    return [g.architecture, len(g.tensors), list(t.shape), t.type_name, g.metadata["llama.block_count"]]


def test_model_header(engine, default_gguf):
    t = default_gguf.tensors["blk.0.attn_q.weight"]
    want = ["llama", len(default_gguf.tensors), list(t.shape), t.type_name, default_gguf.metadata["llama.block_count"]]
    assert _model_header(engine) == want


@run_in_pyodide(packages=["numpy"])
def _tokenize(selenium, texts):
    import sys

    tok = sys._webinfer_test_engine.tokenizer
    ids = [tok.encode(t, add_special=False, parse_special=True) for t in texts]
    return ids, [tok.decode(i) for i in ids]


def test_tokenizer_matches_cpython(engine, default_model_path):
    from webinfer.formats.gguf import GGUFFile
    from webinfer.tokenizer import Tokenizer

    with GGUFFile.open(default_model_path) as g:
        tok = Tokenizer.from_gguf_metadata(g.metadata)
    want = [tok.encode(t, add_special=False, parse_special=True) for t in TRICKY]
    ids, texts = _tokenize(engine, TRICKY)
    assert ids == want
    assert texts == TRICKY


@run_in_pyodide(packages=["numpy"])
async def _vocab_vectors(selenium, url, cases):
    from pyodide.http import pyfetch

    from webinfer.formats.gguf import GGUFFile
    from webinfer.tokenizer import Tokenizer

    g = GGUFFile.from_bytes(await (await pyfetch(url)).bytes())
    tok = Tokenizer.from_gguf_metadata(g.metadata)
    return [text for text, want in cases if tok.encode(text, add_special=False, parse_special=False) != want]


@pytest.mark.parametrize("name", ["gpt-2", "llama-spm"])
def test_llama_cpp_tokenizer_vectors(pyo, web_server, name):
    cases = read_vocab_cases(name)
    failed = _vocab_vectors(pyo, web_server.url + f"vocab/ggml-vocab-{name}.gguf", cases)
    assert failed == []


@run_in_pyodide(packages=["numpy"])
async def _logits(selenium, ref_url, n_prompts, greedy_n):
    import io
    import sys

    import numpy as np
    from pyodide.http import pyfetch

    from webinfer.runtime.session import Session

    ref = np.load(io.BytesIO(await (await pyfetch(ref_url)).bytes()))
    model = sys._webinfer_test_engine.model
    worst, greedy_ok, last = 0.0, [], None
    for i in range(n_prompts):
        ids = ref[f"prompt{i}_ids"].tolist()
        s = Session(model, 256)
        got = s.evaluate(ids, n_logits=len(ids))
        worst = max(worst, float(np.abs(got - ref[f"prompt{i}_logits"]).max()))
        assert (got.argmax(-1) == ref[f"prompt{i}_logits"].argmax(-1)).all()
        if i == 0:
            last = got[-1]
            out, logits = [], got[-1]
            for _ in range(greedy_n):
                out.append(int(np.argmax(logits)))
                logits = s.evaluate([out[-1]])[-1]
            greedy_ok = out == ref["prompt0_greedy"].tolist()[:greedy_n]
    return worst, greedy_ok, last.tolist()


def test_logits_match_reference_and_cpython(engine, web_server, default_model):
    from webinfer.runtime.session import Session

    from ..model.test_reference_logits import LOGIT_ATOL
    from ..conftest import REFERENCE_DIR

    ref = np.load(REFERENCE_DIR / "smollm2_135m_q4_1.npz")
    worst, greedy_ok, last = _logits(engine, web_server.url + "reference/smollm2_135m_q4_1.npz", 3, 8)
    assert worst < LOGIT_ATOL  # same tolerance as CPython against transformers
    assert greedy_ok
    cpython = Session(default_model, 256).evaluate(ref["prompt0_ids"].tolist())[-1]
    np.testing.assert_allclose(np.array(last, dtype=np.float32), cpython, atol=1e-3, rtol=0)


@run_in_pyodide(packages=["numpy"])
def _generate(selenium):
    import sys

    e = sys._webinfer_test_engine
    text = e.complete("The capital of France is", max_tokens=4, temperature=0)
    chat = e.chat.completions.create(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                     max_tokens=12, temperature=0)
    return text, chat["choices"][0]["message"]["content"], e.last_stats.as_dict()


def test_generation(engine):
    text, chat, stats = _generate(engine)
    assert text.startswith(" Paris")
    assert "Paris" in chat
    assert stats["completion_tokens"] >= 1 and stats["decode_tokens_per_s"] > 0
