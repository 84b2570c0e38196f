"""Errors of loading in the browser: network, storage, integrity.

They subclass :class:`webinfer.errors.WebinferError` and the stdlib type a
caller would catch, carry the values a caller needs, and say what to do.  The
worker sends ``type(e).__name__`` and the message to the page, where they
become a rejected promise with that ``name``.
"""

from __future__ import annotations

from ..errors import WebinferError


class DownloadError(WebinferError, OSError):
    """The model could not be fetched: an HTTP error status, or the network failed.

    ``status`` is the HTTP status (0 when there was no response), ``url`` the
    address, ``offset`` how far the download had got (bytes kept in the cache).
    """

    def __init__(self, message: str, *, url: str, status: int = 0, offset: int = 0):
        super().__init__(message)
        self.url, self.status, self.offset = url, status, offset


class StorageQuotaError(WebinferError, OSError):
    """The browser's storage quota cannot hold the model; nothing partial is kept."""

    def __init__(self, message: str, *, needed: int, available: int | None = None):
        super().__init__(message)
        self.needed, self.available = needed, available


class IntegrityError(WebinferError, ValueError):
    """The downloaded bytes do not match the expected size or sha256."""

    def __init__(self, message: str, *, url: str, expected: str | int, got: str | int):
        super().__init__(message)
        self.url, self.expected, self.got = url, expected, got
