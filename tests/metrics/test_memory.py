"""Arrays in small pages: mapped lazily, or at once where the hot path will touch them.

Residency is read from the kernel (``mincore``), page by page, and compared
with the pages a plain recount of the byte ranges covers.
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np

from exporter.metrics.channel_counts import ADC_BINS, CHANNELS_PER_CHIP, ChannelCounts
from exporter.metrics.memory import Scratch, populate, zeros

PAGE = mmap.PAGESIZE
_LIBC = ctypes.CDLL(None, use_errno=True)


def resident_pages(array: np.ndarray) -> set[int]:
    """Pages (numbered from the array's first byte) the kernel has mapped."""
    pages = -(-array.nbytes // PAGE)
    vector = (ctypes.c_ubyte * pages)()
    if _LIBC.mincore(ctypes.c_void_p(array.ctypes.data), ctypes.c_size_t(array.nbytes),
                     vector) != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return {page for page in range(pages) if vector[page] & 1}


def pages_of(ranges: list[tuple[int, int]]) -> set[int]:
    return {page for start, stop in ranges for page in range(start // PAGE, -(-stop // PAGE))}


def test_lazy_arrays_map_pages_on_first_touch_only():
    array = zeros(64 * PAGE, np.uint8)
    assert resident_pages(array) == set()
    array[10 * PAGE + 7] = 1
    assert resident_pages(array) == {10}


def test_populated_arrays_are_resident_at_once_and_zero():
    array = zeros(40 * PAGE // 8, np.int64, populate=True)
    assert resident_pages(array) == set(range(40))
    assert not array.any()


def test_populate_maps_the_pages_of_its_ranges_and_no_other():
    array = zeros((16, 8 * PAGE), np.uint8)
    ranges = [(PAGE + 100, 3 * PAGE - 1), (40 * PAGE + 5, 40 * PAGE + 6)]
    populate(array, np.array(ranges))
    assert resident_pages(array) == pages_of(ranges)
    assert not array.any()


def test_scratch_arrays_are_resident_and_reused():
    scratch = Scratch()
    first = scratch.take("key", 10 * PAGE // 8, np.intp)
    assert resident_pages(first) == set(range(10))
    first[:] = 7
    again = scratch.take("key", 4 * PAGE // 8, np.intp)
    assert again.ctypes.data == first.ctypes.data and (again == 7).all()


def test_channel_counts_map_the_bins_of_the_chips_seen():
    counts = ChannelCounts(slots=520)   # room for 1,024 chip slots, 520 in use
    row = counts.bins.strides[0]
    chip = CHANNELS_PER_CHIP * counts.bins.itemsize

    def expected(slots: int) -> set[int]:
        return pages_of([(d * row, d * row + slots * chip) for d in range(ADC_BINS)])

    assert counts.bins.shape[1] == 1024 * CHANNELS_PER_CHIP
    assert resident_pages(counts.bins) == expected(520) != expected(1024)
    counts.grow(600)                    # new chips, same capacity
    assert resident_pages(counts.bins) == expected(600) != expected(520)
    assert not counts.bins.any()
