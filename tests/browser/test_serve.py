"""scripts/serve.py: MIME types, range requests, CORS, isolation headers, fault injection."""

from __future__ import annotations

import http.client
import json
import os
import urllib.request

import pytest

from .helpers import load_serve


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    (d / "blob.bin").write_bytes(os.urandom(1_000_000))
    (d / "k.wasm").write_bytes(b"\0asm\1\0\0\0")
    (d / "m.mjs").write_text("export const x = 1;\n")
    (d / "sub").mkdir()
    (d / "sub" / "index.html").write_text("<p>hi</p>")
    return d


@pytest.fixture(scope="module")
def server(data):
    serve = load_serve()
    srv = serve.start({"/": data}, isolate=False)
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def isolated(data):
    serve = load_serve()
    srv = serve.start({"/": data}, isolate=True)
    yield srv
    srv.shutdown()
    srv.server_close()


def get(srv, path, headers=None, method="GET"):
    host, port = srv.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    try:
        body = r.read()
    except http.client.IncompleteRead as e:
        body = e.partial
        r.incomplete = True
    c.close()
    return r, body


def test_mime_types(server):
    assert get(server, "/k.wasm")[0].getheader("Content-Type") == "application/wasm"
    assert get(server, "/m.mjs")[0].getheader("Content-Type").startswith("text/javascript")
    assert get(server, "/blob.bin")[0].getheader("Accept-Ranges") == "bytes"


def test_whole_file_and_ranges(server, data):
    blob = (data / "blob.bin").read_bytes()
    r, body = get(server, "/blob.bin")
    assert r.status == 200 and body == blob
    r, body = get(server, "/blob.bin", {"Range": "bytes=10-19"})
    assert r.status == 206 and body == blob[10:20]
    assert r.getheader("Content-Range") == f"bytes 10-19/{len(blob)}"
    r, body = get(server, "/blob.bin", {"Range": "bytes=999990-"})
    assert r.status == 206 and body == blob[999990:]
    r, body = get(server, "/blob.bin", {"Range": "bytes=-5"})
    assert r.status == 206 and body == blob[-5:]
    r, body = get(server, "/blob.bin", {"Range": "bytes=999999-2000000"})
    assert r.status == 206 and body == blob[-1:]
    r, _ = get(server, "/blob.bin", {"Range": "bytes=1000000-"})
    assert r.status == 416 and r.getheader("Content-Range") == f"bytes */{len(blob)}"
    r, body = get(server, "/blob.bin", {"Range": "bytes=0-1,5-6"})  # multi-range: whole file
    assert r.status == 200 and len(body) == len(blob)


def test_if_range(server, data):
    r, _ = get(server, "/blob.bin", method="HEAD")
    etag = r.getheader("ETag")
    assert get(server, "/blob.bin", {"Range": "bytes=0-9", "If-Range": etag})[0].status == 206
    assert get(server, "/blob.bin", {"Range": "bytes=0-9", "If-Range": '"other"'})[0].status == 200


def test_cors_and_preflight(server):
    r, _ = get(server, "/blob.bin", {"Origin": "http://elsewhere"})
    assert r.getheader("Access-Control-Allow-Origin") == "*"
    assert "Content-Range" in r.getheader("Access-Control-Expose-Headers")
    r, _ = get(server, "/blob.bin", {"Access-Control-Request-Headers": "range"}, method="OPTIONS")
    assert r.status == 204 and "Range" in r.getheader("Access-Control-Allow-Headers")


def test_isolation_headers(server, isolated):
    assert get(server, "/k.wasm")[0].getheader("Cross-Origin-Opener-Policy") is None
    r, _ = get(isolated, "/k.wasm")
    assert r.getheader("Cross-Origin-Opener-Policy") == "same-origin"
    assert r.getheader("Cross-Origin-Embedder-Policy") == "require-corp"


def test_directories_and_escapes(server):
    r, _ = get(server, "/sub")
    assert r.status == 301 and r.getheader("Location") == "/sub/"
    r, body = get(server, "/sub/")
    assert r.status == 200 and body == b"<p>hi</p>"
    assert get(server, "/../etc/passwd")[0].status == 404
    assert get(server, "/sub/../../etc/passwd")[0].status == 404
    assert get(server, "/nope")[0].status == 404


def test_fault_injection_and_stats(server, data):
    blob = (data / "blob.bin").read_bytes()
    r, body = get(server, "/blob.bin?cut=1000")
    assert getattr(r, "incomplete", False) and body == blob[:1000]
    r, body = get(server, "/blob.bin?cut=1000", {"Range": "bytes=500-1999"})
    assert getattr(r, "incomplete", False) and body == blob[500:1000]
    assert get(server, "/blob.bin?status=503")[0].status == 503
    with urllib.request.urlopen(server.url + "__serve/stats") as f:
        stats = json.load(f)
    assert stats["/blob.bin"] >= len(blob)


def test_main_prints_url(tmp_path, capsys):
    serve = load_serve()
    srv = serve.Server(("127.0.0.1", 0), {"/": tmp_path})
    assert srv.url.startswith("http://127.0.0.1:")
    srv.server_close()
