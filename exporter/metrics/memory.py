"""Memory of the hot path: arrays kept from chunk to chunk, and big zeroed arrays in small pages.

A fresh array costs more than the work done in it: the kernel maps and
zeroes each page on first touch, and the allocator hands big blocks back to
the kernel when they are freed. So the chunk-sized arrays of an update are
kept (``Scratch``): they grow to the largest chunk seen, so their memory is
bounded by the chunk size. The larger temporaries of an update are avoided
too (the per-channel sums unpacked in place, a block's packed datawords and
chip keys written into kept arrays): glibc gives the top of its heap back to
the kernel once enough of it is free, so a few MB of temporaries an update
came back as fresh pages every chunk (about 1,000 faults, 3-5 ms an update on
the benchmark machine). A few remain (the per-channel ``np.bincount``).

numpy asks for transparent huge pages (2 MB) for every array of 4 MB or
more. For an array touched at scattered places (the per-channel ADC
histograms, the chip-slot table, the rate-window ring) that is the worst case: every first touch
makes the kernel find (often compact) and zero a whole 2 MB page. On the
benchmark machine (a shared VM) an update that first-touched a 64 MB
histogram took 0.25-0.9 s with huge pages, varying run to run, and a steady
0.31-0.41 s with small pages. ``zeros`` maps such arrays with small pages
(``chips.grow_axis`` too).

A first touch still costs a fault a page (about 5 us on that machine, so
60 ms for a 50 MB histogram). Pages that will surely be touched are mapped
in one call instead (``populate=True``, ``populate``): the scratch arrays,
written whole every chunk, and the histogram bins of the chips a file has.
"""

from __future__ import annotations

import mmap

import numpy as np


class Scratch:
    """Named arrays of at least ``n`` rows, reused across calls (mapped in full at once:
    every chunk writes them whole)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def take(self, name: str, n: int, dtype: type[np.generic]) -> np.ndarray:
        """The first ``n`` rows of the array ``name`` (contents left from its last use)."""
        array = self._arrays.get(name)
        if array is None or len(array) < n or array.dtype != dtype:
            array = self._arrays[name] = zeros(n, dtype, populate=True)
        return array[:n]


def zeros(shape: int | tuple[int, ...], dtype: type[np.generic] | np.dtype,
          populate: bool = False) -> np.ndarray:
    """``np.zeros`` in small pages (an anonymous mapping: zero, and mapped lazily, or all at
    once with ``populate``)."""
    count = int(np.prod(shape))
    size = count * np.dtype(dtype).itemsize
    if size == 0:
        return np.zeros(shape, dtype)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (_MAP_POPULATE if populate else 0)
    return np.frombuffer(mmap.mmap(-1, size, flags=flags), dtype, count).reshape(shape)


def populate(array: np.ndarray, ranges: np.ndarray) -> None:
    """Map the pages of byte ranges ``(start, stop)`` of a ``zeros`` array now, a call a
    range, rather than a fault a page on first touch (~5 us a 4 kB page on the benchmark
    machine). Where the kernel cannot (Linux before 5.14, other systems), pages are
    mapped on first touch as before."""
    buffer = _mapping(array)
    if buffer is None:
        return
    page = mmap.PAGESIZE
    try:
        for start, stop in ranges.tolist():
            first = start - start % page
            buffer.madvise(_MADV_POPULATE_WRITE, first, stop - first)
    except (OSError, AttributeError):
        pass


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    """The anonymous mapping under a ``zeros`` array (None for other arrays)."""
    owner: object = array
    while isinstance(owner, np.ndarray):
        owner = owner.base
    owner = owner.obj if isinstance(owner, memoryview) else owner
    return owner if isinstance(owner, mmap.mmap) else None


_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
#: Linux's madvise(MADV_POPULATE_WRITE) (5.14+); Python 3.11's mmap does not name it.
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
