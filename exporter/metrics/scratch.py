"""Arrays of the hot path kept from one chunk to the next.

A fresh array of a chunk's size costs more than the work done in it: the
kernel maps and zeroes each of its pages on first touch (on a virtual machine
at well under 1 GB/s), and the allocator hands big blocks back to the kernel
when they are freed. Reused arrays are touched once per process; they grow
to the largest chunk seen, so their memory is bounded by the chunk size.
"""

from __future__ import annotations

import numpy as np


class Scratch:
    """Named arrays of at least ``n`` rows, reused across calls."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def take(self, name: str, n: int, dtype: type[np.generic]) -> np.ndarray:
        """The first ``n`` rows of the array ``name`` (contents left from its last use)."""
        array = self._arrays.get(name)
        if array is None or len(array) < n or array.dtype != dtype:
            array = self._arrays[name] = np.empty(n, dtype)
        return array[:n]
