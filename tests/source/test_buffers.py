"""Reused chunk arrays: an array goes round again only once no one refers to it, and a
chunk's words are its packets' fields.

The truth is numpy's own view of the fields (and, for the reader, rows written
in larpix-control's packet layout and read back while every chunk is kept).
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from support.damage import append_rows
from support.recount import words_recount
from test_reader import new_packet_file, random_rows

from exporter.packets import DELAY_BUCKETS, DELAY_EDGES, STEP_ROWS, Chunk, PacketWords
from exporter.source.buffers import ArrayPool
from exporter.source.reader import FileReader


def test_an_array_in_use_is_never_handed_out_again():
    pool = ArrayPool(keep=2)
    first = pool.empty(1000, np.uint32)
    first[:] = 7
    second = pool.empty(1000, np.uint32)
    assert not np.shares_memory(first, second)
    view = first[10:20]
    del first
    third = pool.empty(1000, np.uint32)  # ``first`` lives on in ``view``
    assert not np.shares_memory(third, view)
    assert (view == 7).all()


def test_an_array_no_one_holds_is_reused():
    pool = ArrayPool(keep=2)
    address = pool.empty(1000, np.uint32).__array_interface__["data"][0]
    gc.collect()
    again = pool.empty(800, np.uint32)
    assert again.__array_interface__["data"][0] == address
    assert len(again) == 800
    assert pool.empty(800, np.uint8).dtype == np.uint8  # another dtype: another array


def test_a_free_array_far_bigger_than_asked_for_is_let_go():
    pool = ArrayPool(keep=4)
    big = pool.empty(10_000, np.uint32)
    other = pool.empty(10_000, np.uint8)
    big_address = big.__array_interface__["data"][0]
    del big, other
    gc.collect()
    small = pool.empty(100, np.uint32)  # the big one goes: a new small array
    assert small.__array_interface__["data"][0] != big_address
    small_address = small.__array_interface__["data"][0]
    del small
    gc.collect()
    again = pool.empty(60, np.uint32)  # not twice as small: reused
    assert again.__array_interface__["data"][0] == small_address


def test_a_full_pool_lets_its_oldest_array_go():
    pool = ArrayPool(keep=2)
    held = [pool.empty(10, np.int64) for _ in range(4)]
    for i, array in enumerate(held):
        array[:] = i
    assert [int(a[0]) for a in held] == [0, 1, 2, 3]  # none was handed out twice


def test_words_are_the_packets_fields():
    random = random_rows(np.random.default_rng(5), 5000)
    small = random.copy()
    small["timestamp"] %= 2**30  # int32 delays, spread over every bucket
    delay = (2 ** np.random.default_rng(7).uniform(0, 27, len(small))).astype(np.int64)
    edges = np.array(DELAY_EDGES)
    delay[:8 * len(edges):2] = np.concatenate([edges - 1, edges, edges + 1, -edges - 1])
    small["receipt_timestamp"] = small["timestamp"] + delay
    small["packet_type"][::2] = 0
    for rows, has_receipt in ((random, False), (random, True), (small, True)):
        words = Chunk(rows, len(rows), rows.nbytes, "packet", has_receipt).words
        expected = words_recount(rows, has_receipt)
        for name in ("ids", "flags", "word", "other", "flagged", "adc_delay"):
            assert np.array_equal(getattr(words, name), expected[name]), name
        if not has_receipt:
            assert words.delay is None
            continue
        assert np.array_equal(words.delay, expected["delay"])
        data = rows["packet_type"] == 0
        if rows is small:
            assert len(set(words.adc_delay[data] // 256 % (DELAY_BUCKETS + 1))) == DELAY_BUCKETS


@pytest.mark.parametrize("first_wide_row", [0, STEP_ROWS + 3])
def test_readout_delay_of_timestamps_past_2_31_is_exact(first_wide_row):
    """From the first timestamp past 2**31 on (in a later step, too), delays are int64."""
    rows = random_rows(np.random.default_rng(8), 2 * STEP_ROWS + 5)
    rows["packet_type"] = 0
    rows["timestamp"] = np.random.default_rng(9).integers(0, 2**31, len(rows))
    rows["timestamp"][first_wide_row] = 2**40 + 7
    words = Chunk(rows, len(rows), rows.nbytes, "packet", True).words
    assert words.delay.dtype == np.int64
    expected = words_recount(rows)
    assert np.array_equal(words.delay, expected["delay"])
    assert np.array_equal(words.adc_delay, expected["adc_delay"])


def test_words_from_a_given_allocator():
    rows = random_rows(np.random.default_rng(6), 100)
    rows["timestamp"] %= 2**31  # int32 delays: in the words' array
    pool = ArrayPool(keep=1)
    words = PacketWords.of(rows, True, pool.empty)
    base = words.ids.base
    assert base is not None and base.size == 5 * len(rows)  # all five words in one array
    assert all(column.base is base
               for column in (words.flags, words.word, words.delay, words.adc_delay))
    assert pool.empty(5 * len(rows), np.uint32).base is not base  # it is in use


def written_file(tmp_path, n: int) -> tuple:
    path = tmp_path / "rows.h5"
    new_packet_file(path)
    rows = random_rows(np.random.default_rng(7), n)
    append_rows(path, rows)
    return path, rows


def test_chunks_kept_by_the_consumer_stay_intact(tmp_path):
    """Whole chunks, or just the packets of every other one (its words go free and are
    reused), are kept while later ones are read: each still holds its own rows."""
    path, rows = written_file(tmp_path, 50_000)
    kept = [chunk if i % 2 == 0 else chunk.packets
            for i, chunk in enumerate(FileReader(path, chunk_rows=7_000).read_new())]
    packets = np.concatenate([k.packets if isinstance(k, Chunk) else k for k in kept])
    assert np.array_equal(packets, rows)
    for chunk in kept[::2]:
        assert np.array_equal(chunk.words.ids,
                              chunk.packets.view(np.uint32).reshape(-1, 9)[:, 0].byteswap())


def test_chunks_let_go_are_read_into_the_same_arrays(tmp_path):
    path, rows = written_file(tmp_path, 80_000)
    addresses, total = set(), 0
    for chunk in FileReader(path, chunk_rows=10_000).read_new():
        addresses.add(chunk.packets.__array_interface__["data"][0])
        total += len(chunk.packets)
    assert total == len(rows)
    assert len(addresses) <= 3  # the one counted, the one read ahead, the one before
