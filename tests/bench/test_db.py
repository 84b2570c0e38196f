"""The results database: schema and migrations, inserts, imports (ours and the older JSON lines), export."""

from __future__ import annotations

import json
import sqlite3

import pytest

from webinfer.bench import db as bdb
from webinfer.bench.db import ResultsDB, SchemaError, from_foreign, iso_utc, migrate, normalize

from .synthetic import history

# A line exactly as bench/bench_cpython.py writes it.
LEGACY_LINE = json.dumps({
    "bench": "cpython-numpy", "time": "2026-11-27T05:04:19+0000", "commit": "60250fe",
    "model": "/root/.cache/webinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf", "backend": "numpy", "load_s": 0.609,
    "ttft_s": {"median": 0.067, "min": 0.065, "max": 0.07, "runs": [0.067, 0.065, 0.07]},
    "decode_tokens_per_s": {"median": 34.494, "min": 33.814, "max": 34.695, "runs": [33.814, 34.494, 34.695]},
    "prefill_tokens_per_s": {"median": 704.625, "min": 688.181, "max": 712.359, "runs": [704.6, 712.3, 688.1]},
    "prefill_tokens": 255, "decode_tokens": 128, "peak_rss_mb": 602.7, "text": " Paris.",
    "versions": {"webinfer": "0.1.0", "numpy": "2.4.6"},
    "machine": {"platform": "Linux", "python": "3.11.7", "cpus": 2, "cpu": "Intel(R) Xeon(R) Processor"}})


def test_new_database_is_migrated_to_the_current_schema(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as d:
        assert d.conn.execute("PRAGMA user_version").fetchone()[0] == bdb.SCHEMA_VERSION
        tables = {r[0] for r in d.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "metrics", "imports"} <= tables
    # opening again runs nothing and keeps the data
    with ResultsDB(tmp_path / "r.sqlite") as d:
        assert migrate(d.conn) == bdb.SCHEMA_VERSION


def test_a_newer_database_is_refused_untouched(tmp_path):
    path = tmp_path / "future.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {bdb.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="upgrade webinfer") as e:
        ResultsDB(path)
    assert e.value.found == bdb.SCHEMA_VERSION + 1


def test_records_round_trip_and_duplicates_are_ignored(tmp_path):
    recs = history(2)
    log = tmp_path / "runs.jsonl"
    with ResultsDB(tmp_path / "r.sqlite", log=log) as d:
        assert all(d.add(r) for r in recs)
        assert not d.add(recs[0])
        assert len(d) == len(recs)
        back = {r["id"]: r for r in d.records()}
        assert back["run-1-1"]["metrics"]["decode_tps"] == recs[6]["metrics"]["decode_tps"]
        assert back["run-0-skip"]["status"] == "skipped"
        n = d.conn.execute("SELECT count(*) FROM metrics WHERE name = 'decode_tps'").fetchone()[0]
        assert n == 8
        assert d.commits() == ["01abcdef", "02abcdef"]
    assert len(log.read_text().splitlines()) == len(recs)  # the committed history gets every new record once


def test_the_log_rebuilds_the_database(tmp_path):
    log = tmp_path / "runs.jsonl"
    with ResultsDB(tmp_path / "a.sqlite", log=log) as d:
        for r in history(3):
            d.add(r)
    with ResultsDB(tmp_path / "b.sqlite") as d:
        assert d.import_dir(tmp_path) == len(history(3))
        assert d.import_dir(tmp_path) == 0  # the same content is not read twice
        assert [r["id"] for r in d.records()] == [r["id"] for r in sorted(history(3), key=lambda r: (r["time"], r["id"]))]


def test_legacy_cpython_lines_are_imported(tmp_path):
    f = tmp_path / "cpython.jsonl"
    f.write_text(LEGACY_LINE + "\n\nnot json\n")
    with ResultsDB(tmp_path / "r.sqlite") as d:
        assert d.import_jsonl(f) == 1
        (rec,) = d.records()
    assert rec["target"] == "cpython-numpy" and rec["runtime"] == "cpython" and rec["engine"] == "webinfer"
    assert rec["commit"]["short"] == "60250fe"
    assert rec["time"] == "2026-11-27T05:04:19Z"
    assert rec["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert rec["metrics"]["decode_tps"]["median"] == 34.494 and rec["metrics"]["decode_tps"]["n"] == 3
    assert rec["metrics"]["load_s"]["median"] == 0.609
    assert rec["metrics"]["peak_rss_mb"]["median"] == 602.7
    assert rec["machine"]["id"]  # comparable with records made here on the same CPU


def test_foreign_lines_without_metrics_are_skipped():
    assert from_foreign({"hello": 1}, "x") is None


def test_normalize_names_what_is_missing():
    with pytest.raises(ValueError, match="suite_id"):
        normalize({"id": "x", "time": "t", "engine": "e", "target": "t", "runtime": "r", "backend": "b",
                   "model": "m", "status": "ok"})
    with pytest.raises(ValueError, match="status must be one of"):
        normalize({**history(1)[0], "status": "great"})


def test_iso_utc():
    assert iso_utc("2026-11-27T05:04:19+0100") == "2026-11-27T04:04:19Z"
    assert iso_utc("2026-11-27T05:04:19Z") == "2026-11-27T05:04:19Z"
    assert iso_utc("garbage") == "garbage"


def test_default_database_lives_in_the_checkout(monkeypatch):
    monkeypatch.delenv(bdb.DB_ENV, raising=False)
    p = bdb.default_db_path()
    assert p.name == "webinfer.sqlite" and p.parent.name == "results" and p.parent.parent.name == "bench"
    monkeypatch.setenv(bdb.DB_ENV, "/tmp/x.sqlite")
    assert str(bdb.default_db_path()) == "/tmp/x.sqlite"
