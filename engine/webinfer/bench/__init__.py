"""The benchmark harness: one protocol for every engine, backend and place it runs.

    webinfer bench                       run the suite, store rows, print a table
    webinfer bench --compare A B         ratios between two commits, targets or engines
    webinfer bench --serve               the dashboard page (web/dashboard/) on the results

Pieces, top to bottom:

    record.py      the run record (one JSON object per measured configuration),
                   metric names and directions, machine / commit / versions
    targets.py     what can be measured (cpython-numpy, chromium-webgpu, wllama, ...)
    native.py      CPython runners (webinfer in a subprocess; llama-cpp-python)
    browser.py     headless Chromium runners (webinfer in Pyodide; wllama)
    db.py          the SQLite results database: schema, migrations, import, export
    analysis.py    noise, regressions, ratio tables, recommendations
    report.py      docs/performance.md, generated from the database
    dashboard.py   vendoring uPlot, exporting the page's JSON, serving the page
    cli.py         the ``webinfer bench`` command

The protocol is the peers' (bench/README in the shared peers notes): greedy
decode after "The capital of France is" with end-of-generation ignored, and a
255-token prefill of bench/prompt256.txt into an empty cache; one untimed
warm-up, then several runs whose median and spread are kept.
"""
