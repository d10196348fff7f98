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


def packed_datawords(word: np.ndarray, other: np.ndarray, out: np.ndarray,
                     square: np.ndarray) -> np.ndarray:
    """``d | d*d << 28`` of the dataword ``d`` in each first data word (its low byte), into
    ``out`` (uint64); 0 for the ``other`` (non-data) rows. ``square`` (uint64, as long) is
    scratch: arrays kept from call to call, not fresh pages (see ``memory``)."""
    np.bitwise_and(word, np.uint32(0xFF), out=out, dtype=np.uint64)
    np.multiply(out, out, out=square)
    square <<= _SHIFT
    out |= square
    out[other] = 0
    return out


def unpack_into(packed: np.ndarray, total: np.ndarray, squares: np.ndarray) -> None:
    """Add packed accumulators to the sums of datawords and of their squares (int64), and
    empty them.

    Everything happens in place, with the sums seen as uint64 (they are never
    negative): a temporary the size of the accumulators would be fresh pages at
    every call once the allocator has handed its memory back.
    """
    total, squares = total.view(np.uint64), squares.view(np.uint64)
    total += packed                              # the sum, plus the squares' part << 28
    np.right_shift(packed, _SHIFT, out=packed)
    squares += packed
    packed <<= _SHIFT
    total -= packed                              # exact: uint64 arithmetic wraps
    packed.fill(0)
