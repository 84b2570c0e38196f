"""Model bytes from a URL: downloaded in order, kept in the browser's storage, read by range.

:class:`CachedHttpSource` is a :class:`~webinfer.formats.source.ByteSource`
whose bytes arrive while the GGUF reader and the model loader consume them:

- The file is fetched front to back in range requests of ``chunk`` bytes
  (HTTP 206), each written to the Origin Private File System (OPFS) at its
  offset.  A read past the downloaded *frontier* blocks (synchronous XHR, we
  are in a worker) until the frontier passes it, so the header is parsed after
  the first chunk and every tensor is dequantized as soon as it is in.
- A small JSON record beside the data (``<name>.json``) keeps the URL, size,
  ETag and how much is stored.  The next load with the same key reads a
  complete file from OPFS without touching the network (offline works); a
  partial one resumes at its frontier with ``If-Range`` so that a changed file
  on the server restarts from zero instead of being spliced.
- Integrity: the size always; the sha256 when one is known (passed in, or
  recorded when the download completed).  The digest is computed while the
  bytes stream in, so a fresh download costs no extra pass; a cached file is
  re-hashed before use.  A cached file that fails is deleted and fetched
  again; a fresh download that fails raises :class:`IntegrityError`.
- A full quota raises :class:`StorageQuotaError` and deletes the partial file.

:class:`HttpRangeSource` reads ranges straight from the network with no
storage (``cache: false``): each read is one request.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .. import _js
from ..errors import GGUFTruncatedError
from .errors import DownloadError, IntegrityError, StorageQuotaError

CHUNK_BYTES = 4 << 20       # one range request: small enough to lose little when a download is cut
HASH_READ_BYTES = 8 << 20   # re-hash a stored file in pieces this big (bounds the WASM heap)
META_FLUSH_BYTES = 16 << 20  # record the frontier in the JSON at least this often
RETRIES = 3                 # extra attempts for a chunk before giving up (a resumable error)
RETRY_WAIT_S = (0.25, 1.0, 2.0)
REQUEST_TIMEOUT_S = 120.0   # one chunk; a stalled connection fails instead of hanging the load
READAHEAD_BYTES = 1 << 20   # HttpRangeSource: small header reads are served from one 1 MiB request

ProgressFn = Callable[[dict], None]
HttpFn = Callable[..., _js.HttpResponse]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def cache_name(key: str) -> str:
    """The OPFS file name for a cache key (the key is usually the model URL)."""
    return "model-" + hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class LoadReport:
    """How a model file was obtained; sent to the page as ``engine.stats.load``."""

    url: str
    size: int = 0
    source: str = "network"        # "network", "cache", "resumed" (part cache, part network), "direct"
    network_bytes: int = 0         # body bytes received this time
    cached_bytes: int = 0          # bytes that were already in storage when the load began
    requests: int = 0
    retries: int = 0
    download_s: float = 0.0
    verify_s: float = 0.0
    sha256: str | None = None
    verified: bool = False
    refetched_because: str | None = None  # why a cached copy was thrown away
    events: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["network_mb_per_s"] = round(self.network_bytes / self.download_s / 1e6, 2) if self.download_s else 0.0
        return d


def _parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)) + 1, total


def _http_error(url: str, status: int, offset: int) -> DownloadError:
    hint = {404: "check the model URL", 403: "the server refused access",
            416: "the server's file is shorter than expected"}.get(status, "the server answered with an error")
    return DownloadError(f"HTTP {status} fetching {url}: {hint}", url=url, status=status, offset=offset)


class CachedHttpSource:
    """A ByteSource over a URL, downloaded in order into OPFS (see the module docstring).

    Build with ``await CachedHttpSource.open(url, ...)``: opening the storage
    handle is asynchronous, every read after that is synchronous.
    """

    def __init__(self, url: str, key: str, data: _js.OPFSFile, meta_file: _js.OPFSFile, meta: dict, *,
                 sha256: str | None, size: int | None, chunk: int, progress: ProgressFn | None,
                 http: HttpFn, report: LoadReport):
        self.url, self.key = url, key
        self._data, self._meta_file, self._meta = data, meta_file, meta
        self.expected_sha256 = sha256.lower() if sha256 else None
        self.expected_size = size
        self.chunk = chunk
        self._progress = progress
        self._http = http
        self.report = report
        self._size: int | None = meta.get("size") if meta.get("complete") else None
        self.frontier = min(int(meta.get("stored", 0)), data.size) if meta.get("url") else 0
        self._hasher: Any = None       # sha256 of [0, frontier) while downloading in order
        self._meta_flushed = self.frontier
        self._t_download = 0.0

    # ------------------------------------------------------------------ open

    @classmethod
    async def open(cls, url: str, *, key: str | None = None, sha256: str | None = None, size: int | None = None,
                   chunk: int = CHUNK_BYTES, progress: ProgressFn | None = None, http: HttpFn = _js.http_get,
                   verify: bool = True) -> "CachedHttpSource":
        key = key or url
        name = cache_name(key)
        report = LoadReport(url=url)
        for attempt in range(2):  # a second pass after throwing a bad cached copy away
            try:
                meta_file = await _js.OPFSFile.open(name + ".json")
                meta = _read_meta(meta_file)
                if meta.get("url") and meta.get("key") != key:
                    meta = {}  # a hash collision or a stale record: start over
                # A complete copy is only read: a shared read-only handle lets other workers
                # (tabs) read it at the same time.  A download needs the exclusive handle.
                data = await _js.OPFSFile.open(name + ".gguf", read_only=bool(meta.get("complete")))
            except _js.StorageQuotaExceeded:
                need = size or _probe_size(url, http)
                raise StorageQuotaError(_quota_message(need, None), needed=need) from None
            src = cls(url, key, data, meta_file, meta, sha256=sha256, size=size, chunk=chunk, progress=progress,
                      http=http, report=report)
            problem = src._check_cached(verify=verify)
            if problem is None:
                if meta.get("complete"):  # nothing to write: let the record go for other workers
                    meta_file.close()
                    src._meta_file = None
                break
            report.refetched_because = problem
            report.events.append(f"cached copy discarded: {problem}")
            src.close()
            await _js.opfs_remove(name + ".gguf")
            await _js.opfs_remove(name + ".json")
        else:  # pragma: no cover - the second pass starts from an empty file
            raise AssertionError("cache still bad after deleting it")
        report.cached_bytes = src.frontier
        if src._size is None:
            try:
                src._first_request()
                await src._check_quota()
            except BaseException:
                src.close()
                if src.frontier == 0:  # nothing worth keeping for a resume
                    await _js.opfs_remove(name + ".gguf")
                    await _js.opfs_remove(name + ".json")
                raise
        report.size = src.size
        report.source = ("cache" if src.frontier == src.size and report.network_bytes == 0
                         else "resumed" if report.cached_bytes else "network")
        return src

    def _check_cached(self, *, verify: bool) -> str | None:
        """Why the stored copy cannot be used (None if it can, or if it is partial and resumable)."""
        m = self._meta
        if not m.get("url"):
            return None
        if self.expected_size is not None and m.get("size") not in (None, self.expected_size):
            return f"size {m.get('size')} differs from the expected {self.expected_size}"
        if self.expected_sha256 and m.get("sha256") and m["sha256"] != self.expected_sha256:
            return "its recorded sha256 differs from the expected one"
        if not m.get("complete"):
            return None
        if self._data.size != m["size"]:
            return f"stored file is {self._data.size} bytes, expected {m['size']} (truncated)"
        digest = self.expected_sha256 or m.get("sha256")
        if verify and digest:
            t = _js.now_s()
            self._emit(phase="verify", text="verifying the cached model (sha256)")
            got = self._hash_stored(m["size"]).hexdigest()
            self.report.verify_s = _js.now_s() - t
            if got != digest:
                return f"sha256 {got[:12]}... does not match {digest[:12]}..."
            self.report.verified = True
        self.report.sha256 = digest
        return None

    async def _check_quota(self) -> None:
        """Fail before downloading what the origin's quota cannot hold (when the browser tells it)."""
        need = self.size - self.frontier
        est = await _js.storage_estimate()
        if need > 0 and "quota" in est:
            free = est["quota"] - est.get("usage", 0)
            if need > free:
                self._drop()
                raise StorageQuotaError(_quota_message(need, free), needed=need, available=free)

    def _first_request(self) -> None:
        """Learn the size (and ETag) with the first chunk of the download."""
        want_end = self.frontier + self.chunk
        if self.expected_size is not None:
            want_end = min(want_end, self.expected_size)
        if self.expected_size is not None and self.frontier >= self.expected_size:
            want_end = self.frontier + 1  # only to confirm the size; the 416 or 206 tells
        self._fetch(self.frontier, want_end, first=True)

    # ------------------------------------------------------------- ByteSource

    @property
    def size(self) -> int:
        assert self._size is not None, "open() sets the size"
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise GGUFTruncatedError(f"read of {length} bytes at {offset} runs past the end of the file ({self.size} bytes)")
        self.ensure(offset + length)
        return self._data.read(offset, length)

    def ensure(self, end: int) -> None:
        """Download, one chunk per request, until ``end`` bytes are stored."""
        while self.frontier < end:
            self._fetch(self.frontier, min(self.size, self.frontier + self.chunk))

    def finish(self) -> LoadReport:
        """Download whatever the loader did not need, check the sha256, mark the file complete."""
        self.ensure(self.size)
        if self._meta.get("complete"):
            return self.report
        digest = None
        if self._hasher is not None:
            digest = self._hasher.hexdigest()
        elif self.expected_sha256:
            digest = self._hash_stored(self.size).hexdigest()
        if self.expected_sha256 and digest != self.expected_sha256:
            self._drop()
            raise IntegrityError(
                f"the file at {self.url} does not match its expected sha256 ({digest[:12]}... != "
                f"{self.expected_sha256[:12]}...); the download was deleted", url=self.url,
                expected=self.expected_sha256, got=digest or "")
        self.report.sha256 = digest
        self.report.verified = digest is not None and self.expected_sha256 is not None
        self._meta.update(complete=True, stored=self.size, sha256=digest)
        self._write_meta()
        return self.report

    async def share(self) -> None:
        """After :meth:`finish`: swap the exclusive handles for a shared read-only one.

        The engine keeps the source for reads after the load (a WebGPU
        backend falling back to numpy reloads the weights from it) while other
        workers and tabs can open the same cached file.
        """
        if self._meta_file is None and getattr(self._data, "read_only", False):
            return
        self.close()
        self._data = await _js.OPFSFile.open(cache_name(self.key) + ".gguf", read_only=True)

    def close(self) -> None:
        for f in (self._data, self._meta_file):
            if f is not None:
                f.close()
        self._data = self._meta_file = None  # type: ignore[assignment]

    # -------------------------------------------------------------- download

    def _fetch(self, start: int, end: int, *, first: bool = False) -> None:
        etag = self._meta.get("etag") if start > 0 else None
        last: Exception | None = None
        for attempt in range(RETRIES + 1):
            if attempt:
                self.report.retries += 1
                _sleep(RETRY_WAIT_S[min(attempt - 1, len(RETRY_WAIT_S) - 1)])
            t = _js.now_s()
            try:
                r = self._http(self.url, start=start, end=end, if_range=etag, timeout_s=REQUEST_TIMEOUT_S)
            except _js.HttpNetworkError as e:
                last = e
                continue
            finally:
                self._t_download += _js.now_s() - t
                self.report.download_s = self._t_download
            self.report.requests += 1
            if r.status >= 500:
                last = _http_error(self.url, r.status, self.frontier)
                continue
            self._accept(r, start, end, first=first)
            return
        if isinstance(last, DownloadError):
            raise last
        self._write_meta()
        raise DownloadError(
            f"download of {self.url} interrupted at byte {self.frontier} of {self._size or '?'} after "
            f"{RETRIES + 1} attempts ({last}); the {self.frontier} bytes received are kept and loading "
            f"again resumes from there", url=self.url, status=0, offset=self.frontier)

    def _accept(self, r: _js.HttpResponse, start: int, end: int, *, first: bool) -> None:
        if r.status == 416 and first and start > 0:
            # We asked past the end: the stored part is already the whole file (or the file shrank).
            total = (_parse_content_range(r.header("content-range")) or (0, 0, None))[2]
            if total is not None and total == start:
                self._set_size(total)
                return
            self._restart("the server's file is shorter than the stored part")
            return self._fetch(0, min(self.chunk, total or self.chunk), first=True)
        if r.status == 206:
            cr = _parse_content_range(r.header("content-range"))
            if cr is None or cr[0] != start:
                raise DownloadError(f"{self.url}: bad Content-Range {r.header('content-range')!r} for bytes {start}-",
                                    url=self.url, status=206, offset=self.frontier)
            if cr[2] is not None:
                self._set_size(cr[2])
            body = r.body
            if len(body) != cr[1] - cr[0]:
                raise DownloadError(f"{self.url}: short body ({len(body)} of {cr[1] - cr[0]} bytes)",
                                    url=self.url, status=206, offset=self.frontier)
            if start > 0 and first:
                self.report.events.append(f"resumed at byte {start}")
            self._remember_validator(r)
            self._store(start, body)
            return
        if r.status == 200:
            # The whole file: the server ignores ranges, or If-Range said our part is of an older version.
            if start > 0:
                self.report.events.append("server sent the whole file (ranges unsupported or file changed)")
                self._restart("the server's file changed or it ignores ranges")
            self._set_size(len(r.body))
            self._remember_validator(r)
            self._store(0, r.body)
            return
        raise _http_error(self.url, r.status, self.frontier)

    def _set_size(self, total: int) -> None:
        if self.expected_size is not None and total != self.expected_size:
            self._drop()
            raise IntegrityError(f"{self.url} is {total} bytes but {self.expected_size} were expected",
                                 url=self.url, expected=self.expected_size, got=total)
        if self._size is None:
            self._size = total
        elif self._size != total:
            raise DownloadError(f"{self.url} changed size during the download ({self._size} -> {total})",
                                url=self.url, status=200, offset=self.frontier)
        if self._meta.get("size") not in (None, total):
            self._restart("the server's file has another size than the stored part")
        self._meta.setdefault("size", total)

    def _restart(self, why: str) -> None:
        self.report.events.append(f"restarting download: {why}")
        self.report.cached_bytes = 0
        self.frontier = 0
        self._hasher = hashlib.sha256()
        self._data.truncate(0)
        self._meta = {"url": self.url, "key": self.key}
        self._meta_flushed = 0

    def _store(self, start: int, body: bytes) -> None:
        assert start == self.frontier, (start, self.frontier)
        if self._hasher is None:
            self._hasher = self._hash_stored(start) if start else hashlib.sha256()
        try:
            self._data.write(start, body)
        except _js.StorageQuotaExceeded:
            self._drop()
            need = self.size
            raise StorageQuotaError(_quota_message(need, None), needed=need) from None
        self._hasher.update(body)
        self.frontier = start + len(body)
        self.report.network_bytes += len(body)
        self._meta.update(url=self.url, key=self.key, stored=self.frontier, complete=False)
        if self.frontier - self._meta_flushed >= META_FLUSH_BYTES or self.frontier == self._size:
            self._write_meta()
        rate = self.report.network_bytes / self._t_download if self._t_download else 0.0
        self._emit(phase="download", downloaded=self.frontier, rate=rate)

    def _remember_validator(self, r: _js.HttpResponse) -> None:
        """Keep the ETag (or Last-Modified) for If-Range when resuming; a weak ETag cannot be used."""
        etag = r.header("etag")
        validator = etag if etag and not etag.startswith("W/") else r.header("last-modified")
        if self.frontier == 0 or not self._meta.get("etag"):
            self._meta["etag"] = validator

    def _hash_stored(self, end: int):
        h = hashlib.sha256()
        for off in range(0, end, HASH_READ_BYTES):
            h.update(self._data.read(off, min(HASH_READ_BYTES, end - off)))
        return h

    # --------------------------------------------------------------- records

    def _write_meta(self) -> None:
        self._data.flush()  # data before the record that vouches for it
        raw = json.dumps(self._meta, sort_keys=True).encode()
        self._meta_file.truncate(0)
        self._meta_file.write(0, raw)
        self._meta_file.flush()
        self._meta_flushed = self.frontier

    def _drop(self) -> None:
        """Forget the stored copy: both files are truncated to nothing (removing them needs await)."""
        self.frontier = 0
        self._meta = {}
        self._data.truncate(0)
        self._meta_file.truncate(0)

    def _emit(self, **info: Any) -> None:
        if self._progress is not None:
            info.setdefault("total", self._size)
            info.setdefault("cached_bytes", self.report.cached_bytes)
            info.setdefault("network_bytes", self.report.network_bytes)
            self._progress(info)


def _read_meta(f: _js.OPFSFile) -> dict:
    n = f.size
    if n == 0:
        return {}
    try:
        meta = json.loads(f.read(0, n))
    except (ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _quota_message(need: int, free: int | None) -> str:
    have = f" ({max(free, 0) / 1e6:.1f} MB free)" if free is not None else ""
    needs = f"needs {need / 1e6:.1f} MB more" if need else "needs more room"
    return (f"the browser's storage quota is full: caching this model {needs}{have}. "
            "Free space (webinfer.cache.clear() deletes webinfer's downloads) or load with {cache: false}.")


def _probe_size(url: str, http: HttpFn) -> int:
    """The file's size from a 1-byte range request (0 if the server does not tell)."""
    try:
        r = http(url, start=0, end=1, timeout_s=REQUEST_TIMEOUT_S)
    except OSError:
        return 0
    cr = _parse_content_range(r.header("content-range"))
    return (cr[2] or 0) if cr else int(r.header("content-length") or 0) if r.status == 200 else 0


def _sleep(seconds: float) -> None:
    """Block the worker for a moment (retry back-off; there is no event loop to yield to mid-read)."""
    import time

    time.sleep(seconds)


class HttpRangeSource:
    """A ByteSource that reads ranges straight from the network, storing nothing (``cache: false``)."""

    def __init__(self, url: str, *, http: HttpFn = _js.http_get, progress: ProgressFn | None = None):
        self.url = url
        self._http = http
        self._progress = progress
        self.report = LoadReport(url=url, source="direct")
        self._buf, self._buf_start = b"", 0
        self._whole: bytes | None = None
        r = self._get(0, READAHEAD_BYTES)
        if r.status == 200:  # no range support: we have the whole file
            self._whole = r.body
            self._size = len(r.body)
        else:
            cr = _parse_content_range(r.header("content-range"))
            if cr is None or cr[2] is None:
                raise DownloadError(f"{url}: no usable Content-Range in the answer", url=url, status=r.status)
            self._size = cr[2]
            self._buf = r.body
        self.report.size = self._size

    @property
    def size(self) -> int:
        return self._size

    def _get(self, start: int, end: int) -> _js.HttpResponse:
        t = _js.now_s()
        for attempt in range(RETRIES + 1):
            try:
                r = self._http(self.url, start=start, end=end, timeout_s=REQUEST_TIMEOUT_S)
                break
            except _js.HttpNetworkError as e:
                if attempt == RETRIES:
                    raise DownloadError(f"network error reading {self.url}: {e}", url=self.url, offset=start) from None
                self.report.retries += 1
                _sleep(RETRY_WAIT_S[min(attempt, len(RETRY_WAIT_S) - 1)])
        self.report.download_s += _js.now_s() - t
        self.report.requests += 1
        if r.status not in (200, 206):
            raise _http_error(self.url, r.status, start)
        self.report.network_bytes += len(r.body)
        return r

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise GGUFTruncatedError(f"read of {length} bytes at {offset} runs past the end of the file ({self._size} bytes)")
        if self._whole is not None:
            return self._whole[offset: offset + length]
        rel = offset - self._buf_start
        if 0 <= rel and rel + length <= len(self._buf):
            return self._buf[rel: rel + length]
        end = min(self._size, offset + max(length, READAHEAD_BYTES))
        r = self._get(offset, end)
        if r.status == 200:
            self._whole = r.body
            return self._whole[offset: offset + length]
        if length < READAHEAD_BYTES:
            self._buf, self._buf_start = r.body, offset
        if self._progress:
            self._progress({"phase": "download", "downloaded": offset + length, "total": self._size,
                            "network_bytes": self.report.network_bytes, "cached_bytes": 0,
                            "rate": self.report.network_bytes / self.report.download_s if self.report.download_s else 0})
        return r.body[:length]

    def finish(self) -> LoadReport:
        return self.report

    def close(self) -> None:
        self._buf = b""
        self._whole = None
