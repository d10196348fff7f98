"""Sums of datawords and of their squares, added with one scattered add instead of two.

A dataword is below 2**8 and its square below 2**16, so the datawords of
``PACKED_ROWS`` rows sum to less than 2**28 and their squares to less than
2**36: one uint64 ``d | d*d << 28`` a row carries both sums exactly, as long
as an accumulator is unpacked into int64 sums before more rows are added to
it. The scattered add is the costly part of a sum over ~10**6 rows a chunk.
"""

from __future__ import annotations

import numpy as np

#: Rows an accumulator may take between unpackings.
PACKED_ROWS = 1 << 20
_SHIFT = np.uint64(28)
_LOW = np.uint64((1 << 28) - 1)


def packed_datawords(word: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``d | d*d << 28`` (uint64) of the dataword ``d`` in each first data word (its low
    byte); 0 for the ``other`` (non-data) rows."""
    value = np.bitwise_and(word, np.uint32(0xFF), dtype=np.uint64)
    square = value * value
    square <<= _SHIFT
    value |= square
    value[other] = 0
    return value


def unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of datawords and sum of their squares (int64) of packed accumulators."""
    return (packed & _LOW).view(np.int64), (packed >> _SHIFT).view(np.int64)
