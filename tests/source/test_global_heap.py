"""A raw file's messages read from the bytes of HDF5's global heap.

The truth is h5py's own read of the same rows (HDF5's variable-length reader), for
files written by larpix-control's ``to_rawfile`` and by h5py in layouts it can make.
Whatever our read cannot vouch for must come back as None, never as other bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix.format import pacman_msg_format, rawhdf5format
from support.damage import corrupt_chunk, larpix_packets, raw_file

from exporter.source import global_heap, reader
from exporter.source.global_heap import OBJECT, read_messages
from exporter.source.reader import FileReader

VLEN_BYTES = h5py.vlen_dtype(np.uint8)


def ours(path: Path, start: int, stop: int) -> np.ndarray | None:
    with h5py.File(path, "r", locking=False) as f:
        fd = f.id.get_vfd_handle()
        return read_messages(f["msgs"], start, stop, fd, os.fstat(fd).st_size)


def by_hdf5(path: Path, start: int, stop: int) -> list[bytes]:
    with h5py.File(path, "r", locking=False) as f:
        return [m.tobytes() for m in f["msgs"][start:stop]]


def as_bytes(messages: np.ndarray) -> list[bytes]:
    assert messages.dtype == object
    assert all(m.dtype == np.uint8 and m.ndim == 1 for m in messages)
    return [m.tobytes() for m in messages]


def windows(n: int, seed: int) -> list[tuple[int, int]]:
    """The whole file, each end, runs across the 1024-row chunks, and random runs."""
    rng = np.random.default_rng(seed)
    fixed = [(0, n), (0, 1), (n - 1, n), (1023, 1025), (1000, 2100), (5, 5)]
    drawn = [tuple(sorted(rng.integers(0, n + 1, size=2).tolist())) for _ in range(20)]
    return [(a, b) for a, b in fixed + drawn if 0 <= a <= b <= n]


def write_messages(path: Path, sizes: list[int], seed: int) -> list[bytes]:
    """PACMAN DATA messages of the given word counts, appended by larpix-control's
    to_rawfile a few hundred at a time, as its file worker does."""
    packets = larpix_packets(max(sizes), seed)
    msgs = [pacman_msg_format.format(packets[:words], msg_type="DATA") for words in sizes]
    for first in range(0, len(msgs), 300):
        batch = msgs[first:first + 300]
        rawhdf5format.to_rawfile(str(path), msgs=batch,
                                 msg_headers={"io_groups": [1 + i % 4 for i in range(len(batch))]})
    return msgs


@pytest.mark.parametrize("sizes", [
    [1, 2, 3] * 800,                       # tiny messages: hundreds to a collection
    [225] * 2500,                          # as the DAQ's: ~15 to a collection
    [225, 4100, 1, 0, 60] * 300,           # one bigger than a collection, header-only ones
])
def test_messages_equal_hdf5s_for_files_larpix_control_wrote(tmp_path, sizes):
    path = tmp_path / "raw.h5"
    msgs = write_messages(path, sizes, seed=len(sizes))
    assert by_hdf5(path, 0, len(msgs)) == msgs
    for start, stop in windows(len(msgs), seed=len(sizes)):
        got = ours(path, start, stop)
        assert got is not None, (start, stop)
        assert as_bytes(got) == msgs[start:stop], (start, stop)


def test_rows_allocated_but_not_written_read_as_empty_messages(tmp_path):
    path = tmp_path / "raw.h5"
    msgs, _ = raw_file(path, 30, seed=3)
    with h5py.File(path, "a") as f:
        f["msgs"].resize((40,))  # as a writer between its resize and its write
    got = ours(path, 0, 40)
    assert got is not None
    assert as_bytes(got) == by_hdf5(path, 0, 40) == msgs + [b""] * 10


def h5py_file(path: Path, msgs: list[bytes], fcpl: h5py.h5p.PropFCID | None = None,
              **options) -> None:
    data = np.empty(len(msgs), object)
    for i, message in enumerate(msgs):
        data[i] = np.frombuffer(message, np.uint8)
    fid = h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)
    with h5py.File(fid) as f:
        f.create_dataset("msgs", data=data, dtype=VLEN_BYTES, **options)


@pytest.mark.parametrize("layout", ["shuffle", "lzf", "contiguous", "4-byte lengths",
                                    "chunk not stored"])
def test_other_layouts_are_left_to_hdf5(tmp_path, layout):
    msgs = [bytes(range(8 + 16 * (i % 5))) for i in range(50)]
    path = tmp_path / "other.h5"
    fcpl = None
    options = {"maxshape": (None,), "chunks": (16,), "compression": "gzip"}
    if layout == "shuffle":
        options["shuffle"] = True
    elif layout == "lzf":
        options["compression"] = "lzf"
    elif layout == "contiguous":
        options = {}
    elif layout == "4-byte lengths":
        fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
        fcpl.set_sizes(8, 4)
    h5py_file(path, msgs, fcpl, **options)
    if layout == "chunk not stored":
        with h5py.File(path, "a") as f:
            f["msgs"].resize((70,))
        assert ours(path, 40, 70) is None
        assert ours(path, 0, 48) is not None  # the stored chunks still read
        return
    assert by_hdf5(path, 0, 50) == msgs
    assert ours(path, 0, 50) is None


def test_messages_of_any_length_in_a_file_h5py_wrote(tmp_path):
    """Lengths that are not whole 8-byte units: each object's data is padded in the heap."""
    msgs = [bytes((np.arange(n) * 7 + n) % 256) for n in range(1, 300)] * 3
    path = tmp_path / "any.h5"
    h5py_file(path, msgs, maxshape=(None,), chunks=(64,), compression="gzip")
    for start, stop in [(0, len(msgs)), (1, 2), (63, 65), (100, 777)]:
        got = ours(path, start, stop)
        assert got is not None
        assert as_bytes(got) == by_hdf5(path, start, stop) == msgs[start:stop]


def first_object(path: Path, message: bytes) -> tuple[int, int]:
    """Where the heap object holding ``message`` has its header, and where its collection
    starts (found in the file's bytes: the message, then the signature before it)."""
    data = path.read_bytes()
    header = data.index(message) - OBJECT.itemsize
    return header, data.rindex(b"GCOL", 0, header)


@pytest.mark.parametrize("damage", ["collection signature", "collection size",
                                    "object index", "object size", "object size past 2**63",
                                    "references"])
def test_damage_is_left_to_hdf5(tmp_path, damage):
    path = tmp_path / "raw.h5"
    msgs = write_messages(path, [3, 1, 2] * 400, seed=5)
    assert ours(path, 0, len(msgs)) is not None
    header, collection = first_object(path, msgs[0])
    if damage == "references":
        corrupt_chunk(path, "msgs", 0)
    else:
        offset, value = {
            "collection signature": (collection, b"GCOX"),
            "collection size": (collection + 8, (path.stat().st_size).to_bytes(8, "little")),
            "object index": (header, (60000).to_bytes(2, "little")),
            "object size": (header + 8, (7).to_bytes(8, "little")),
            "object size past 2**63": (header + 8, (2**64 - 16).to_bytes(8, "little")),
        }[damage]
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(value)
    assert ours(path, 0, len(msgs)) is None


def test_a_reference_whose_length_disagrees_with_its_object_is_left_to_hdf5(tmp_path):
    msgs = [bytes(range(8 + 16 * (i % 5))) for i in range(50)]
    path = tmp_path / "unfiltered.h5"
    h5py_file(path, msgs, maxshape=(None,), chunks=(64,))  # references stored as they are
    assert as_bytes(ours(path, 0, 50)) == msgs
    header, collection = first_object(path, msgs[0])
    data = path.read_bytes()
    reference = (len(msgs[0]).to_bytes(4, "little") + collection.to_bytes(8, "little")
                 + data[header:header + 2] + bytes(2))
    at = data.index(reference)
    with open(path, "r+b") as f:
        f.seek(at)
        f.write((len(msgs[0]) - 1).to_bytes(4, "little"))
    assert ours(path, 0, 50) is None
    assert ours(path, 1, 50) is not None  # the other references still read


def test_a_collection_holding_an_index_twice_is_left_to_hdf5(tmp_path):
    """Two objects of the same size under one index: neither is vouched for."""
    msgs = [bytes([65 + i]) * 24 for i in range(10)]
    path = tmp_path / "twice.h5"
    h5py_file(path, msgs, maxshape=(None,), chunks=(64,), compression="gzip")
    assert as_bytes(ours(path, 1, 2)) == [msgs[1]]
    header, _ = first_object(path, msgs[0])
    second = header + OBJECT.itemsize + len(msgs[0])
    data = path.read_bytes()
    assert data[second + OBJECT.itemsize:second + OBJECT.itemsize + 24] == msgs[1]
    with open(path, "r+b") as f:
        f.seek(header)
        f.write(data[second:second + 2])  # the first object now claims the second's index
    assert ours(path, 1, 2) is None


def test_collections_much_bigger_than_their_messages_are_left_to_hdf5(tmp_path, monkeypatch):
    path = tmp_path / "raw.h5"
    msgs = write_messages(path, [1] * 3, seed=7)  # 24-byte messages in a 4 kB collection
    assert as_bytes(ours(path, 0, 3)) == msgs
    monkeypatch.setattr(global_heap, "_MAX_SLACK_BYTES", 0)
    assert ours(path, 0, 3) is None


def test_the_reader_takes_the_heap_path_and_gives_what_hdf5_gives(tmp_path, monkeypatch):
    """Packets of a larpix-control file: the same whether the messages come from the heap's
    bytes or from HDF5, and from the heap's bytes for every block."""
    path = tmp_path / "raw.h5"
    write_messages(path, [225, 3, 40, 0, 120] * 500, seed=9)

    def packets() -> np.ndarray:
        chunks = list(FileReader(path, chunk_rows=50_000, at_rest=True).read_new())
        return np.concatenate([c.packets for c in chunks])

    results = []

    def noting(*args) -> np.ndarray | None:
        results.append(read_messages(*args))
        return results[-1]

    monkeypatch.setattr(reader, "read_messages", noting)
    from_heap = packets()
    assert len(results) > 5 and all(r is not None for r in results)
    monkeypatch.setattr(reader, "read_messages", lambda *args: None)
    np.testing.assert_array_equal(from_heap, packets())


#: Appends PACMAN messages with larpix-control's to_rawfile, as fast as it can.
APPENDING_WRITER = r"""
import sys
from larpix import Packet_v2
from larpix.format import pacman_msg_format, rawhdf5format
path, batches = sys.argv[1], int(sys.argv[2])
for i in range(batches):
    msgs = [pacman_msg_format.format([Packet_v2(bytes([i % 256, j % 256, k % 256, 0, 0, 0, 0, 0]))
                                      for k in range(1 + (i + j) % 300)], msg_type="DATA")
            for j in range(20)]
    rawhdf5format.to_rawfile(path, msgs=msgs, msg_headers={"io_groups": [1] * len(msgs)})
"""


def test_reads_made_while_larpix_control_appends_give_what_the_finished_file_holds(tmp_path):
    """A read made mid-append may not parse (None), or find rows not written yet (empty);
    every message it gives is the one the file holds at that row once the writer is done."""
    path = tmp_path / "live.h5"
    write_messages(path, [10] * 20, seed=11)
    writer = subprocess.Popen([sys.executable, "-c", APPENDING_WRITER, str(path), "120"])
    seen: list[tuple[int, list[bytes]]] = []
    try:
        while writer.poll() is None:
            try:
                with h5py.File(path, "r", locking=False, swmr=True) as f:
                    fd = f.id.get_vfd_handle()
                    n = f["msgs"].shape[0]
                    start = max(0, n - 200)
                    got = read_messages(f["msgs"], start, n, fd, os.fstat(fd).st_size)
            except (OSError, KeyError):  # caught mid-write: HDF5 cannot open it
                continue
            if got is not None:
                seen.append((start, as_bytes(got)))
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    final = by_hdf5(path, 0, 20 + 120 * 20)
    assert len(seen) >= 20
    given = [(start + i, m) for start, got in seen for i, m in enumerate(got) if m]
    assert len(given) > 1000
    assert [row for row, m in given if m != final[row]] == []
