"""Packed ADC sums (``metrics.packed``): a dataword and its square in one uint64, checked
against plain int64 sums of the same datawords."""

import numpy as np

from exporter.metrics.packed import PACKED_ROWS, packed_datawords, unpack_into


def test_the_most_rows_an_accumulator_takes_unpack_exactly():
    rng = np.random.default_rng(3)
    dataword = rng.integers(0, 256, PACKED_ROWS).astype(np.uint32)
    dataword[: PACKED_ROWS // 2] = 255                     # the worst case: the top value
    word = dataword | rng.integers(0, 2**24, PACKED_ROWS).astype(np.uint32) << np.uint32(8)
    other = np.array([1, 7, PACKED_ROWS - 1])              # rows that are not data
    packed = packed_datawords(word, other, np.empty(PACKED_ROWS, np.uint64),
                              np.empty(PACKED_ROWS, np.uint64))
    channel = rng.integers(0, 3, PACKED_ROWS)
    channel[: PACKED_ROWS // 2] = 0                        # one channel takes half the rows
    pending = np.zeros(3, np.uint64)
    np.add.at(pending, channel, packed)

    total = np.array([0, 5, 2**50], np.int64)              # sums so far, one of them large
    squares = np.array([0, 7, 2**61], np.int64)
    before = total.copy(), squares.copy()
    unpack_into(pending, total, squares)

    value = dataword.astype(np.int64)
    value[other] = 0
    expected_total, expected_squares = before[0].copy(), before[1].copy()
    np.add.at(expected_total, channel, value)
    np.add.at(expected_squares, channel, value * value)
    np.testing.assert_array_equal(total, expected_total)
    np.testing.assert_array_equal(squares, expected_squares)
    assert not pending.any()                               # emptied for the next rows
