"""Chunk-sized arrays a reader hands out again once nothing else refers to them.

A fresh 36 MB array a chunk costs more than reading into it: the kernel maps
and zeroes every page on first touch. On the benchmark machine (a shared VM)
those first touches, made by the read-ahead thread while the consumer counts,
made a whole 10 M-packet ingest take 0.7 to 1.6 s run to run; with arrays
reused it takes a steady time.

An array is reused only when the pool holds the last reference to it: while
any chunk, view or plot buffer still refers to it, its rows stay as they were
and the pool hands out another array. So a consumer may keep the packets it
was given for as long as it likes.
"""

from __future__ import annotations

import sys
import threading

import numpy as np


def _references(array: np.ndarray) -> int:
    return sys.getrefcount(array)


def _references_when_free() -> int:
    """What ``_references`` reports for a pooled array no one else refers to (measured
    in the same way as the pool measures its arrays, so it holds on any CPython)."""
    arrays = [np.empty(0)]
    for array in arrays:
        return _references(array)
    raise AssertionError("unreachable")


_FREE = _references_when_free()


class ArrayPool:
    """At most ``keep`` arrays, each handed out again when no one else refers to it.

    A free array of the dtype asked for but more than twice the size is let
    go rather than handed out: the pool follows the reads of the moment (big chunks while a
    backlog is read, a few rows a poll while a file is followed live), so it
    does not hold big arrays for small reads.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def empty(self, n: int, dtype: np.dtype | type[np.generic]) -> np.ndarray:
        """A one-dimensional array of ``n`` elements, contents undefined."""
        dtype = np.dtype(dtype)
        with self._lock:
            kept, found = [], None
            for array in self._arrays:
                free = _references(array) == _FREE  # before ``kept`` refers to it too
                if free and array.dtype == dtype and len(array) > 2 * max(n, 1):
                    continue
                kept.append(array)
                if found is None and free and array.dtype == dtype and len(array) >= n:
                    found = array
            if found is None:
                found = np.empty(n, dtype)
                # all kept arrays in use (or too small): keep the newest; the oldest goes
                # with its last user
                kept = [*kept, found][-self.keep:]
            self._arrays = kept
            return found[:n]


#: The process's pool for chunks read from files: the monitor reads one file at a time,
#: the next chunk ahead while the consumer holds the current one (and a reference to the
#: one before), so three of each kind of array go round.
CHUNK_ARRAYS = ArrayPool(keep=6)
