"""FileReader: incremental, chunked reading of growing files, in both formats.

Ground truth is what the test itself wrote (random rows in larpix-control's
packet layout) or larpix-control's own raw-to-packet conversion.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix import Packet_v2, SyncPacket, TriggerPacket
from larpix.format import hdf5format, pacman_msg_format, rawhdf5format
from support.damage import append_rows, at_rest
from support.larpix import convert_messages

from exporter.errors import InputError
from exporter.packets import PACKET_DTYPE
from exporter.source.reader import FileReader


def random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows with every field random and none all-zero (io_group >= 1)."""
    raw = rng.integers(0, 256, size=n * PACKET_DTYPE.itemsize, dtype=np.uint8)
    rows = raw.view(PACKET_DTYPE).copy()
    rows["io_group"] = rng.integers(1, 256, size=n)
    return rows


def new_packet_file(path: Path) -> None:
    """An empty packet file exactly as larpix-control creates it (its dtype, its chunking)."""
    hdf5format.to_file(str(path), packet_list=[], version="2.4")


def drain(reader: FileReader) -> list:
    return list(reader.read_new())


def packets_of(chunks: list) -> np.ndarray:
    return np.concatenate([c.packets for c in chunks]) if chunks else np.zeros(0, PACKET_DTYPE)


def test_packet_file_read_at_once_equals_rows_written(tmp_path):
    rows = random_rows(np.random.default_rng(1), 3000)
    path = tmp_path / "run.h5"
    new_packet_file(path)
    append_rows(path, rows)
    reader = FileReader(path)
    chunks = drain(reader)
    assert len(chunks) == 1
    np.testing.assert_array_equal(chunks[0].packets, rows)
    assert chunks[0].format == "packet" and chunks[0].rows == 3000
    assert chunks[0].nbytes == 3000 * PACKET_DTYPE.itemsize
    assert chunks[0].has_receipt_timestamp
    assert reader.cursor.rows == 3000 and reader.cursor.format == "packet"
    assert reader.cursor.inode == path.stat().st_ino
    assert reader.cursor.size == path.stat().st_size
    assert drain(reader) == []


@pytest.mark.parametrize("read_ahead", [True, False])
@pytest.mark.parametrize("chunk_rows", [1, 7, 256, 299, 300, 5000])
def test_chunk_boundaries_anywhere(tmp_path, chunk_rows, read_ahead):
    rows = random_rows(np.random.default_rng(chunk_rows), 300)
    path = tmp_path / "run.h5"
    new_packet_file(path)
    append_rows(path, rows)
    chunks = drain(FileReader(path, chunk_rows=chunk_rows, read_ahead=read_ahead))
    assert all(0 < c.rows <= chunk_rows and c.rows == len(c.packets) for c in chunks)
    assert len(chunks) == -(-300 // chunk_rows)
    np.testing.assert_array_equal(packets_of(chunks), rows)


def test_appended_batches_read_once_each(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "run.h5"
    new_packet_file(path)
    reader = FileReader(path, chunk_rows=100)
    written, read = [], []
    for size in rng.integers(0, 400, size=30):
        batch = random_rows(rng, int(size))
        append_rows(path, batch)
        written.append(batch)
        read.extend(drain(reader))
    np.testing.assert_array_equal(packets_of(read), np.concatenate(written))
    assert reader.cursor.rows == sum(len(b) for b in written)
    assert reader.resets == 0


def test_trailing_allocated_rows_wait_until_written(tmp_path):
    rows = random_rows(np.random.default_rng(3), 500)
    path = tmp_path / "run.h5"
    new_packet_file(path)
    append_rows(path, rows[:200])
    with h5py.File(path, "a") as f:  # the logger resized, but has not written yet
        f["packets"].resize(500, axis=0)
    reader = FileReader(path, chunk_rows=64)
    np.testing.assert_array_equal(packets_of(drain(reader)), rows[:200])
    assert reader.cursor.rows == 200
    with h5py.File(path, "a") as f:
        f["packets"][200:] = rows[200:]
    np.testing.assert_array_equal(packets_of(drain(reader)), rows[200:])
    assert reader.cursor.rows == 500


def test_zero_row_followed_by_data_is_consumed(tmp_path):
    rows = random_rows(np.random.default_rng(4), 10)
    rows[4] = np.zeros(1, PACKET_DTYPE)
    path = tmp_path / "run.h5"
    new_packet_file(path)
    append_rows(path, rows)
    np.testing.assert_array_equal(packets_of(drain(FileReader(path))), rows)


def test_cursor_covers_a_chunk_once_it_is_handed_out(tmp_path):
    """A consumer that stops after counting a chunk (graceful stop) leaves a cursor that
    covers it: the next reader starts right after it, nothing is counted twice."""
    rows = random_rows(np.random.default_rng(5), 30)
    path = tmp_path / "run.h5"
    new_packet_file(path)
    append_rows(path, rows)
    reader = FileReader(path, chunk_rows=10)
    chunks = reader.read_new()
    first = next(chunks)
    assert reader.cursor.rows == 10
    second = next(chunks)
    assert reader.cursor.rows == 20
    chunks.close()  # the consumer stops after counting the second chunk
    again = FileReader(path, cursor=replace(reader.cursor), chunk_rows=10)
    rest = drain(again)
    np.testing.assert_array_equal(first.packets, rows[:10])
    np.testing.assert_array_equal(second.packets, rows[10:20])
    np.testing.assert_array_equal(packets_of(rest), rows[20:])


def read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("read-ahead")]


def packet_file_of(path: Path, rows: np.ndarray) -> Path:
    new_packet_file(path)
    append_rows(path, rows)
    return path


def test_next_chunk_is_read_while_the_consumer_holds_one(tmp_path):
    rows = random_rows(np.random.default_rng(15), 300)
    path = packet_file_of(tmp_path / "run.h5", rows)
    chunks = FileReader(path, chunk_rows=100).read_new()
    first = next(chunks)
    assert len(read_ahead_threads()) == 1  # reading rows 100-199 now
    rest = list(chunks)
    assert read_ahead_threads() == []
    np.testing.assert_array_equal(packets_of([first, *rest]), rows)

    chunks = FileReader(path, chunk_rows=100).read_new()
    next(chunks)
    chunks.close()  # the consumer stops early: the helper thread goes too
    assert read_ahead_threads() == []


def test_file_replaced_while_a_chunk_is_read_ahead(tmp_path):
    rng = np.random.default_rng(16)
    path, other = tmp_path / "run.h5", tmp_path / "next.h5"
    old, new = random_rows(rng, 300), random_rows(rng, 50)
    packet_file_of(path, old)
    packet_file_of(other, new)
    reader = FileReader(path, chunk_rows=100)
    chunks = reader.read_new()
    first = next(chunks)
    reader.ahead.result(timeout=30)  # the read-ahead of rows 100-199 is done
    os.replace(other, path)
    rest = packets_of(list(chunks))

    np.testing.assert_array_equal(first.packets, old[:100])
    # rows read ahead before the replacement are the old file's; then the new file from its start
    np.testing.assert_array_equal(rest, np.concatenate([old[100:200], new]))
    assert reader.resets == 1 and reader.cursor.rows == 50
    assert reader.cursor.inode == path.stat().st_ino


def test_error_of_a_chunk_read_ahead_reaches_the_consumer(tmp_path):
    rows = random_rows(np.random.default_rng(17), 300)
    path = packet_file_of(tmp_path / "run.h5", rows)
    reader = FileReader(path, chunk_rows=100)
    chunks = reader.read_new()
    seen = [next(chunks)]
    reader.ahead.result(timeout=30)  # rows 100-199 are read ahead before the file goes
    path.unlink()
    with pytest.raises(InputError) as error:
        seen.extend(chunks)
    assert error.value.reason == "vanished"
    np.testing.assert_array_equal(packets_of(seen), rows[:200])
    assert reader.cursor.rows == 200  # both chunks handed over are consumed, nothing more
    assert read_ahead_threads() == []


def test_saved_cursor_resumes(tmp_path):
    rows = random_rows(np.random.default_rng(6), 300)
    path = tmp_path / "run.h5"
    new_packet_file(path)
    append_rows(path, rows[:120])
    first = FileReader(path)
    drain(first)
    append_rows(path, rows[120:])
    second = FileReader(path, cursor=replace(first.cursor))
    np.testing.assert_array_equal(packets_of(drain(second)), rows[120:])
    assert second.resets == 0


def test_shrunk_file_is_read_again_from_start(tmp_path):
    rng = np.random.default_rng(8)
    path = tmp_path / "run.h5"
    new_packet_file(path)
    append_rows(path, random_rows(rng, 5000))
    reader = FileReader(path)
    drain(reader)
    inode = path.stat().st_ino
    smaller = random_rows(rng, 40)
    with h5py.File(path, "w") as f:  # truncated and rewritten in place
        f.create_group("_header").attrs["version"] = "2.4"
        f.create_dataset("packets", data=smaller, maxshape=(None,))
    assert path.stat().st_ino == inode
    np.testing.assert_array_equal(packets_of(drain(reader)), smaller)
    assert reader.resets == 1 and reader.cursor.rows == 40


def test_replaced_file_is_read_again_from_start(tmp_path):
    rng = np.random.default_rng(9)
    path, other = tmp_path / "run.h5", tmp_path / "next.h5"
    new_packet_file(path)
    append_rows(path, random_rows(rng, 100))
    reader = FileReader(path)
    drain(reader)
    replacement = random_rows(rng, 250)
    new_packet_file(other)
    append_rows(other, replacement)
    os.replace(other, path)
    np.testing.assert_array_equal(packets_of(drain(reader)), replacement)
    assert reader.resets == 1 and reader.cursor.rows == 250


def test_format_told_by_contents_not_name(tmp_path):
    rows = random_rows(np.random.default_rng(10), 5)
    packet_file = tmp_path / "raw_2023_01_01.h5"
    new_packet_file(packet_file)
    append_rows(packet_file, rows)
    raw_file = tmp_path / "datalog_packets.data"
    rawhdf5format.to_rawfile(str(raw_file), msgs=[data_message([])],
                             msg_headers={"io_groups": [3]})
    assert drain(FileReader(packet_file))[0].format == "packet"
    chunk = drain(FileReader(raw_file))[0]
    assert chunk.format == "raw" and chunk.packets["packet_type"].tolist() == [4]
    assert chunk.packets["io_group"].tolist() == [3]


# --- raw files ---------------------------------------------------------------

def random_words(rng: np.random.Generator, n: int) -> list:
    """larpix-control packet objects of every kind a DATA message can carry."""
    out = []
    for kind in rng.choice(["data", "sync", "trigger"], size=n, p=[0.8, 0.1, 0.1]):
        if kind == "data":
            p = Packet_v2(rng.bytes(8))
            p.io_channel = int(rng.integers(1, 33))
            p.receipt_timestamp = int(rng.integers(0, 2**32))
        elif kind == "sync":
            p = SyncPacket(sync_type=bytes([rng.choice([83, 72, 67])]),
                           clk_source=int(rng.integers(0, 2)),
                           timestamp=int(rng.integers(0, 2**32)))
        else:
            p = TriggerPacket(trigger_type=bytes([int(rng.integers(0, 256))]),
                              timestamp=int(rng.integers(0, 2**32)))
        out.append(p)
    return out


def data_message(packets: list) -> bytes:
    return pacman_msg_format.format(packets, msg_type="DATA")


def test_raw_file_appended_in_batches(tmp_path):
    rng = np.random.default_rng(11)
    path = tmp_path / "raw.h5"
    reader = FileReader(path, chunk_rows=50)
    msgs, io_groups, read = [], [], []
    for _ in range(12):
        new = [data_message(random_words(rng, int(rng.integers(0, 30)))) for _ in range(5)]
        groups = [int(g) for g in rng.integers(1, 5, size=5)]
        rawhdf5format.to_rawfile(str(path), msgs=new, msg_headers={"io_groups": groups})
        msgs += new
        io_groups += groups
        read.extend(drain(reader))
    expected = convert_messages(msgs, io_groups, tmp_path)[0]
    np.testing.assert_array_equal(packets_of(read), expected)
    assert reader.cursor.rows == 60 and sum(c.rows for c in read) == 60
    assert all(c.malformed == 0 and c.format == "raw" for c in read)


@pytest.mark.parametrize("read_ahead", [True, False])
@pytest.mark.parametrize("chunk_rows", [1, 3, 17, 100, 10_000])
def test_raw_chunk_boundaries_anywhere(tmp_path, chunk_rows, read_ahead):
    rng = np.random.default_rng(chunk_rows)
    path = tmp_path / "raw.h5"
    msgs = [data_message(random_words(rng, int(rng.integers(0, 25)))) for _ in range(30)]
    groups = [int(g) for g in rng.integers(1, 9, size=30)]
    rawhdf5format.to_rawfile(str(path), msgs=msgs, msg_headers={"io_groups": groups})
    chunks = drain(FileReader(path, chunk_rows=chunk_rows, read_ahead=read_ahead))
    assert all(0 < c.rows <= chunk_rows for c in chunks) and sum(c.rows for c in chunks) == 30
    np.testing.assert_array_equal(packets_of(chunks), convert_messages(msgs, groups, tmp_path)[0])


def test_raw_chunks_bounded_by_messages(tmp_path):
    rng = np.random.default_rng(12)
    path = tmp_path / "raw.h5"
    msgs = [data_message(random_words(rng, 19)) for _ in range(40)]
    rawhdf5format.to_rawfile(str(path), msgs=msgs, msg_headers={"io_groups": [1] * 40})
    chunks = drain(FileReader(path, chunk_rows=100))
    assert sum(c.rows for c in chunks) == 40
    # 20 packets per message: after the first chunk shows that, 5 messages per chunk
    assert [c.rows for c in chunks[1:-1]] == [5] * (len(chunks) - 2)
    assert all(len(c.packets) <= 100 for c in chunks)
    np.testing.assert_array_equal(packets_of(chunks),
                                  convert_messages(msgs, [1] * 40, tmp_path)[0])


@pytest.mark.parametrize("messages_first", [False, True])
def test_raw_rows_wait_until_message_and_header_are_written(tmp_path, messages_first):
    """to_rawfile resizes both datasets, then writes msgs, then msg_headers: a poll in
    between must neither consume empty messages nor read io_group 0 for unwritten headers."""
    rng = np.random.default_rng(13)
    path = tmp_path / "raw.h5"
    msgs = [data_message(random_words(rng, 3)) for _ in range(6)]
    rawhdf5format.to_rawfile(str(path), msgs=msgs[:4], msg_headers={"io_groups": [2] * 4})
    with h5py.File(path, "a", libver="latest") as f:  # resized, not (fully) written yet
        f["msgs"].resize((6,))
        f["msg_headers"].resize((6,))
        if messages_first:
            f["msgs"][4:] = [np.frombuffer(m, np.uint8) for m in msgs[4:]]
    reader = FileReader(path)
    first = drain(reader)
    assert reader.cursor.rows == 4
    with h5py.File(path, "a", libver="latest") as f:
        if not messages_first:
            f["msgs"][4:] = [np.frombuffer(m, np.uint8) for m in msgs[4:]]
        f["msg_headers"][4:] = np.array([(2,), (2,)], f["msg_headers"].dtype)
    second = drain(reader)
    assert reader.cursor.rows == 6
    np.testing.assert_array_equal(packets_of(first + second),
                                  convert_messages(msgs, [2] * 6, tmp_path)[0])


def test_raw_headers_written_after_messages_at_row_0_wait(tmp_path):
    """The first batch of a new raw file caught between to_rawfile's two writes: its
    messages wait for their headers instead of being read with io_group 0."""
    rng = np.random.default_rng(16)
    path = tmp_path / "raw.h5"
    msgs = [data_message(random_words(rng, 3)) for _ in range(3)]
    rawhdf5format.to_rawfile(str(path), msgs=[], msg_headers={"io_groups": []})
    with h5py.File(path, "a", libver="latest") as f:
        f["msgs"].resize((3,))
        f["msg_headers"].resize((3,))
        f["msgs"][:] = [np.frombuffer(m, np.uint8) for m in msgs]
    reader = FileReader(path)
    assert drain(reader) == [] and reader.cursor.rows == 0
    with h5py.File(path, "a", libver="latest") as f:
        f["msg_headers"][:] = np.array([(7,)] * 3, f["msg_headers"].dtype)
    np.testing.assert_array_equal(packets_of(drain(reader)),
                                  convert_messages(msgs, [7] * 3, tmp_path)[0])


def test_raw_file_without_headers_is_read_once_settled(tmp_path):
    """Files written without msg_headers carry io_group 0 throughout: once the file has not
    changed for SETTLE_SECONDS its zero headers are final and nothing waits."""
    rng = np.random.default_rng(15)
    path = tmp_path / "raw.h5"
    msgs = [data_message(random_words(rng, 3)) for _ in range(5)]
    rawhdf5format.to_rawfile(str(path), msgs=msgs, msg_headers={"io_groups": [0] * 5})
    reader = FileReader(path)
    assert drain(reader) == []  # just written: its headers may still come
    at_rest(path)
    np.testing.assert_array_equal(packets_of(drain(reader)),
                                  convert_messages(msgs, [0] * 5, tmp_path)[0])


HOLD_OPEN_FOR_SWMR_WRITE = """
import sys, time, h5py
with h5py.File(sys.argv[1], 'a', libver='latest', locking=False) as f:
    f.swmr_mode = True
    print('open', flush=True)
    sys.stdin.readline()
"""


def test_raw_file_read_while_swmr_writer_has_it_open(tmp_path):
    rng = np.random.default_rng(14)
    path = tmp_path / "raw.h5"
    msgs = [data_message(random_words(rng, 4)) for _ in range(3)]
    rawhdf5format.to_rawfile(str(path), msgs=msgs, msg_headers={"io_groups": [1, 2, 3]})
    writer = subprocess.Popen([sys.executable, "-c", HOLD_OPEN_FOR_SWMR_WRITE, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        with pytest.raises(OSError, match="already open for write"):
            h5py.File(path, "r", locking=False)
        chunks = drain(FileReader(path))
    finally:
        writer.communicate("done\n", timeout=30)
    assert writer.returncode == 0
    np.testing.assert_array_equal(packets_of(chunks),
                                  convert_messages(msgs, [1, 2, 3], tmp_path)[0])
