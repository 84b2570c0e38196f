"""docs/notebooks/quickstart.ipynb executed in JupyterLite (Pyodide kernel 0.5.2 on the local dist), headless Chromium.

scripts/build_lite.py builds the site into build/lite (skipped when nothing
changed); scripts/serve.py serves it at /lite/ beside /pyodide/ and /models/.
The notebook's own cells run: ``%pip install webinfer`` (the site's wheel
index holds the fresh wheel), the progressive cached load inside the
kernel's worker, and a streamed greedy generation.
"""

from __future__ import annotations

import time

import pytest

from .helpers import load_serve

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def lite_site(web_server):
    import importlib.util

    from .helpers import ROOT

    spec = importlib.util.spec_from_file_location("webinfer_build_lite", ROOT / "scripts" / "build_lite.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    load_serve()
    return mod.build()


def test_quickstart_notebook_runs_in_jupyterlite(chrome, web_server, lite_site, artifacts):
    assert (lite_site / "files" / "quickstart.ipynb").exists()
    chrome.get(web_server.url + "lite/notebooks/index.html?path=quickstart.ipynb")
    chrome.wait_for("!!(window.jupyterapp && jupyterapp.shell && jupyterapp.shell.currentWidget)", timeout_s=120)
    chrome.run("""
        const nb = jupyterapp.shell.currentWidget;
        await nb.context.ready;
        await nb.sessionContext.ready;
        await jupyterapp.commands.execute("notebook:run-all-cells");
    """, timeout_s=180)
    t0 = time.monotonic()
    outputs = []
    while time.monotonic() - t0 < 300:
        outputs = chrome.driver.execute_script(
            "return [...document.querySelectorAll('.jp-OutputArea-output')].map((e) => e.textContent)")
        if outputs and "tokens/s" in outputs[-1]:
            break
        errors = chrome.driver.execute_script(
            "return [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type*=error]')]"
            ".map((e) => e.textContent)")
        assert not errors, errors
        time.sleep(1)
    text = "\n".join(outputs)
    (artifacts / "quickstart-notebook-output.txt").write_text(text)
    assert "loaded from the" in text
    assert outputs and outputs[-1].startswith(" Paris"), text


def test_readme_notebook_cell(chrome, lite_site):
    """The README's notebook cell, run as written in the same JupyterLite session."""
    from .test_readme_examples import readme_block

    cell = readme_block("python", "## In a notebook")
    chrome.run("""
        const nb = jupyterapp.shell.currentWidget;
        const model = nb.content.model;
        model.sharedModel.insertCell(model.cells.length, {cell_type: "code", source: args[0]});
        nb.content.activeCellIndex = model.cells.length - 1;
        await jupyterapp.commands.execute("notebook:run-cell");
    """, cell, timeout_s=60)
    t0, last, text = time.monotonic(), None, ""
    while time.monotonic() - t0 < 300:
        text = chrome.driver.execute_script("""
            const cells = jupyterapp.shell.currentWidget.content.widgets;
            return [...cells[cells.length - 1].node.querySelectorAll('.jp-OutputArea-output')]
              .map((e) => e.textContent).join("");""")
        if "Paris" in text and text == last:
            break
        last = text
        time.sleep(2)
    assert text.lstrip().startswith("Paris") or " Paris" in text, text
