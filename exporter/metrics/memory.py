"""Memory of the hot path: arrays kept from chunk to chunk, and big zeroed arrays in small pages.

A fresh array costs more than the work done in it: the kernel maps and
zeroes each page on first touch, and the allocator hands big blocks back to
the kernel when they are freed. So the chunk-sized arrays of an update are
kept (``Scratch``): they grow to the largest chunk seen, so their memory is
bounded by the chunk size.

numpy asks for transparent huge pages (2 MB) for every array of 4 MB or
more. For an array touched at scattered places (the per-channel ADC
histograms, the chip-slot table, the rate-window ring) that is the worst case: every first touch
makes the kernel find (often compact) and zero a whole 2 MB page. On the
benchmark machine (a shared VM) an update that first-touched a 64 MB
histogram took 0.25-0.9 s with huge pages, varying run to run, and a steady
0.31-0.41 s with small pages. ``zeros`` maps such arrays with small pages
(``chips.grow_axis`` too).
"""

from __future__ import annotations

import mmap

import numpy as np


class Scratch:
    """Named arrays of at least ``n`` rows, reused across calls."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def take(self, name: str, n: int, dtype: type[np.generic]) -> np.ndarray:
        """The first ``n`` rows of the array ``name`` (contents left from its last use)."""
        array = self._arrays.get(name)
        if array is None or len(array) < n or array.dtype != dtype:
            array = self._arrays[name] = zeros(n, dtype)
        return array[:n]


def zeros(shape: int | tuple[int, ...], dtype: type[np.generic] | np.dtype) -> np.ndarray:
    """``np.zeros`` in small pages (an anonymous mapping: zero, and mapped lazily)."""
    count = int(np.prod(shape))
    size = count * np.dtype(dtype).itemsize
    if size == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype, count).reshape(shape)
