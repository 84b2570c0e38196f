#!/usr/bin/env python3
"""Serve the chat page, the webinfer wheel, the Pyodide dist and the models on 127.0.0.1.

    python scripts/serve.py [--port 8000] [--isolate] [--mount /url/=DIR ...] [--no-build]

Mounts (URL prefix -> folder), longest prefix first:

    /          web/                                (chat page, webinfer.js, worker.js)
    /wheel/    build/wheel/                        (built here first unless --no-build)
    /pyodide/  $WEBINFER_CACHE/pyodide/0.27.7/     (the local Pyodide dist)
    /models/   $WEBINFER_CACHE/models/             (GGUF files)
    /lite/     build/lite/                         (the JupyterLite site: scripts/build_lite.py)

What it does that ``python -m http.server`` does not:

- MIME types the browser insists on (``.wasm`` application/wasm, ``.mjs``).
- HTTP range requests (one range: ``bytes=a-b``, ``a-``, ``-n``) answered
  206 with Content-Range; ``Accept-Ranges``, a strong ETag, ``If-Range``; 416
  for a range past the end.
- CORS (``Access-Control-Allow-Origin: *`` and the Range headers), so a page
  on another port (pytest-pyodide's server) can read the models.
- ``--isolate``: COOP/COEP/CORP headers, making pages cross-origin isolated
  (SharedArrayBuffer, WASM threads).
- Fault injection for tests, on any file: ``?cut=N`` announces the full
  length but closes the connection once the byte at file offset N would be
  sent (an interrupted download); ``?rate=BYTES_PER_S`` sends slowly;
  ``?status=CODE`` answers with that error status; ``?ranges=0`` ignores
  Range headers (a server without range support).
- ``GET /__serve/stats``: JSON of body bytes sent per path, so a test can see
  whether a load came from the browser's cache or the network.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import os
import posixpath
import re
import subprocess
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")
PYODIDE_VERSION = "0.27.7"
SEND_CHUNK = 1 << 18  # 256 KiB per socket write; small enough for ?cut and ?rate to be precise

MIME = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".ipynb": "application/json",
    ".wasm": "application/wasm",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".tar": "application/x-tar",
    ".gz": "application/gzip",
    ".gguf": "application/octet-stream",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".py": "text/x-python; charset=utf-8",
    ".ts": "text/plain; charset=utf-8",
}


def default_mounts() -> dict[str, Path]:
    return {
        "/": ROOT / "web",
        "/wheel/": ROOT / "build" / "wheel",
        "/pyodide/": CACHE / "pyodide" / PYODIDE_VERSION,
        "/models/": CACHE / "models",
        "/lite/": ROOT / "build" / "lite",
    }


def wheel_is_stale(wheel_dir: Path = ROOT / "build" / "wheel") -> bool:
    wheels = sorted(wheel_dir.glob("webinfer-*.whl"))
    if not wheels:
        return True
    built = min(w.stat().st_mtime for w in wheels)
    sources = [ROOT / "pyproject.toml", *(ROOT / "engine").rglob("*"), *(ROOT / "wgsl").rglob("*")]
    return any(p.is_file() and "__pycache__" not in p.parts and p.stat().st_mtime > built for p in sources)


def build_wheel(wheel_dir: Path = ROOT / "build" / "wheel", *, quiet: bool = True) -> Path:
    """Build the webinfer wheel into ``wheel_dir`` if any source is newer than it; return its path."""
    if wheel_is_stale(wheel_dir):
        wheel_dir.mkdir(parents=True, exist_ok=True)
        for old in wheel_dir.glob("webinfer-*.whl"):
            old.unlink()
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(ROOT)]
        subprocess.run(cmd + (["-q"] if quiet else []), check=True, stdout=subprocess.DEVNULL if quiet else None)
    (wheel,) = wheel_dir.glob("webinfer-*.whl")
    return wheel


# ------------------------------------------------------------------ requests

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``(start, end_exclusive)`` for a single satisfiable range, None to send the whole
    file (no header, or one we ignore such as several ranges), "unsatisfiable" for a 416."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # malformed or multi-range: RFC 9110 lets us answer 200 with the whole file
    if not m.group(1):  # suffix: the last n bytes
        n = int(m.group(2))
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size
    start = int(m.group(1))
    end = int(m.group(2)) + 1 if m.group(2) else size
    if start >= size or end <= start:
        return "unsatisfiable"
    return start, min(end, size)


class Handler(BaseHTTPRequestHandler):
    server: "Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.server.verbose:
            sys.stderr.write(f"[serve] {self.address_string()} {fmt % args}\n")

    # -------------------------------------------------------------- headers

    def _common_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Range, Accept-Ranges, ETag")
        if self.server.isolate:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "cross-origin")

    def _error(self, status: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        self._common_headers()
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -------------------------------------------------------------- verbs

    def do_OPTIONS(self) -> None:  # CORS preflight for Range / If-Range
        self.send_response(HTTPStatus.NO_CONTENT)
        self._common_headers()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Range, If-Range, Content-Type")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = unquote(url.path)
        if path == "/__serve/stats":
            body = json.dumps(self.server.stats_snapshot()).encode()
            self.send_response(200)
            self._common_headers()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if "status" in query:
            self._error(int(query["status"]), f"status {query['status']} requested by ?status")
            return
        file = self.server.resolve(path)
        if file is None:
            self._error(404, f"not found: {path}")
            return
        if file.is_dir():
            if not path.endswith("/"):
                self.send_response(301)
                self._common_headers()
                self.send_header("Location", path + "/" + (f"?{url.query}" if url.query else ""))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            file = file / "index.html"
            if not file.is_file():
                self._error(404, f"no index.html in {path}")
                return
        self._send_file(file, path, query)

    def _send_file(self, file: Path, path: str, query: dict) -> None:
        st = file.stat()
        size = st.st_size
        etag = f'"{size:x}-{st.st_mtime_ns:x}"'
        rng = parse_range(self.headers.get("Range"), size) if query.get("ranges") != "0" else None
        if_range = self.headers.get("If-Range")
        if rng is not None and if_range is not None and if_range != etag:
            rng = None  # the client's partial copy is of another version: send it all
        if rng == "unsatisfiable":
            self.send_response(416)
            self._common_headers()
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = rng if rng else (0, size)
        self.send_response(206 if rng else 200)
        self._common_headers()
        self.send_header("Content-Type", MIME.get(file.suffix.lower(), "application/octet-stream"))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes" if query.get("ranges") != "0" else "none")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        cut = int(query["cut"]) if "cut" in query else None
        if cut is not None and cut < end:
            self.send_header("Connection", "close")  # the body stops short: this connection cannot be reused
        self.end_headers()
        if self.command == "HEAD":
            return
        rate = float(query["rate"]) if "rate" in query else None
        stop = min(end, cut) if cut is not None else end
        sent = 0
        t0 = time.perf_counter()
        try:
            with open(file, "rb") as f:
                f.seek(start)
                pos = start
                while pos < stop:
                    block = f.read(min(SEND_CHUNK, stop - pos))
                    if not block:
                        break
                    self.wfile.write(block)
                    pos += len(block)
                    sent += len(block)
                    if rate:
                        ahead = sent / rate - (time.perf_counter() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.server.count(path, sent)
        if stop < end:  # ?cut: drop the connection mid-body
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(2)
            except OSError:
                pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, mounts: dict[str, Path], *, isolate: bool = False, verbose: bool = False):
        super().__init__(addr, Handler)
        # longest prefix first so /models/ wins over /
        self.mounts = sorted(((p if p.endswith("/") else p + "/", Path(d)) for p, d in mounts.items()),
                             key=lambda m: -len(m[0]))
        self.isolate = isolate
        self.verbose = verbose
        self._stats: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def resolve(self, path: str) -> Path | None:
        """The file or folder a URL path names, or None (no mount, or an escape with ..)."""
        norm = posixpath.normpath(path)
        if path.endswith("/") and not norm.endswith("/"):
            norm += "/"
        if ".." in norm.split("/"):
            return None
        for prefix, folder in self.mounts:
            if norm == prefix.rstrip("/") or norm.startswith(prefix):
                rest = norm[len(prefix):] if norm.startswith(prefix) else ""
                target = folder / rest
                return target if target.exists() else None
        return None

    def count(self, path: str, n: int) -> None:
        with self._lock:
            self._stats[path] = self._stats.get(path, 0) + n

    def stats_snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)


def start(mounts: dict[str, Path] | None = None, *, port: int = 0, host: str = "127.0.0.1",
          isolate: bool = False, verbose: bool = False) -> Server:
    """Start a server in a daemon thread (for tests and scripts); ``server.shutdown()`` stops it."""
    srv = Server((host, port), default_mounts() if mounts is None else mounts, isolate=isolate, verbose=verbose)
    threading.Thread(target=srv.serve_forever, name="webinfer-serve", daemon=True).start()
    return srv


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--isolate", action="store_true", help="send COOP/COEP headers (cross-origin isolation)")
    ap.add_argument("--mount", action="append", default=[], metavar="/URL/=DIR", help="serve DIR under /URL/ (repeatable)")
    ap.add_argument("--no-build", action="store_true", help="do not (re)build the webinfer wheel first")
    ap.add_argument("--verbose", "-v", action="store_true", help="log every request")
    a = ap.parse_args(argv)
    mounts = default_mounts()
    for m in a.mount:
        prefix, sep, folder = m.partition("=")
        if not sep or not prefix.startswith("/"):
            ap.error(f"--mount wants /URL/=DIR, got {m!r}")
        mounts[prefix] = Path(folder).resolve()
    if not a.no_build:
        build_wheel()
        try:  # the JupyterLite site at /lite/ (needs jupyterlite-core, from scripts/requirements-dev.txt)
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import build_lite

            build_lite.build()
        except Exception as e:  # noqa: BLE001 - the chat page works without it
            print(f"[serve] JupyterLite site not built ({type(e).__name__}: {e})", file=sys.stderr)
    if not (mounts["/pyodide/"] / "pyodide.js").exists():
        print(f"[serve] warning: no Pyodide dist at {mounts['/pyodide/']}: run scripts/setup.sh", file=sys.stderr)
    srv = Server((a.host, a.port), mounts, isolate=a.isolate, verbose=a.verbose)
    print(f"[serve] webinfer chat page: {srv.url}" + ("  (cross-origin isolated)" if a.isolate else ""), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
