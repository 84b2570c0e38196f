"""webinfer in the browser: the Python half of the Web Worker (web/worker.js).

- :mod:`.worker`: the message protocol (load, generate, chat, abort, stats, ...).
- :mod:`.cache`: model bytes from a URL, downloaded in order by range requests
  into the Origin Private File System, verified, resumed after an interruption.
- :mod:`.errors`: DownloadError, StorageQuotaError, IntegrityError.

All calls into JavaScript go through :mod:`webinfer._js`, so this package
imports (and its download/cache logic runs, against a folder and urllib) in
CPython too.
"""
