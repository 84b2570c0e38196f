"""The benchmark results database: SQLite (stdlib ``sqlite3``), one file, history across commits.

Schema (version 1)::

    runs      one row per measured configuration (a record, see record.py)
      id TEXT PRIMARY KEY          uuid hex (imports of old JSON lines: a hash of the line)
      suite_id TEXT                the invocation; rows of one suite ran back to back on one machine,
                                   so ratios between them are comparable even on a noisy machine
      time TEXT                    ISO 8601 UTC, when the run started
      commit_sha, commit_short, commit_time TEXT; dirty INTEGER (0/1: engine files differed from the commit)
      engine, engine_version, target, runtime, browser, backend TEXT
      model, quant, profile TEXT; threads INTEGER
      machine_id TEXT              record.machine_info()["id"]: same CPU, cores and memory
      status TEXT                  ok | failed | skipped; error TEXT says why
      record TEXT                  the whole record as JSON (capability report, versions, machine, raw runs)
    metrics   one row per (run, metric): median, min, max, n, unit (names in record.METRICS)
    imports   JSON-lines files already imported: path, sha256 of the content, rows, time

Migrations: ``PRAGMA user_version`` holds the schema version; :data:`MIGRATIONS`
is a list of SQL scripts, the i-th taking a database from version i to i+1.
Opening a database runs the missing ones in one transaction each. A database
newer than this code is refused, never modified.

History lives in git as JSON lines (bench/results/runs.jsonl, append-only, one
record a line): the SQLite file is a gitignored index rebuilt from them, so a
fresh clone gets every committed run with ``ResultsDB.open()`` and merges of
concurrent runs never conflict inside a binary file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator

from .record import METRICS, RECORD_SCHEMA, STATUSES, machine_id, repo_root

SCHEMA_VERSION = 1
DB_ENV = "WEBINFER_BENCH_DB"
DEFAULT_DB_NAME = "webinfer.sqlite"
DEFAULT_LOG_NAME = "runs.jsonl"
FOREIGN_CONVERTER_VERSION = 2  # bump when from_foreign() changes: imported files are converted again

MIGRATIONS: list[str] = [
    # 0 -> 1
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        suite_id TEXT NOT NULL,
        time TEXT NOT NULL,
        commit_sha TEXT,
        commit_short TEXT,
        commit_time TEXT,
        dirty INTEGER NOT NULL DEFAULT 0,
        engine TEXT NOT NULL,
        engine_version TEXT,
        target TEXT NOT NULL,
        runtime TEXT NOT NULL,
        browser TEXT,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        quant TEXT,
        profile TEXT,
        threads INTEGER,
        machine_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
        error TEXT,
        record TEXT NOT NULL
    );
    CREATE INDEX runs_time ON runs (time);
    CREATE INDEX runs_series ON runs (engine, target, model, machine_id);
    CREATE INDEX runs_commit ON runs (commit_short);
    CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        median REAL NOT NULL,
        min REAL,
        max REAL,
        n INTEGER,
        unit TEXT,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE imports (
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        rows INTEGER NOT NULL,
        time TEXT NOT NULL,
        PRIMARY KEY (path, sha256)
    );
    """,
]


class SchemaError(RuntimeError):
    """The database file was written by a newer webinfer (its schema version is unknown here)."""

    def __init__(self, path: str, found: int, supported: int):
        super().__init__(f"{path} has benchmark schema version {found}; this webinfer knows up to {supported}: "
                         "upgrade webinfer or choose another --db")
        self.path, self.found, self.supported = path, found, supported


def default_results_dir() -> Path:
    root = repo_root()
    return (root / "bench" / "results") if root else Path.home() / ".cache" / "webinfer" / "bench"


def default_db_path() -> Path:
    """$WEBINFER_BENCH_DB, else bench/results/webinfer.sqlite in the checkout."""
    env = os.environ.get(DB_ENV)
    return Path(env) if env else default_results_dir() / DEFAULT_DB_NAME


def migrate(conn: sqlite3.Connection, path: str = "<db>") -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; return the version found before."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaError(path, found, SCHEMA_VERSION)
    for version in range(found, SCHEMA_VERSION):
        with conn:  # one transaction per step: a failed step leaves the previous version intact
            conn.executescript("BEGIN;" + MIGRATIONS[version] + f"; PRAGMA user_version = {version + 1};")
    return found


def iso_utc(text: str) -> str:
    """``2025-11-27T05:10:00+0100`` (or any ISO 8601 form) as ``2025-11-27T04:10:00Z``; unparseable text unchanged."""
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            t = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return text
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def browser_name(ua: str | None) -> str | None:
    """"Chromium 156.0.0.0" from a user agent string (other values unchanged)."""
    if not ua or "Mozilla/" not in ua:
        return ua
    import re

    for pat, name in ((r"Firefox/([\d.]+)", "Firefox"), (r"(?:HeadlessChrome|Chrome|Chromium)/([\d.]+)", "Chromium"),
                      (r"Version/([\d.]+).*Safari", "Safari")):
        m = re.search(pat, ua)
        if m:
            return f"{name} {m.group(1)}"
    return ua


def _line_id(line: str) -> str:
    return "imp-" + hashlib.sha256(line.strip().encode()).hexdigest()[:32]


class ResultsDB:
    """A results database. ``ResultsDB.open()`` opens (and migrates) the default one."""

    def __init__(self, path: str | os.PathLike, *, log: str | os.PathLike | None = None):
        """``log``: a JSON-lines file every new record is also appended to (the committed history)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys = ON")
        migrate(self.conn, str(self.path))
        self.log = Path(log) if log else None

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, sync: bool = True) -> "ResultsDB":
        """Open ``path`` (default :func:`default_db_path`). For the default database, the committed
        JSON lines in its folder are imported first (``sync``) and new records are appended to
        runs.jsonl there."""
        if path is None:
            path = default_db_path()
            db = cls(path, log=Path(path).parent / DEFAULT_LOG_NAME)
            if sync:
                db.import_dir(Path(path).parent)
            return db
        return cls(path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ResultsDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- writing

    def add(self, record: dict, *, log: bool = True, replace: bool = False) -> bool:
        """Insert one record (ignored if its id is already there, unless ``replace``); append it to the
        log. True if it was written."""
        rec = normalize(record)
        c = rec["commit"] or {}
        with self.conn:
            if replace:
                self.conn.execute("DELETE FROM runs WHERE id = ?", (rec["id"],))
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO runs (id, suite_id, time, commit_sha, commit_short, commit_time, dirty, engine,"
                " engine_version, target, runtime, browser, backend, model, quant, profile, threads, machine_id,"
                " status, error, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (rec["id"], rec["suite_id"], rec["time"], c.get("sha"), c.get("short"), c.get("time"),
                 int(bool(c.get("dirty"))), rec["engine"], rec.get("engine_version"), rec["target"], rec["runtime"],
                 rec.get("browser"), rec["backend"], rec["model"], rec.get("quant"), rec.get("profile"),
                 rec.get("threads"), (rec.get("machine") or {}).get("id"), rec["status"], rec.get("error"),
                 json.dumps(rec, sort_keys=True)))
            if cur.rowcount == 0:
                return False
            self.conn.executemany(
                "INSERT INTO metrics (run_id, name, median, min, max, n, unit) VALUES (?,?,?,?,?,?,?)",
                [(rec["id"], name, m["median"], m.get("min"), m.get("max"), m.get("n"),
                  m.get("unit") or METRICS.get(name, ("",))[0]) for name, m in rec["metrics"].items()])
        if log and self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
        return True

    def import_jsonl(self, path: str | os.PathLike) -> int:
        """Import a JSON-lines file of records (ours, or the older per-script formats); return rows added.

        A file whose content was imported before is skipped at once; ids make re-imports harmless anyway.
        """
        path = Path(path)
        data = path.read_bytes()
        # the converter's version is part of the key: a better conversion re-imports old files
        digest = hashlib.sha256(data).hexdigest() + f":{FOREIGN_CONVERTER_VERSION}"
        key = str(path.resolve())
        if self.conn.execute("SELECT 1 FROM imports WHERE path = ? AND sha256 = ?", (key, digest)).fetchone():
            return 0
        added = 0
        for line in data.decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            ours = obj.get("schema") == RECORD_SCHEMA
            rec = obj if ours else from_foreign(obj, _line_id(line), source=path.name)
            if rec is not None:
                added += self.add(rec, log=False, replace=not ours)
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO imports (path, sha256, rows, time) VALUES (?,?,?,datetime('now'))",
                              (key, digest, added))
        return added

    def import_dir(self, folder: str | os.PathLike) -> int:
        return sum(self.import_jsonl(p) for p in sorted(Path(folder).glob("*.jsonl")))

    # -------------------------------------------------------------- reading

    def records(self, *, where: str = "1", params: Iterable[Any] = ()) -> list[dict]:
        """Full records, oldest first, filtered by an SQL condition on ``runs`` columns."""
        rows = self.conn.execute(f"SELECT record FROM runs WHERE {where} ORDER BY time, id", tuple(params))
        return [json.loads(r[0]) for r in rows]

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records())

    def __len__(self) -> int:
        return self.conn.execute("SELECT count(*) FROM runs").fetchone()[0]

    def metric_rows(self) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT r.id, r.time, r.commit_short, r.engine, r.target, r.model, r.machine_id, m.name, m.median,"
            " m.min, m.max, m.n FROM metrics m JOIN runs r ON r.id = m.run_id ORDER BY r.time").fetchall()

    def commits(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT commit_short FROM runs GROUP BY commit_short ORDER BY min(time)")]


# ------------------------------------------------------------------ normalizing

_REQUIRED = ("id", "suite_id", "time", "engine", "target", "runtime", "backend", "model", "status")


def normalize(rec: dict) -> dict:
    """Check a record has what the table needs; fill defaults. Raises ValueError naming what is missing."""
    missing = [k for k in _REQUIRED if not rec.get(k)]
    if missing:
        raise ValueError(f"benchmark record lacks {', '.join(missing)}: {json.dumps(rec)[:200]}")
    if rec["status"] not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {rec['status']!r}")
    out = dict(rec)
    out.setdefault("schema", RECORD_SCHEMA)
    out.setdefault("commit", {})
    out["metrics"] = {k: v for k, v in (rec.get("metrics") or {}).items()
                      if isinstance(v, dict) and isinstance(v.get("median"), (int, float))}
    for k in ("capability", "versions", "machine", "extra", "protocol"):
        out.setdefault(k, {})
    return out


def _summary_of(v: Any) -> dict | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return {"median": float(v), "min": float(v), "max": float(v), "n": 1}
    if isinstance(v, dict) and isinstance(v.get("median"), (int, float)):
        runs = v.get("runs") or v.get("values")
        return {"median": v["median"], "min": v.get("min", v["median"]), "max": v.get("max", v["median"]),
                "n": len(runs) if isinstance(runs, list) else v.get("n", 1), **({"values": runs} if runs else {})}
    return None


# Keys of the older one-script-per-target JSON lines (bench/bench_cpython.py and its likes) -> our metrics.
_FOREIGN_METRICS = {
    "decode_tokens_per_s": "decode_tps", "decode_tps": "decode_tps",
    "prefill_tokens_per_s": "prefill_tps", "prefill_tps": "prefill_tps",
    "ttft_s": "ttft_s", "load_s": "load_s", "load_cached_s": "load_cached_s", "boot_s": "boot_s",
    "peak_rss_mb": "peak_rss_mb", "wasm_heap_mb": "wasm_heap_mb", "js_heap_mb": "js_heap_mb",
    "gpu_buffer_mb": "gpu_buffer_mb",
}


def from_foreign(obj: dict, rid: str, *, source: str = "") -> dict | None:
    """A record from a JSON line of another benchmark script (e.g. bench/bench_cpython.py's
    ``{"bench": "cpython-numpy", "decode_tokens_per_s": {median, min, max, runs}, ...}``); None
    if the line has no metric we know."""
    metrics = {}
    for key, name in _FOREIGN_METRICS.items():
        s = _summary_of(obj.get(key))
        if s is not None and name not in metrics:
            metrics[name] = {**s, "unit": METRICS[name][0]}
    if not metrics:
        return None
    bench = str(obj.get("bench") or obj.get("target") or Path(source).stem or "unknown")
    commit = obj.get("commit")
    if isinstance(commit, str):
        commit = {"sha": None, "short": commit[:8], "dirty": False}
    runtime = "chromium" if any(w in bench for w in ("browser", "chromium", "wasm", "pyodide")) else "cpython"
    model = obj.get("model") or "unknown"
    model = Path(str(model)).name
    model = model[:-5] if model.endswith(".gguf") else model
    time_ = iso_utc(str(obj.get("time") or "1970-01-01T00:00:00Z"))
    machine = dict(obj.get("machine") or {})
    if machine and "id" not in machine:
        machine["id"] = machine_id(machine)
    return {
        "schema": RECORD_SCHEMA, "id": rid, "suite_id": rid, "time": time_, "commit": commit or {},
        "engine": obj.get("engine", "webinfer"), "engine_version": (obj.get("versions") or {}).get("webinfer"),
        "target": bench, "runtime": obj.get("runtime", runtime), "browser": browser_name(obj.get("browser")),
        "backend": obj.get("backend") or "numpy", "model": model, "model_file": obj.get("model"),
        "quant": obj.get("quant"), "profile": obj.get("profile"), "threads": obj.get("threads"),
        "status": "ok", "error": None,
        "protocol": {k: obj[k] for k in ("decode_tokens", "prefill_tokens") if k in obj},
        "metrics": metrics, "capability": obj.get("capability") or {}, "versions": obj.get("versions") or {},
        "machine": machine, "extra": {"imported_from": source, "text": obj.get("text")},
    }
