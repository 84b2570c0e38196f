"""Memory the WASM kernels run on: Pyodide's own heap, or a shared memory for threads.

Both heaps hand out byte addresses that go into command words
(wasm_program.py); they differ in who owns the bytes:

- :class:`LocalHeap` is Pyodide's own linear memory.  Buffers are numpy
  arrays and the kernels read them by address: weights are *pinned* (their
  numpy array is used in place, zero-copy), activations come from
  :class:`Arena` chunks, reads and writes are numpy slice copies.
- :class:`SharedHeap` is a shared ``WebAssembly.Memory`` that worker threads
  (wasm_threads.py) also run on.  Pyodide cannot see into it, so data is
  copied in once (weights at load, a token's embedding each step) and out
  once (the logits) through JS typed arrays; Python keeps the allocator.

Rules, for both: addresses are 64-byte aligned (``ALIGN``) except pinned
numpy arrays (numpy's own alignment, 16 bytes here); a buffer lives until
``free`` (Arena blocks: see its docstring); Pyodide's heap and the shared
memory only grow, so an address stays valid while its buffer lives.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from .. import _js

ALIGN = 64                   # activation buffers start on a cache line
CHUNK_BYTES = 4 << 20        # arena chunks: a decode step needs about 0.5 MB
RESERVED_BYTES = 64 * 1024   # the shared memory's first page: thread control block, never handed out
WASM_PAGE = 65536


def address(a: np.ndarray) -> int:
    """The byte address of a numpy array's data in Pyodide's heap (the array must stay alive)."""
    return a.__array_interface__["data"][0]


def _round(n: int, align: int = ALIGN) -> int:
    return -(-n // align) * align


class LocalHeap:
    """Pyodide's own memory: every buffer is a numpy array, found again by address."""

    shared = False

    def __init__(self):
        self._spans: list[tuple[int, int, np.ndarray]] = []   # (start, end, array) sorted by start
        self._owned: dict[int, tuple[int, int, np.ndarray]] = {}  # alloc'd address -> its span

    @property
    def nbytes(self) -> int:
        return sum(s[2].nbytes for s in self._owned.values())

    def _add(self, start: int, end: int, arr: np.ndarray) -> tuple:
        span = (start, end, arr)
        bisect.insort(self._spans, span, key=lambda s: (s[0], s[1]))
        return span

    def alloc(self, nbytes: int) -> int:
        arr = np.empty(nbytes + ALIGN, np.uint8)
        addr = _round(address(arr))
        self._owned[addr] = self._add(addr, addr + nbytes, arr)
        return addr

    def free(self, addr: int) -> None:
        span = self._owned.pop(addr)
        self._spans.remove(span)

    def pin(self, a: np.ndarray) -> int:
        """Use ``a`` (C-contiguous) in place; it is kept alive as long as the heap."""
        assert a.flags.c_contiguous
        addr = address(a)
        self._add(addr, addr + a.nbytes, a)
        return addr

    def view(self, addr: int, nbytes: int) -> np.ndarray:
        """uint8 view of ``nbytes`` at ``addr`` inside one buffer of this heap."""
        i = bisect.bisect_right(self._spans, (addr, float("inf")), key=lambda s: (s[0], s[1])) - 1
        while i >= 0:
            start, end, arr = self._spans[i]
            if start <= addr and addr + nbytes <= end:
                base = address(arr)
                flat = arr.reshape(-1).view(np.uint8)
                return flat[addr - base : addr - base + nbytes]
            i -= 1
        raise AssertionError(f"0x{addr:x}+{nbytes} is not inside a buffer of this heap")

    def write(self, addr: int, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data)
        self.view(addr, data.nbytes)[:] = data.reshape(-1).view(np.uint8)

    def read(self, addr: int, nbytes: int) -> np.ndarray:
        return self.view(addr, nbytes).copy()

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        self.view(dst, nbytes)[:] = self.view(src, nbytes)

    def program_words(self, words) -> int:
        """The address of a program's words (an ``array('i')``: already in this heap, used in place)."""
        return words.buffer_info()[0]


class SharedHeap:
    """A shared WebAssembly.Memory: Python allocates (bump pointer, freed buffers reused by size), JS copies.

    ``memory`` is the JS ``WebAssembly.Memory`` (created with ``shared: true``).
    Each copy in or out is one JS call plus the copy itself.
    """

    shared = True

    def __init__(self, memory: Any, *, reserved: int = RESERVED_BYTES):
        self.memory = memory
        self.top = reserved
        self._size: dict[int, int] = {}            # live address -> rounded size
        self._free: dict[int, list[int]] = {}      # rounded size -> free addresses
        self._words_addr = 0
        self._words_cap = 0

    @property
    def nbytes(self) -> int:
        return int(self.memory.buffer.byteLength)

    def alloc(self, nbytes: int) -> int:
        n = _round(max(nbytes, 1))
        lst = self._free.get(n)
        if lst:
            addr = lst.pop()
        else:
            addr = self.top
            self.top += n
            have = int(self.memory.buffer.byteLength)
            if self.top > have:
                self.memory.grow(-(-(self.top - have) // WASM_PAGE))
        self._size[addr] = n
        return addr

    def free(self, addr: int) -> None:
        n = self._size.pop(addr)
        self._free.setdefault(n, []).append(addr)

    def pin(self, a: np.ndarray) -> int:
        """Copy ``a`` into the shared memory (one copy; the numpy array may then be dropped)."""
        addr = self.alloc(a.nbytes)
        self.write(addr, a)
        return addr

    def _u8(self, addr: int, nbytes: int):
        return _js.js.Uint8Array.new(self.memory.buffer, addr, nbytes)

    def write(self, addr: int, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        self._u8(addr, data.nbytes).assign(data)

    def read(self, addr: int, nbytes: int) -> np.ndarray:
        out = np.empty(nbytes, np.uint8)
        self._u8(addr, nbytes).assign_to(out)
        return out

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        _js.js.Uint8Array.new(self.memory.buffer).copyWithin(dst, src, src + nbytes)

    def program_words(self, words) -> int:
        """Copy a program's words (an ``array('i')``) into a scratch buffer here; its address."""
        data = np.frombuffer(words, dtype=np.int32)
        if data.nbytes > self._words_cap:
            if self._words_addr:
                self.free(self._words_addr)
            self._words_cap = max(data.nbytes, 2 * self._words_cap, 64 * 1024)
            self._words_addr = self.alloc(self._words_cap)
        self.write(self._words_addr, data)
        return self._words_addr


class Arena:
    """Activation memory: blocks carved from heap chunks, recycled by size.

    A released block waits in ``deferred`` until the next flush; only then can
    it be handed out again (a pending command may still read or write it).
    So a block handed out is never touched by a pending command, and may be
    written at once (``embed``).
    """

    def __init__(self, heap):
        self.heap = heap
        self.chunk_bytes = 0
        self._cur = self._end = 0
        self.free: dict[int, list[int]] = {}   # size -> block addresses
        self.deferred: list[tuple[int, int]] = []
        self.since_flush = 0                    # bytes handed out since the last flush

    def alloc(self, nbytes: int) -> tuple[int, int]:
        """A block of at least ``nbytes``: (address, rounded size)."""
        n = max(ALIGN, _round(nbytes))
        self.since_flush += n
        lst = self.free.get(n)
        if lst:
            return lst.pop(), n
        if self._cur + n > self._end:
            size = max(CHUNK_BYTES, n)
            self._cur = self.heap.alloc(size)
            self._end = self._cur + size
            self.chunk_bytes += size
        addr = self._cur
        self._cur += n
        return addr, n

    def release(self, addr: int, n: int) -> None:
        self.deferred.append((addr, n))

    def flushed(self) -> None:
        for addr, n in self.deferred:
            self.free.setdefault(n, []).append(addr)
        self.deferred.clear()
        self.since_flush = 0
