"""webinfer in the browser: the Python half of the Web Worker (web/worker.js).

- :func:`load` (:mod:`.loader`): a model from a URL, in any dedicated worker
  (webinfer's own, or a JupyterLite kernel).
- :mod:`.worker`: the message protocol (load, generate, chat, abort, stats, ...).
- :mod:`.cache`: model bytes from a URL, downloaded in order by range requests
  into the Origin Private File System, verified, resumed after an interruption.
- :mod:`.errors`: DownloadError, StorageQuotaError, IntegrityError.

All calls into JavaScript go through :mod:`webinfer._js`, so this package
imports (and its download/cache logic runs, against a folder and urllib) in
CPython too.
"""

from .loader import load_url as load  # noqa: E402

__all__ = ["load"]
