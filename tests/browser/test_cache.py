"""The browser's download/cache logic, run in CPython: urllib stands in for XHR, a folder for OPFS.

Same code as in the worker (webinfer.browser.cache over webinfer._js); only
the two stand-ins differ.  Served by scripts/serve.py with its fault injection.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random

import pytest

from webinfer.browser.cache import CachedHttpSource, HttpRangeSource, cache_name
from webinfer.browser.errors import DownloadError, IntegrityError, StorageQuotaError

from .helpers import load_serve

SIZE = 3_000_000
CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    blob = random.Random(0).randbytes(SIZE)
    (d / "m.gguf").write_bytes(blob)
    srv = load_serve().start({"/": d})
    yield srv, d, blob
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def opfs(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBINFER_OPFS_DIR", str(tmp_path / "opfs"))
    monkeypatch.delenv("WEBINFER_OPFS_QUOTA", raising=False)
    monkeypatch.setattr("webinfer.browser.cache.RETRY_WAIT_S", (0.0,))
    return tmp_path / "opfs"


def open_source(url, **kw):
    kw.setdefault("chunk", CHUNK)
    return asyncio.run(CachedHttpSource.open(url, **kw))


def read_all_shuffled(src, blob, pieces=40):
    """Read the file in random-order ranges, as the model loader does, and check every byte."""
    rng = random.Random(1)
    cuts = sorted(rng.sample(range(1, SIZE), pieces - 1))
    ranges = list(zip([0] + cuts, cuts + [SIZE]))
    rng.shuffle(ranges)
    for a, b in ranges:
        assert bytes(src.read(a, b - a)) == blob[a:b]


def test_download_then_cache_hit(served, opfs):
    srv, _, blob = served
    url = srv.url + "m.gguf"
    progress = []
    src = open_source(url, progress=progress.append)
    assert src.size == SIZE and src.report.source == "network"
    read_all_shuffled(src, blob)
    report = src.finish()
    src.close()
    assert report.network_bytes == SIZE and report.requests == -(-SIZE // CHUNK)
    assert report.sha256 == hashlib.sha256(blob).hexdigest()
    assert progress[-1]["downloaded"] == SIZE and progress[-1]["total"] == SIZE
    meta = json.loads((opfs / (cache_name(url) + ".json")).read_text())
    assert meta["complete"] and meta["size"] == SIZE and meta["sha256"] == report.sha256

    src = open_source(url)  # second load: from storage, verified against the recorded sha256
    assert src.report.source == "cache" and src.report.network_bytes == 0 and src.report.requests == 0
    assert src.report.verified
    read_all_shuffled(src, blob)
    assert src.finish().network_bytes == 0
    src.close()


def test_interrupted_download_resumes(served, opfs):
    srv, _, blob = served
    url = srv.url + "m.gguf"
    cut = 1_000_000
    src = open_source(url + f"?cut={cut}", key=url)
    with pytest.raises(DownloadError, match="interrupted") as e:
        read_all_shuffled(src, blob)
    src.close()
    kept = e.value.offset
    assert kept == cut // CHUNK * CHUNK and e.value.status == 0

    src = open_source(url, key=url, sha256=hashlib.sha256(blob).hexdigest())
    assert src.report.source == "resumed" and src.report.cached_bytes == kept
    read_all_shuffled(src, blob)
    report = src.finish()
    src.close()
    assert report.network_bytes == SIZE - kept and report.verified
    assert "resumed at byte" in " ".join(report.events)


def test_truncated_cache_is_refetched(served, opfs):
    srv, _, blob = served
    url = srv.url + "m.gguf"
    src = open_source(url)
    src.finish()
    src.close()
    with open(opfs / (cache_name(url) + ".gguf"), "r+b") as f:
        f.truncate(SIZE - 10)
    src = open_source(url)
    assert "truncated" in src.report.refetched_because
    read_all_shuffled(src, blob)
    assert src.finish().network_bytes == SIZE
    src.close()


@pytest.mark.parametrize("known", [True, False], ids=["expected-sha256", "recorded-sha256"])
def test_corrupt_cache_is_refetched(served, opfs, known):
    srv, _, blob = served
    url = srv.url + "m.gguf"
    sha = hashlib.sha256(blob).hexdigest() if known else None
    src = open_source(url, sha256=sha)
    src.finish()
    src.close()
    with open(opfs / (cache_name(url) + ".gguf"), "r+b") as f:
        f.seek(12345)
        f.write(b"\xff\x00\xff")
    src = open_source(url, sha256=sha)
    assert "sha256" in src.report.refetched_because
    read_all_shuffled(src, blob)
    assert src.finish().network_bytes == SIZE
    src.close()


def test_wrong_sha256_or_size_is_an_error(served, opfs):
    srv, _, blob = served
    url = srv.url + "m.gguf"
    src = open_source(url, sha256="0" * 64)
    with pytest.raises(IntegrityError, match="sha256"):
        src.finish()
    src.close()
    assert (opfs / (cache_name(url) + ".gguf")).stat().st_size == 0  # nothing usable kept
    with pytest.raises(IntegrityError, match="expected"):
        open_source(url, size=SIZE + 1)


def test_http_errors(served, opfs):
    srv, _, _ = served
    with pytest.raises(DownloadError, match="HTTP 404") as e:
        open_source(srv.url + "missing.gguf")
    assert e.value.status == 404
    assert not any(opfs.iterdir())  # no empty leftovers
    with pytest.raises(DownloadError, match="HTTP 503"):
        open_source(srv.url + "m.gguf?status=503")


def test_quota(served, opfs, monkeypatch):
    srv, _, _ = served
    monkeypatch.setenv("WEBINFER_OPFS_QUOTA", str(SIZE // 2))
    with pytest.raises(StorageQuotaError, match="quota") as e:
        open_source(srv.url + "m.gguf")
    assert e.value.needed > 0
    assert not any(p.stat().st_size for p in opfs.iterdir())


def test_write_refused_by_quota(served, opfs, monkeypatch):
    """The estimate can be wrong; a refused write must still end cleanly."""
    srv, _, blob = served
    monkeypatch.setattr("webinfer._js.storage_estimate", lambda: asyncio.sleep(0, {}))
    monkeypatch.setenv("WEBINFER_OPFS_QUOTA", str(SIZE // 2))
    src = open_source(srv.url + "m.gguf")
    with pytest.raises(StorageQuotaError, match="webinfer.cache.clear"):
        read_all_shuffled(src, blob)
    src.close()


def test_changed_file_restarts(served, opfs):
    srv, d, blob = served
    url = srv.url + "m.gguf"
    src = open_source(url + "?cut=700000", key=url)
    with pytest.raises(DownloadError):
        read_all_shuffled(src, blob)
    src.close()
    st = os.stat(d / "m.gguf")
    os.utime(d / "m.gguf", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # new ETag: "another version"
    src = open_source(url, key=url)
    read_all_shuffled(src, blob)
    report = src.finish()
    src.close()
    assert any("restarting" in ev for ev in report.events)
    assert report.sha256 == hashlib.sha256(blob).hexdigest()


def test_server_without_ranges(served, opfs):
    srv, _, blob = served
    url = srv.url + "m.gguf?ranges=0"
    src = open_source(url)
    read_all_shuffled(src, blob)
    assert src.finish().requests == 1
    src.close()
    direct = HttpRangeSource(url)
    assert direct.size == SIZE and bytes(direct.read(5, 10)) == blob[5:15]


def test_direct_range_source(served):
    srv, _, blob = served
    src = HttpRangeSource(srv.url + "m.gguf")
    assert src.size == SIZE
    read_all_shuffled(src, blob, pieces=10)
    assert src.report.network_bytes >= SIZE


@pytest.mark.model
def test_load_url_streams_the_model(default_model_path, opfs):
    """webinfer.browser.load: the worker's loading path, here over urllib and a folder."""
    import webinfer.browser

    srv = load_serve().start({"/": default_model_path.parent})
    try:
        url = srv.url + default_model_path.name
        reports = []
        engine = asyncio.run(webinfer.browser.load(url, on_progress=reports.append))
        stats = engine.load_stats
        assert stats["source"] == "network" and stats["network_bytes"] == stats["file_bytes"]
        assert reports[-1]["phase"] == "ready" and reports[-1]["progress"] == 1.0
        assert any(r["phase"] == "tensors" and r["loaded"] < r["total"] for r in reports)  # loading while downloading
        assert engine.complete("The capital of France is", max_tokens=3, temperature=0).startswith(" Paris")
        again = asyncio.run(webinfer.browser.load(url))
        assert again.load_stats["source"] == "cache" and again.load_stats["network_bytes"] == 0
    finally:
        srv.shutdown()
        srv.server_close()
