"""ChunkMap: rows of an uncompressed packet dataset read as bytes, run by run, and handed
back to HDF5 wherever the map cannot vouch for them.

The truth is HDF5's own read of the same rows (h5py slicing), of files written by
larpix-control's ``to_file``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
from larpix.format import hdf5format
from support.damage import append_rows, gzip_packet_file, larpix_packets

from exporter.packets import PACKET_DTYPE
from exporter.source.chunk_map import MAX_GAP, WORTH_SHARE, ChunkMap, worth_mapping
from exporter.source.reader import FileReader


def written_in_calls(path: Path, calls: int, per_call: int) -> np.ndarray:
    """A packet file made by ``calls`` calls of larpix-control's ``to_file``, as a DAQ
    appends: with enough calls, runs of back-to-back chunks, each ended by a jump where
    HDF5 stored something else. The rows HDF5 reads back."""
    for call in range(calls):
        hdf5format.to_file(str(path), packet_list=larpix_packets(per_call, seed=call))
    with h5py.File(path, "r") as f:
        return f["packets"][:]


def map_of(path: Path) -> ChunkMap | None:
    info = os.stat(path)
    with h5py.File(path, "r", locking=False) as f:
        return ChunkMap.of(f["packets"], PACKET_DTYPE, info.st_ino, info.st_size)


def read(chunk_map: ChunkMap, path: Path, start: int, stop: int) -> np.ndarray | None:
    out = np.zeros(stop - start, PACKET_DTYPE)
    fd = os.open(path, os.O_RDONLY)
    try:
        return out if chunk_map.read_into(fd, out, start, stop) else None
    finally:
        os.close(fd)


def test_any_rows_read_as_bytes_equal_hdf5s_read_across_runs_of_chunks(tmp_path):
    path = tmp_path / "run.h5"
    rows = written_in_calls(path, calls=40, per_call=1000)
    chunk_map = map_of(path)
    assert chunk_map is not None and (chunk_map.addresses >= 0).all()
    jumps = np.diff(chunk_map.addresses) != chunk_map.rows_per_chunk * PACKET_DTYPE.itemsize
    assert 0 < jumps.sum() < len(jumps)  # both kinds of neighbours are crossed below
    rng = np.random.default_rng(7)
    spans = [(0, len(rows)), (len(rows) - 1, len(rows))]
    spans += [tuple(sorted(rng.choice(len(rows) + 1, 2, replace=False))) for _ in range(200)]
    for start, stop in spans:
        got = read(chunk_map, path, int(start), int(stop))
        assert got is not None, (start, stop)
        np.testing.assert_array_equal(got, rows[start:stop])


def test_rows_across_runs_close_together_take_one_read(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    rows = written_in_calls(path, calls=40, per_call=1000)
    chunk_map = map_of(path)
    chunk_bytes = chunk_map.rows_per_chunk * PACKET_DTYPE.itemsize
    gaps = np.diff(chunk_map.addresses) - chunk_bytes
    assert (gaps > 0).sum() >= 2 and (gaps >= 0).all() and gaps.max() <= MAX_GAP
    reads, real_preadv = [], os.preadv

    def preadv(fd, buffers, offset):  # the real read, noted
        reads.append(offset)
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", preadv)
    got = read(chunk_map, path, 5, len(rows) - 5)
    np.testing.assert_array_equal(got, rows[5:-5])
    assert reads == [chunk_map.addresses[0] + 5 * PACKET_DTYPE.itemsize]


def test_chunks_stored_out_of_order_or_far_apart_are_read_run_by_run(tmp_path):
    rows = written_in_calls(tmp_path / "source.h5", calls=1, per_call=8000)
    path = tmp_path / "scattered.h5"
    # no chunk cache: each chunk is stored as it is written
    with h5py.File(path, "w", rdcc_nbytes=0) as f:  # last to first, big datasets between
        dset = f.create_dataset("packets", shape=rows.shape, dtype=PACKET_DTYPE, chunks=(313,),
                                maxshape=(None,))
        starts = list(range(0, len(rows), 313))
        for k, start in enumerate(reversed(starts)):
            dset[start:start + 313] = rows[start:start + 313]
            if k % 4 == 3:
                f.create_dataset(f"spacer{k}", data=np.ones(MAX_GAP + 1000, np.uint8))
    chunk_map = map_of(path)
    assert chunk_map is not None and (chunk_map.addresses >= 0).all()
    step = np.diff(chunk_map.addresses)
    assert (step < 0).all() and (-step > MAX_GAP).any()  # every run lies before the last
    rng = np.random.default_rng(11)
    spans = [(0, len(rows))]
    spans += [tuple(sorted(rng.choice(len(rows) + 1, 2, replace=False))) for _ in range(100)]
    for start, stop in spans:
        np.testing.assert_array_equal(read(chunk_map, path, int(start), int(stop)),
                                      rows[start:stop])
    in_order = tmp_path / "in_order.h5"
    with h5py.File(in_order, "w", rdcc_nbytes=0) as f:  # first to last, big datasets between
        dset = f.create_dataset("packets", shape=rows.shape, dtype=PACKET_DTYPE, chunks=(313,),
                                maxshape=(None,))
        for k, start in enumerate(starts):  # and a small one now and then
            dset[start:start + 313] = rows[start:start + 313]
            if k % 4 == 3:
                size = MAX_GAP + 1000 if k % 8 == 7 else 5000
                f.create_dataset(f"spacer{k}", data=np.ones(size, np.uint8))
    chunk_map = map_of(in_order)
    gaps = np.diff(chunk_map.addresses) - 313 * PACKET_DTYPE.itemsize
    assert (gaps > MAX_GAP).any() and ((gaps > 0) & (gaps <= MAX_GAP)).any()
    assert (gaps >= 0).all()
    for start, stop in spans:
        np.testing.assert_array_equal(read(chunk_map, in_order, int(start), int(stop)),
                                      rows[start:stop])


def test_only_plain_rows_of_our_type_are_mapped(tmp_path):
    rows = written_in_calls(tmp_path / "plain.h5", calls=1, per_call=500)
    gzip_packet_file(tmp_path / "gzip.h5", rows)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("big_endian", data=rows.astype(rows.dtype.newbyteorder(">")),
                         chunks=(313,), maxshape=(None,))
        f.create_dataset("contiguous", data=rows)
        f.create_dataset("fewer_fields", data=rows[["io_group", "chip_id"]], chunks=(313,))
    assert map_of(tmp_path / "plain.h5") is not None
    assert map_of(tmp_path / "gzip.h5") is None
    with h5py.File(tmp_path / "other.h5", "r") as f:
        for name in ("big_endian", "contiguous", "fewer_fields"):
            assert ChunkMap.of(f[name], PACKET_DTYPE, 1, 1) is None, name


def test_chunks_not_stored_are_left_to_hdf5(tmp_path):
    path = tmp_path / "holes.h5"
    rows = written_in_calls(path, calls=1, per_call=1000)
    with h5py.File(path, "a") as f:  # the extent grows by three chunks; only the last is written
        dset = f["packets"]
        chunk = dset.chunks[0]
        end = -(-len(rows) // chunk) * chunk
        dset.resize(end + 3 * chunk, axis=0)
        dset[end + 2 * chunk:] = rows[:chunk]
    chunk_map = map_of(path)
    assert chunk_map is not None
    assert read(chunk_map, path, end - 5, end + 1) is None  # needs a chunk never stored
    assert read(chunk_map, path, end + 2 * chunk, end + 3 * chunk) is not None
    with h5py.File(path, "r") as f:  # and the reader, through the map and HDF5, reads what it does
        expected = f["packets"][:]
    got = np.concatenate([c.packets for c in FileReader(path).read_new()])
    np.testing.assert_array_equal(got, expected)


def test_a_read_that_comes_short_is_left_to_hdf5(tmp_path):
    path = tmp_path / "run.h5"
    rows = written_in_calls(path, calls=1, per_call=3000)
    chunk_map = map_of(path)
    assert chunk_map is not None
    cut = tmp_path / "cut.h5"
    shutil.copy(path, cut)
    last = int(chunk_map.addresses.max())
    os.truncate(cut, last + 10)  # the last stored chunk now ends past the end of the file
    tail = int(np.argmax(chunk_map.addresses)) * chunk_map.rows_per_chunk
    assert read(chunk_map, cut, tail, min(len(rows), tail + 5)) is None
    np.testing.assert_array_equal(read(chunk_map, cut, 0, 5), rows[:5])


def test_rows_appended_after_the_map_was_made_are_left_to_hdf5(tmp_path):
    path = tmp_path / "run.h5"
    rows = written_in_calls(path, calls=1, per_call=1000)
    chunk_map = map_of(path)
    more = written_in_calls(tmp_path / "more.h5", calls=1, per_call=1000)
    append_rows(path, more)
    assert read(chunk_map, path, len(rows) - 3, len(rows) + 3) is None
    np.testing.assert_array_equal(read(chunk_map, path, 0, len(rows)), rows)


def test_a_map_fits_only_the_file_and_dataset_it_was_made_for(tmp_path):
    path = tmp_path / "run.h5"
    written_in_calls(path, calls=1, per_call=1000)
    with h5py.File(path, "a") as f:
        f.create_dataset("copy", data=f["packets"][:], chunks=(313,), maxshape=(None,))
    info = os.stat(path)
    with h5py.File(path, "r", locking=False) as f:
        chunk_map = ChunkMap.of(f["packets"], PACKET_DTYPE, info.st_ino, info.st_size)
        assert chunk_map.fits(f["packets"], info.st_ino, info.st_size)
        assert chunk_map.fits(f["packets"], info.st_ino, info.st_size + 1)  # grown
        assert not chunk_map.fits(f["packets"], info.st_ino, info.st_size - 1)  # rewritten
        assert not chunk_map.fits(f["packets"], info.st_ino + 1, info.st_size)  # replaced
        assert not chunk_map.fits(f["copy"], info.st_ino, info.st_size)  # another dataset
        other_chunks = replace(chunk_map, rows_per_chunk=chunk_map.rows_per_chunk + 1)
        assert not other_chunks.fits(f["packets"], info.st_ino, info.st_size)


def test_a_map_is_made_when_most_of_the_file_is_left_to_read(tmp_path):
    path = tmp_path / "run.h5"
    rows = written_in_calls(path, calls=1, per_call=4000)
    with h5py.File(path, "r") as f:
        dset = f["packets"]
        chunk = dset.chunks[0]
        stored = -(-len(rows) // chunk)
        assert worth_mapping(dset, 0, len(rows))
        assert not worth_mapping(dset, len(rows) - chunk, len(rows))
        share = int(np.ceil(WORTH_SHARE * stored)) * chunk  # that share of chunks, no fewer
        assert worth_mapping(dset, 0, share) and not worth_mapping(dset, 0, share - chunk)
    reader = FileReader(path, chunk_rows=1000)
    first, mapped = [], []
    for chunk in reader.read_new():
        first.append(chunk.packets)
        mapped.append(reader.chunk_map is not None)
    assert all(mapped) and reader.chunk_map is None  # read as bytes; dropped with the pass
    np.testing.assert_array_equal(np.concatenate(first), rows)
    append_rows(path, rows[:10])
    second, mapped = [], []
    for chunk in reader.read_new():
        second.append(chunk.packets)
        mapped.append(reader.chunk_map is not None)
    assert mapped == [False]  # ten new rows: HDF5 reads them
    np.testing.assert_array_equal(np.concatenate(second), rows[:10])


def test_a_file_rewritten_in_place_during_a_pass_is_read_afresh_not_through_the_old_map(
        tmp_path):
    path = tmp_path / "run.h5"
    written_in_calls(path, calls=40, per_call=1000)
    new = tmp_path / "new.h5"  # the same writes, with other data stored after the first
    hdf5format.to_file(str(new), packet_list=larpix_packets(1000, seed=0))
    with h5py.File(new, "a") as f:
        f.create_dataset("spacer", data=np.arange(2000))
    for call in range(1, 40):
        hdf5format.to_file(str(new), packet_list=larpix_packets(1000, seed=100 + call))
    with h5py.File(new, "r") as f:
        new_rows = f["packets"][:]
    old_map, new_map = map_of(path), map_of(new)
    assert old_map.rows_per_chunk == new_map.rows_per_chunk
    assert (old_map.addresses != new_map.addresses).any()
    assert os.stat(new).st_size > os.stat(path).st_size
    reader = FileReader(path, chunk_rows=1000, read_ahead=False)
    chunks = reader.read_new()
    next(chunks)
    assert reader.chunk_map is not None
    inode = os.stat(path).st_ino
    shutil.copyfile(new, path)  # truncated and rewritten: same inode, another file
    assert os.stat(path).st_ino == inode
    rest = np.concatenate([c.packets for c in chunks])
    assert reader.resets == 1
    np.testing.assert_array_equal(rest, new_rows)


def test_a_dataset_of_more_chunks_than_a_map_may_list_is_read_by_hdf5(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    rows = written_in_calls(path, calls=1, per_call=4000)
    with h5py.File(path, "r") as f:
        stored = -(-len(rows) // f["packets"].chunks[0])
        assert worth_mapping(f["packets"], 0, len(rows))
        monkeypatch.setattr("exporter.source.chunk_map.MAX_CHUNKS", stored - 1)
        assert not worth_mapping(f["packets"], 0, len(rows))
    reader = FileReader(path, chunk_rows=1000)
    got, mapped = [], []
    for chunk in reader.read_new():
        got.append(chunk.packets)
        mapped.append(reader.chunk_map is not None)
    assert not any(mapped)
    np.testing.assert_array_equal(np.concatenate(got), rows)
