"""Byte sources: anything that can return a byte range.

The GGUF reader never assumes the whole file is in memory.  It asks a source
for ranges, so the same parser runs over a local file, a bytes object, or (in
the browser) HTTP range requests and the Cache Storage.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from ..errors import GGUFTruncatedError, ModelFileNotFoundError


@runtime_checkable
class ByteSource(Protocol):
    """Random access to an immutable byte string of known size."""

    @property
    def size(self) -> int:
        """Total size in bytes."""

    def read(self, offset: int, length: int) -> bytes | memoryview:
        """Return exactly ``length`` bytes starting at ``offset``.

        Raises :class:`GGUFTruncatedError` if the range runs past ``size``.
        """


def _check_range(offset: int, length: int, size: int) -> None:
    if offset < 0 or length < 0 or offset + length > size:
        raise GGUFTruncatedError(
            f"read of {length} bytes at {offset} runs past the end of the file ({size} bytes); "
            "the file is truncated or corrupt"
        )


class BytesSource:
    """A source over bytes already in memory (tests, small files, a browser Blob read whole)."""

    def __init__(self, data: bytes | bytearray | memoryview):
        self._data = memoryview(data).cast("B")

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> memoryview:
        _check_range(offset, length, len(self._data))
        return self._data[offset : offset + length]


class FileSource:
    """A source over a local file, read with positioned reads (no mmap, so it works in Pyodide's FS too)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            self._f = open(self.path, "rb")
        except FileNotFoundError:
            raise ModelFileNotFoundError(f"model file not found: {self.path}") from None
        except IsADirectoryError:
            raise ModelFileNotFoundError(f"expected a model file but got a directory: {self.path}") from None
        self._size = os.fstat(self._f.fileno()).st_size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        _check_range(offset, length, self._size)
        self._f.seek(offset)
        data = self._f.read(length)
        if len(data) != length:  # the file shrank under us
            raise GGUFTruncatedError(f"short read of {length} bytes at {offset} from {self.path}")
        return data

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "FileSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
