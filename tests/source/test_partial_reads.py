"""A stored chunk that cannot be read costs its own rows only: every readable row before and
after it is read once, and the damage is reported once, naming the file and the rows.

Files are written by larpix-control (raw) or laid out as its packet files with gzip
chunks; one chunk's stored bytes are then overwritten. Expected rows come from
larpix-control's own conversion of the messages that are still readable, or from the
rows it wrote.
"""

from __future__ import annotations

import time

import h5py
import numpy as np
import pytest
from support.damage import (
    CHUNK,
    append_rows,
    at_rest,
    corrupt_chunk,
    gzip_packet_file,
    larpix_packets,
    packet_file,
)
from support.damage import raw_file as larpix_raw_file
from support.larpix import convert_messages
from support.waiting import wait_for

from exporter.errors import TransientReadError
from exporter.packets import PACKET_DTYPE
from exporter.source import reader as reader_module
from exporter.source.cursor import Cursor
from exporter.source.reader import FileReader


def drain(reader: FileReader) -> list:
    return list(reader.read_new())


def packets_of(chunks: list) -> np.ndarray:
    return np.concatenate([c.packets for c in chunks]) if chunks else np.zeros(0, PACKET_DTYPE)


def errors_of(chunks: list) -> list[tuple[str, str]]:
    return [(e.reason, str(e)) for c in chunks for e in c.damaged]


def keep(items: list, bad: range) -> list:
    return [x for i, x in enumerate(items) if i not in bad]


@pytest.mark.parametrize(("chunk_rows", "read_ahead"),
                         [(1, True), (1000, True), (1000, False), (1 << 18, True)])
def test_raw_file_with_a_corrupt_msgs_chunk(tmp_path, chunk_rows, read_ahead):
    path = tmp_path / "raw.h5"
    msgs, groups = larpix_raw_file(path, 4 * CHUNK, seed=1)
    bad = corrupt_chunk(path, "msgs", 1)
    assert bad == range(1024, 2048)
    at_rest(path)
    reader = FileReader(path, chunk_rows=chunk_rows, read_ahead=read_ahead)
    chunks = drain(reader)
    expected = convert_messages(keep(msgs, bad), keep(groups, bad), tmp_path)[0]
    np.testing.assert_array_equal(packets_of(chunks), expected)
    assert errors_of(chunks) == [
        ("corrupt_chunk", f"{path}: rows 1024-2047 of 'msgs' unreadable "
                          "(filter returned failure during read); skipped")]
    assert sum(c.rows for c in chunks) == 3 * CHUNK and sum(c.skipped for c in chunks) == CHUNK
    assert reader.cursor.rows == 4 * CHUNK and reader.resets == 0
    assert drain(reader) == []  # moved past: neither read nor reported again


def test_raw_file_with_a_corrupt_header_chunk(tmp_path):
    path = tmp_path / "raw.h5"
    msgs, groups = larpix_raw_file(path, 3 * CHUNK + 300, seed=2)
    bad = corrupt_chunk(path, "msg_headers", 3)  # the last one, partly filled
    assert bad == range(3 * CHUNK, 3 * CHUNK + 300)
    at_rest(path)
    chunks = drain(FileReader(path))
    expected = convert_messages(keep(msgs, bad), keep(groups, bad), tmp_path)[0]
    np.testing.assert_array_equal(packets_of(chunks), expected)
    assert [text.split(": ", 1)[1] for _, text in errors_of(chunks)] == [
        "rows 3072-3371 of 'msg_headers' unreadable (filter returned failure during read); "
        "skipped"]


@pytest.mark.parametrize("chunk_rows", [700, 1 << 18])
def test_packet_file_with_corrupt_chunks(tmp_path, chunk_rows):
    rows = packet_file(tmp_path / "plain.h5", larpix_packets(5 * CHUNK + 100, seed=3))
    path = tmp_path / "run.h5"
    gzip_packet_file(path, rows)
    first, last = corrupt_chunk(path, "packets", 1), corrupt_chunk(path, "packets", 5)
    good = np.ones(len(rows), bool)
    good[first.start:first.stop] = good[last.start:last.stop] = False
    at_rest(path)
    reader = FileReader(path, chunk_rows=chunk_rows)
    chunks = drain(reader)
    np.testing.assert_array_equal(packets_of(chunks), rows[good])
    assert [text.split(": ", 1)[1].split(" (")[0] for _, text in errors_of(chunks)] == [
        "rows 1024-2047 of 'packets' unreadable", "rows 5120-5219 of 'packets' unreadable"]
    assert reader.cursor.rows == len(rows) and drain(reader) == []


@pytest.mark.parametrize("start", [0, 300])
def test_bad_chunks_across_a_step_of_the_read_are_said_once(tmp_path, monkeypatch, start):
    """A chunk is read in steps (``STEP_ROWS``, here two stored chunks); two bad stored
    chunks either side of a step's end are one range, said once, whatever the cursor."""
    monkeypatch.setattr(reader_module, "STEP_ROWS", 2 * CHUNK)
    rows = packet_file(tmp_path / "plain.h5", larpix_packets(6 * CHUNK, seed=5))
    path = tmp_path / "run.h5"
    gzip_packet_file(path, rows)
    first, second = corrupt_chunk(path, "packets", 1), corrupt_chunk(path, "packets", 2)
    assert (first.start, second.stop) == (CHUNK, 3 * CHUNK)  # either side of row 2048
    at_rest(path)
    reader = FileReader(path, Cursor(str(path), 0, 0, start, None))
    chunks = drain(reader)
    np.testing.assert_array_equal(packets_of(chunks),
                                  np.concatenate([rows[start:CHUNK], rows[3 * CHUNK:]]))
    assert [text.split(": ", 1)[1].split(" (")[0] for _, text in errors_of(chunks)] == [
        "rows 1024-3071 of 'packets' unreadable"]
    assert reader.cursor.rows == len(rows) and drain(reader) == []


def test_rows_after_a_bad_chunk_are_read_as_they_come(tmp_path):
    """A live file: the damage is said once, rows appended after it are read once each."""
    rows = packet_file(tmp_path / "plain.h5", larpix_packets(4 * CHUNK, seed=4))
    path = tmp_path / "run.h5"
    gzip_packet_file(path, rows[:2 * CHUNK])
    bad = corrupt_chunk(path, "packets", 0)
    at_rest(path)
    reader = FileReader(path)
    chunks = drain(reader)
    with h5py.File(path, "a") as f:
        f["packets"].resize((4 * CHUNK,))
        f["packets"][2 * CHUNK:] = rows[2 * CHUNK:]
    chunks += drain(reader)
    np.testing.assert_array_equal(packets_of(chunks), rows[bad.stop:])
    assert len(errors_of(chunks)) == 1 and reader.cursor.rows == 4 * CHUNK


def test_headers_missing_for_good_wait_and_are_not_errors(tmp_path):
    """msgs longer than msg_headers for good (a writer that stopped between its two
    writes): the messages without headers wait, as every unwritten header does; only
    corrupt chunks are skipped."""
    path = tmp_path / "raw.h5"
    msgs, groups = larpix_raw_file(path, 500, seed=5)
    extra = larpix_raw_file(tmp_path / "more.h5", 40, seed=6)[0]
    with h5py.File(path, "a", libver="latest") as f:
        f["msgs"].resize((540,))
        f["msgs"][500:] = [np.frombuffer(m, np.uint8) for m in extra]
    at_rest(path)
    reader = FileReader(path)
    chunks = drain(reader)
    np.testing.assert_array_equal(packets_of(chunks), convert_messages(msgs, groups, tmp_path)[0])
    assert reader.cursor.rows == 500 and errors_of(chunks) == []
    assert drain(reader) == []


@pytest.mark.parametrize("fmt", ["packet", "raw"])
def test_unreadable_rows_of_a_file_still_changing_are_not_skipped(tmp_path, fmt):
    """Rows that will not read in a file changed moments ago may be a writer's unflushed
    work: nothing is skipped or consumed (the service reads again next round) until the
    file has rested; then the damage is skipped once. A finished file (``at_rest``, once
    mode) skips it at once."""
    path = tmp_path / "run.h5"
    if fmt == "raw":
        msgs, groups = larpix_raw_file(path, 3 * CHUNK, seed=7)
        bad = corrupt_chunk(path, "msgs", 1)
        expected = convert_messages(keep(msgs, bad), keep(groups, bad), tmp_path)[0]
    else:
        rows = packet_file(tmp_path / "plain.h5", larpix_packets(3 * CHUNK, seed=7))
        gzip_packet_file(path, rows)
        bad = corrupt_chunk(path, "packets", 1)
        expected = rows[np.r_[0:bad.start, bad.stop:len(rows)]]
    reader = FileReader(path)
    with pytest.raises(TransientReadError) as caught:
        drain(reader)
    assert caught.value.reason == "busy" and reader.cursor.rows == 0
    finished = drain(FileReader(path, at_rest=True))
    at_rest(path)
    for chunks in (finished, drain(reader)):
        np.testing.assert_array_equal(packets_of(chunks), expected)
        assert [text.split(": ", 1)[1].split(" (")[0] for _, text in errors_of(chunks)] == [
            f"rows 1024-2047 of '{'msgs' if fmt == 'raw' else 'packets'}' unreadable"]
    assert reader.cursor.rows == 3 * CHUNK and drain(reader) == []


def test_damage_in_a_file_that_keeps_changing_is_skipped_once_it_persists(tmp_path,
                                                                          monkeypatch):
    """A live run with one bad chunk: the writer keeps appending, so the file never rests.
    Once reads have found the same rows unreadable for ``PERSIST_SECONDS`` they are skipped,
    said once, and every row before and after them (those appended meanwhile too) is read
    once; before that nothing is consumed."""
    monkeypatch.setattr(reader_module, "PERSIST_SECONDS", 0.5)
    rows = packet_file(tmp_path / "plain.h5", larpix_packets(12 * CHUNK, seed=9))
    path = tmp_path / "run.h5"
    gzip_packet_file(path, rows[:3 * CHUNK])
    bad = corrupt_chunk(path, "packets", 1)
    reader, chunks, written = FileReader(path), [], 3 * CHUNK
    first_read = time.monotonic()

    def append_then_read() -> bool:
        nonlocal written
        assert written < len(rows), "the bad rows were not skipped while the file changed"
        append_rows(path, rows[written:written + CHUNK // 4])  # a change before every read
        written += CHUNK // 4
        try:
            chunks.extend(drain(reader))
        except TransientReadError as error:
            assert error.reason == "busy" and reader.cursor.rows == 0
        return bool(chunks)

    wait_for(append_then_read, 30, "the rows after the bad chunk", interval=0)
    assert time.monotonic() - first_read >= 0.5
    append_rows(path, rows[written:])
    chunks += drain(reader)
    np.testing.assert_array_equal(packets_of(chunks), rows[np.r_[0:bad.start, bad.stop:len(rows)]])
    assert [text.split(": ", 1)[1].split(" (")[0] for _, text in errors_of(chunks)] == [
        "rows 1024-2047 of 'packets' unreadable"]
    assert reader.cursor.rows == len(rows) and drain(reader) == []
