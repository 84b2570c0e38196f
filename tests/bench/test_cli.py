"""``webinfer bench`` without running a benchmark: import, compare, export, report, check, list."""

from __future__ import annotations

import json

from webinfer.cli import main

from .synthetic import history


def _history_file(tmp_path, n=4, regress=True):
    f = tmp_path / "runs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in history(n, regress=regress)))
    return f


def test_import_compare_export_report(tmp_path, capsys):
    db = str(tmp_path / "r.sqlite")
    f = _history_file(tmp_path)
    assert main(["bench", "--db", db, "--import", str(f)]) == 0
    assert "20 new records" in capsys.readouterr().out

    assert main(["bench", "--db", db, "--compare", "01abcdef", "04abcdef"]) == 0
    out = capsys.readouterr().out
    assert "commits: A = 01abcdef, B = 04abcdef" in out and "B worse" in out

    assert main(["bench", "--db", db, "--compare", "chromium-numpy", "wllama"]) == 0
    assert "chromium-numpy vs wllama" in capsys.readouterr().out

    assert main(["bench", "--db", db, "--compare", "nosuch", "wllama"]) == 2
    assert "not a commit, target, engine or backend" in capsys.readouterr().err

    out_json = tmp_path / "results.json"
    assert main(["bench", "--db", db, "--export", str(out_json)]) == 0
    data = json.loads(out_json.read_text())
    assert len(data["records"]) == 20 and data["baseline"] == "cpython-numpy"
    assert sum(j["flagged"] for j in data["regressions"]) == 1

    md = tmp_path / "performance.md"
    assert main(["bench", "--db", db, "--no-run", "--report", str(md)]) == 0
    assert "## History" in md.read_text()


def test_check_exits_1_on_a_regression(tmp_path, capsys):
    db = str(tmp_path / "r.sqlite")
    main(["bench", "--db", db, "--import", str(_history_file(tmp_path))])
    assert main(["bench", "--db", db, "--no-run", "--check"]) == 1
    assert "REGRESSION chromium-numpy decode_tps" in capsys.readouterr().out

    clean = tmp_path / "clean"
    clean.mkdir()
    db2 = str(tmp_path / "r2.sqlite")
    main(["bench", "--db", db2, "--import", str(_history_file(clean, regress=False))])
    assert main(["bench", "--db", db2, "--no-run", "--check"]) == 0


def test_list_and_bad_options(tmp_path, capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "cpython-numpy" in out and "wllama" in out and "smoke" in out
    assert main(["bench", "--suite", "nope", "--db", str(tmp_path / "r.sqlite")]) == 2
    assert "unknown suite" in capsys.readouterr().err
