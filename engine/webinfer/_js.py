"""The one module that touches Pyodide's JavaScript FFI (``js``, ``pyodide.ffi``); it imports in CPython too.

Everything else in webinfer imports from here, never from ``js`` directly.
In CPython ``IN_PYODIDE`` is False: the raw FFI names (``to_js``,
``create_proxy``, ``run_sync``) raise :class:`RuntimeError` (callers check
``IN_PYODIDE`` first), while the browser facilities below have stand-ins with
the same signatures (urllib for HTTP, a folder for the Origin Private File
System), which is what lets the download and cache logic run under pytest.

Shared by two issues; keep edits additive.  Sections: the FFI core (both),
messages / HTTP / OPFS / environment (the browser runtime, web/worker.js),
and WebGPU helpers (the WebGPU backend).

Costs and lifetimes, stated once here:

- Bytes crossing the boundary are copied once: ``Uint8Array.to_bytes()``
  copies JS memory into the WASM heap; ``to_js(memoryview)`` copies the other
  way.  No call here keeps a view of WASM memory alive across calls (a view
  dies when the heap grows).
- Descriptors go through ``to_js(d, dict_converter=Object.fromEntries)``:
  a plain ``to_js(d)`` makes a JS ``Map``, which Web APIs silently misread.
- Synchronous XMLHttpRequest is allowed only in workers; webinfer's Python
  runs in a dedicated worker (web/worker.js), so the model can be read with
  blocking range requests from inside the (synchronous) GGUF reader.
- OPFS ``FileSystemSyncAccessHandle`` (sync read/write at an offset) exists
  only in dedicated workers too; creating one is async, using it is not.
- Every JS promise is awaited through :func:`call_async`, so a rejection
  always becomes a Python exception (some reject with values Pyodide cannot
  convert, and the ``await`` would never finish).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------ FFI core

IN_PYODIDE = sys.platform == "emscripten" or "pyodide" in sys.modules

if IN_PYODIDE:  # pragma: no cover -- exercised by the browser tests
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import JsException, create_proxy, run_sync, to_js  # type: ignore[import-not-found]
else:
    js = None

    class JsException(RuntimeError):  # type: ignore[no-redef]
        """Stand-in: a JavaScript error surfaced in Python (never raised in CPython)."""

    def _no_js(*_a, **_k):
        raise RuntimeError("this needs Pyodide (a browser or Node): webinfer._js is a stand-in in CPython")

    create_proxy = run_sync = to_js = _no_js


def js_object(d: dict) -> Any:
    """A plain JS object from a dict (nested dicts too); the dict itself in CPython."""
    if not IN_PYODIDE:
        return d
    return to_js(d, dict_converter=js.Object.fromEntries)


class JsRejection(Exception):
    """A JS promise awaited through :func:`call_async` rejected; ``name`` is the JS error's name."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.js_name = name


_call_settled = None


async def call_async(obj: Any, method: str, *args: Any) -> Any:
    """Await ``obj.method(*args)`` (a JS promise); a rejection raises :class:`JsRejection`.

    The promise never reaches Python: Pyodide 0.27.7 cannot convert some
    rejection values (Chromium 156's ``QuotaExceededError`` from OPFS over
    quota gives "TypeError: invalid exception object" inside the event loop,
    and the ``await`` hangs forever), and merely holding a proxy of a promise
    that rejects that way is enough to trigger it.  So the call and the
    settling happen in JS, and Python awaits ``{ok, value}`` or
    ``{ok: false, name, message}``.  Dict arguments must already be JS objects
    (:func:`js_object`).
    """
    global _call_settled
    if _call_settled is None:
        _call_settled = js.Function.new(
            "obj", "name", "args",
            "return Promise.resolve().then(() => obj[name](...args)).then((value) => ({ok: true, value}), "
            "(e) => ({ok: false, name: String((e && e.name) || 'Error'), message: String((e && e.message) || e)}));")
    r = await _call_settled(obj, method, to_js(list(args)))
    if not r.ok:
        raise JsRejection(str(r.name), str(r.message))
    return r.value


def js_error_name(e: BaseException) -> str:
    """The JS ``name`` of an error raised through the FFI ("QuotaExceededError", ...), or ""."""
    if IN_PYODIDE and isinstance(e, JsException):
        try:
            return str(e.js_error.name)
        except Exception:  # noqa: BLE001 - a foreign object without .name
            return ""
    return getattr(e, "js_name", "") or ""


# ---------------------------------------------------------- browser runtime: messages


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"cannot send a {type(o).__name__} to the page")


def post_message(message: dict) -> None:
    """``postMessage`` a JSON-able dict to the page (worker side only).

    It crosses as JSON text parsed on the JS side, so ``None`` arrives as
    ``null`` (``to_js`` would make it ``undefined``) and numpy scalars as
    numbers.  Messages are small (a token, a progress record): the copy is cheap.
    """
    if not IN_PYODIDE:
        raise RuntimeError("post_message needs a browser worker")
    js.postMessage(js.JSON.parse(json.dumps(message, default=_json_default)))


def to_py(value: Any) -> Any:
    """A JS value (object, array, typed array) as Python dict/list/bytes; Python values pass through."""
    if IN_PYODIDE and hasattr(value, "to_py"):
        return value.to_py()
    return value


# ---------------------------------------------------------------------- HTTP


@dataclass
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names; only those a cache needs

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class HttpNetworkError(OSError):
    """The request failed below HTTP (refused, reset, cut short, timed out)."""


_WANTED_HEADERS = ("content-range", "content-length", "etag", "last-modified", "accept-ranges", "content-type")


def http_get(url: str, *, start: int | None = None, end: int | None = None, if_range: str | None = None,
             timeout_s: float = 60.0) -> HttpResponse:
    """A blocking GET of ``url`` (bytes ``[start, end)`` when given), body read whole.

    In Pyodide this is a synchronous XMLHttpRequest, so it must run in a worker;
    the body arrives as one ArrayBuffer and is copied once into the WASM heap.
    A connection cut before the announced length is an :class:`HttpNetworkError`
    (the browser reports it as a network error), never a short body.
    """
    headers = {}
    if start is not None:
        headers["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        if if_range:
            headers["If-Range"] = if_range
    if IN_PYODIDE:
        return _xhr_get(url, headers, timeout_s)
    return _urllib_get(url, headers, timeout_s)


def _xhr_get(url: str, headers: dict, timeout_s: float) -> HttpResponse:  # pragma: no cover - browser only
    xhr = js.XMLHttpRequest.new()
    xhr.open("GET", url, False)
    xhr.responseType = "arraybuffer"
    xhr.timeout = int(timeout_s * 1000)
    for k, v in headers.items():
        xhr.setRequestHeader(k, v)
    try:
        xhr.send()
    except JsException as e:
        raise HttpNetworkError(f"network error fetching {url}: {e}") from None
    if xhr.status == 0:
        raise HttpNetworkError(f"network error fetching {url} (no response: refused, blocked by CORS, or cut)")
    body = js.Uint8Array.new(xhr.response).to_bytes() if xhr.response is not None else b""
    hdrs = {}
    for name in _WANTED_HEADERS:
        v = xhr.getResponseHeader(name)
        if v is not None:
            hdrs[name] = str(v)
    return HttpResponse(int(xhr.status), body, hdrs)


def _urllib_get(url: str, headers: dict, timeout_s: float) -> HttpResponse:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            status, hdrs = r.status, {k.lower(): v for k, v in r.headers.items()}
            try:
                body = r.read()
            except Exception as e:  # http.client.IncompleteRead and friends: the body was cut
                raise HttpNetworkError(f"network error fetching {url}: {e!r}") from None
    except urllib.error.HTTPError as e:
        return HttpResponse(e.code, e.read(), {k.lower(): v for k, v in e.headers.items()})
    except (urllib.error.URLError, OSError) as e:
        if isinstance(e, HttpNetworkError):
            raise
        raise HttpNetworkError(f"network error fetching {url}: {e}") from None
    return HttpResponse(status, body, {k: v for k, v in hdrs.items() if k in _WANTED_HEADERS})


# ------------------------------------------------- Origin Private File System

OPFS_FOLDER = "webinfer"  # everything webinfer stores sits in this OPFS folder


class StorageQuotaExceeded(OSError):
    """The browser refused a write: the origin's storage quota is full."""


class StorageUnavailable(OSError):
    """No OPFS here (not a worker, private browsing, or the file is locked by another tab)."""


def _local_opfs_root() -> Path:
    return Path(os.environ.get("WEBINFER_OPFS_DIR") or Path.home() / ".cache" / "webinfer" / "opfs")


class OPFSFile:
    """A file in the Origin Private File System, read and written at offsets, synchronously.

    Open with ``await OPFSFile.open(name)``; one handle per file at a time
    (the browser locks the file for the handle's lifetime), so ``close()`` it.
    In CPython the "OPFS" is a folder ($WEBINFER_OPFS_DIR), for tests.
    """

    def __init__(self, name: str, handle: Any, *, read_only: bool = False):
        self.name = name
        self._h = handle
        self.read_only = read_only

    @classmethod
    async def open(cls, name: str, *, read_only: bool = False) -> "OPFSFile":
        """Open (creating it if needed) a file of webinfer's OPFS folder.

        A "readwrite" handle is exclusive: while it is open no other worker or
        tab can open the file.  ``read_only=True`` asks for a "read-only"
        handle, which several workers may hold at once (Chromium 121+; a
        browser without the mode ignores it and gives an exclusive handle).
        """
        if not IN_PYODIDE:
            root = _local_opfs_root()
            root.mkdir(parents=True, exist_ok=True)
            path = root / name
            path.touch(exist_ok=True)
            return cls(name, open(path, "rb" if read_only else "r+b"), read_only=read_only)
        try:  # pragma: no cover - browser only
            folder = await _opfs_folder()
            fh = await call_async(folder, "getFileHandle", name, js_object({"create": True}))
            mode = js_object({"mode": "read-only" if read_only else "readwrite"})
            handle = await call_async(fh, "createSyncAccessHandle", mode)
        except (JsException, JsRejection) as e:  # pragma: no cover
            if js_error_name(e) == "QuotaExceededError":
                raise StorageQuotaExceeded(f"cannot create {name!r}: the storage quota is full") from None
            raise StorageUnavailable(f"cannot open {name!r} in the browser's private file system: {e}") from None
        return cls(name, handle, read_only=read_only)

    @property
    def size(self) -> int:
        if not IN_PYODIDE:
            return os.fstat(self._h.fileno()).st_size
        return int(self._h.getSize())  # pragma: no cover

    def read(self, offset: int, length: int) -> bytes:
        if not IN_PYODIDE:
            self._h.seek(offset)
            return self._h.read(length)
        buf = js.Uint8Array.new(length)  # pragma: no cover
        n = int(self._h.read(buf, js_object({"at": offset})))
        return buf.subarray(0, n).to_bytes()

    def write(self, offset: int, data: bytes | memoryview) -> None:
        try:
            if not IN_PYODIDE:
                quota = os.environ.get("WEBINFER_OPFS_QUOTA")  # tests: simulate a full disk
                if quota is not None and offset + len(data) > int(quota):
                    raise StorageQuotaExceeded(f"quota of {quota} bytes exceeded")
                self._h.seek(offset)
                self._h.write(data)
                return
            n = int(self._h.write(to_js(memoryview(data)), js_object({"at": offset})))  # pragma: no cover
            if n != len(data):  # pragma: no cover
                raise StorageQuotaExceeded(f"short write of {n} of {len(data)} bytes")
        except JsException as e:  # pragma: no cover
            if js_error_name(e) == "QuotaExceededError":
                raise StorageQuotaExceeded(str(e)) from None
            raise

    def truncate(self, size: int) -> None:
        if not IN_PYODIDE:
            self._h.truncate(size)
            return
        self._h.truncate(size)  # pragma: no cover

    def flush(self) -> None:
        self._h.flush()

    def close(self) -> None:
        if self._h is not None:
            try:
                if not self.read_only:  # flush() on a read-only handle throws
                    self._h.flush()
            finally:
                self._h.close()
                self._h = None


async def _opfs_folder():  # pragma: no cover - browser only
    if not hasattr(js, "navigator") or not hasattr(js.navigator, "storage"):
        raise StorageUnavailable("navigator.storage is not available here")
    root = await call_async(js.navigator.storage, "getDirectory")
    return await call_async(root, "getDirectoryHandle", OPFS_FOLDER, js_object({"create": True}))


async def opfs_remove(name: str) -> None:
    """Delete a file from the OPFS folder; a missing file is fine."""
    if not IN_PYODIDE:
        (_local_opfs_root() / name).unlink(missing_ok=True)
        return
    try:  # pragma: no cover
        folder = await _opfs_folder()
        await call_async(folder, "removeEntry", name)
    except (JsException, JsRejection) as e:  # pragma: no cover
        if js_error_name(e) != "NotFoundError":
            raise


async def opfs_list() -> dict[str, int]:
    """Names and sizes of the files in the OPFS folder."""
    if not IN_PYODIDE:
        root = _local_opfs_root()
        return {p.name: p.stat().st_size for p in root.iterdir()} if root.exists() else {}
    out = {}  # pragma: no cover
    folder = await _opfs_folder()
    it = folder.values()
    while True:
        step = await call_async(it, "next")
        if step.done:
            break
        entry = step.value
        if entry.kind == "file":
            f = await call_async(entry, "getFile")
            out[str(entry.name)] = int(f.size)
    return out


async def storage_estimate() -> dict:
    """``navigator.storage.estimate()``: {"usage", "quota"} in bytes (empty if unknown)."""
    if not IN_PYODIDE:
        quota = os.environ.get("WEBINFER_OPFS_QUOTA")
        return {"quota": int(quota)} if quota else {}
    try:  # pragma: no cover
        est = await call_async(js.navigator.storage, "estimate")
        return {"usage": int(est.usage), "quota": int(est.quota)}
    except Exception:  # noqa: BLE001  # pragma: no cover
        return {}


# ------------------------------------------------------------ environment


def wasm_heap_bytes() -> int:
    """Size of Pyodide's WASM linear memory.  It only grows, so this is also its peak."""
    if not IN_PYODIDE:
        return 0
    import pyodide_js  # type: ignore[import-not-found]  # pragma: no cover

    return int(pyodide_js._module.HEAPU8.buffer.byteLength)  # pragma: no cover


def now_s() -> float:
    """A monotonic clock in seconds (``performance.now()`` in the browser)."""
    if IN_PYODIDE:
        return float(js.performance.now()) / 1000.0  # pragma: no cover
    return time.perf_counter()


def environment() -> dict:
    """What the JS side can tell about the browser and machine (a flat, JSON-able dict)."""
    if not IN_PYODIDE:
        import platform

        return {"runtime": "cpython", "python": platform.python_version(), "platform": platform.platform(),
                "hardware_concurrency": os.cpu_count()}
    g = js  # pragma: no cover - the worker's global scope
    nav = getattr(g, "navigator", None)
    info: dict[str, Any] = {"runtime": "pyodide", "python": sys.version.split()[0]}
    if nav is not None:
        info["user_agent"] = str(nav.userAgent)
        info["hardware_concurrency"] = int(getattr(nav, "hardwareConcurrency", 0) or 0)
        mem = getattr(nav, "deviceMemory", None)
        if mem is not None:
            info["device_memory_gb"] = float(mem)
        info["webgpu_api"] = hasattr(nav, "gpu") and nav.gpu is not None
        info["opfs"] = hasattr(nav, "storage") and hasattr(nav.storage, "getDirectory")
    info["cross_origin_isolated"] = bool(getattr(g, "crossOriginIsolated", False))
    info["shared_array_buffer"] = hasattr(g, "SharedArrayBuffer")
    wa = g.WebAssembly
    info["jspi"] = hasattr(wa, "Suspending") or hasattr(wa, "Suspender")
    # The smallest module using a v128 instruction (i32x4.splat): valid iff WASM SIMD is supported.
    simd = bytes([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
                  65, 0, 253, 15, 253, 98, 11])
    try:
        info["wasm_simd"] = bool(wa.validate(to_js(simd)))
    except Exception:  # noqa: BLE001
        info["wasm_simd"] = False
    info["wasm_heap_bytes"] = wasm_heap_bytes()
    return info


# ------------------------------------------------------------------ WebGPU
# Used by devices/browser.py (pitfalls seen with WebGPU through this FFI are listed there).

_settle_src = (
    "p", "ms", "what",
    "let t; const timeout = new Promise((_, rej) => { t = setTimeout(() => { const e = new Error(what + "
    "' did not finish in ' + ms + ' ms'); e.name = 'TimeoutError'; rej(e); }, ms); });"
    "return Promise.race([Promise.resolve(p), timeout]).then((value) => { clearTimeout(t); return {ok: true, value}; },"
    " (e) => { clearTimeout(t); return {ok: false, name: String((e && e.name) || 'Error'),"
    " message: String((e && e.message) || e)}; });")
_settle = None


def can_wait() -> bool:
    """Whether Python can block on a JS promise here (JSPI: :func:`wait` works)."""
    if not IN_PYODIDE:
        return False
    try:  # pragma: no cover - browser only
        from pyodide.ffi import can_run_sync  # type: ignore[import-not-found]

        return bool(can_run_sync())
    except ImportError:  # pragma: no cover
        return False


def wait(promise: Any, *, timeout_s: float = 60.0, what: str = "a WebGPU call") -> Any:
    """Block until a JS promise settles (``run_sync``, needs JSPI); its value, or :class:`JsRejection`.

    Every wait has a timeout: a promise whose callback was lost (a Python
    callable passed without ``create_proxy``) or a GPU that hung would
    otherwise freeze the tab silently.  Settling happens in JS (as in
    :func:`call_async`), so odd rejection values cannot hang Python.
    """
    global _settle
    if _settle is None:
        _settle = js.Function.new(*_settle_src)
    r = run_sync(_settle(promise, int(timeout_s * 1000), what))
    if not r.ok:
        raise JsRejection(str(r.name), str(r.message))
    return r.value


def heap_bytes(a: Any) -> Any:
    """A ``Uint8Array`` over the bytes of a C-contiguous numpy array, in place in the WASM heap.

    No copy: hand it at once to a call that copies it (``queue.writeBuffer``
    does).  The view dies if the heap grows, so never keep it across Python
    calls that may allocate.
    """
    import pyodide_js  # type: ignore[import-not-found]  # pragma: no cover

    return pyodide_js._module.HEAPU8.subarray(a.ctypes.data, a.ctypes.data + a.nbytes)  # pragma: no cover


def js_function(*args: str) -> Any:
    """``new Function(*args)``: JS helpers that run many WebGPU calls per Python call."""
    return js.Function.new(*args)  # pragma: no cover - browser only


def js_array(items: list) -> Any:
    """A JS Array of ``items`` (JS objects pass through as themselves, numbers convert)."""
    return to_js(items)  # pragma: no cover - browser only


# ------------------------------------------------------- WASM SIMD kernels


def load_wasm_side_module(data: bytes, name: str) -> Any:
    """Instantiate a WASM side module inside Pyodide's own memory; returns its exports.

    The module (wasm_fallback/, built by clang as an Emscripten-style side
    module with a ``dylink.0`` section) goes through Pyodide's dynamic linker,
    ``loadWebAssemblyModule``, the same path ``ctypes.CDLL`` and compiled
    packages take: it receives Pyodide's ``WebAssembly.Memory``, so its
    functions work on numpy arrays by address (``arr.ctypes.data``) with no
    copy.  This needs no cooperation from whoever called ``loadPyodide``
    (OFFLINE.md's alternative, a ``Proxy`` on ``WebAssembly.Memory`` around
    ``loadPyodide``, would).  ``data`` is copied once into a JS Uint8Array and
    compiled synchronously (allowed in workers and Node; Chromium's main
    thread limit for sync compiles is 8 MB, far above the kernels' size).

    The exports live as long as the Pyodide instance; calls from Python with
    int arguments cost about 2 us each (Node 20).
    """
    if not IN_PYODIDE:
        raise RuntimeError("WASM side modules load only inside Pyodide")
    import pyodide_js  # type: ignore[import-not-found]  # pragma: no cover

    flags = js_object({"loadAsync": False, "nodelete": True, "allowUndefined": False})  # pragma: no cover
    return pyodide_js._module.loadWebAssemblyModule(to_js(data), flags, name, js.Object.new(), 0)  # pragma: no cover
