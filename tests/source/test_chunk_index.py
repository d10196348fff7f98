"""The stored chunks of a packet dataset, listed from the bytes of its chunk index.

The truth is HDF5's own listing of the same dataset (``chunk_iter``), for files written
by larpix-control's ``to_file`` and by h5py in the layouts HDF5 can make.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix.format import hdf5format
from support.damage import larpix_packets

from exporter.packets import PACKET_DTYPE
from exporter.source import chunk_index
from exporter.source.chunk_index import ENTRY, NODE, stored_chunk_addresses
from exporter.source.chunk_map import ChunkMap


def listed(path: Path, dataset: str = "packets") -> tuple[np.ndarray | None, np.ndarray]:
    """Our listing of a dataset's chunks, and HDF5's."""
    with h5py.File(path, "r", locking=False) as f:
        dset = f[dataset]
        rows_per_chunk = dset.chunks[0]
        by_hdf5 = np.full(-(-dset.shape[0] // rows_per_chunk), -1, np.int64)

        def note(info: h5py.h5d.StoreInfo) -> None:
            by_hdf5[info.chunk_offset[0] // rows_per_chunk] = info.byte_offset

        dset.id.chunk_iter(note)
    return ours_listed(path, dataset), by_hdf5


def ours_listed(path: Path, dataset: str = "packets") -> np.ndarray | None:
    with h5py.File(path, "r", locking=False) as f:
        dset = f[dataset]
        rows_per_chunk = dset.chunks[0]
        header = f.id.links.get_info(dset.name.encode()).u
        fd = f.id.get_vfd_handle()
        return stored_chunk_addresses(fd, header, rows_per_chunk, PACKET_DTYPE.itemsize,
                                      -(-dset.shape[0] // rows_per_chunk), os.fstat(fd).st_size)


def root_level(path: Path) -> int:
    """How many levels the chunk tree has below its root (read as HDF5's format lays out
    a version-1 B-tree: the root's address is the first one of the layout message)."""
    with h5py.File(path, "r") as f:
        header = f.id.links.get_info(b"/packets").u
    data = Path(path).read_bytes()
    layout = data.index(bytes([3, 2, 2]), header)  # layout message: version 3, chunked, 2-D
    root = int.from_bytes(data[layout + 3:layout + 11], "little")
    assert data[root:root + 4] == b"TREE"
    return data[root + 5]


@pytest.mark.parametrize(("calls", "per_call"), [
    (1, 1),                 # one chunk, partly filled
    (1, 313 * 64),          # one full leaf
    (1, 313 * 64 + 1),      # two leaves under a root
    (40, 1000),             # appended call by call, as a DAQ writes
])
def test_listing_equals_hdf5s_for_files_larpix_control_wrote(tmp_path, calls, per_call):
    path = tmp_path / "run.h5"
    for call in range(calls):
        hdf5format.to_file(str(path), packet_list=larpix_packets(per_call, seed=call))
    ours, by_hdf5 = listed(path)
    assert ours is not None
    assert (by_hdf5 >= 0).all()
    np.testing.assert_array_equal(ours, by_hdf5)


@pytest.mark.parametrize("batch", [1024, 7, 1])
def test_a_tree_of_three_levels_and_chunks_stored_out_of_order(tmp_path, monkeypatch, batch):
    """Also with each level's nodes read in small batches (a big file's leaves are)."""
    monkeypatch.setattr(chunk_index, "_BATCH_NODES", batch)
    path = tmp_path / "deep.h5"
    rows = np.zeros(6000, PACKET_DTYPE)
    rows["timestamp"] = np.arange(len(rows))
    with h5py.File(path, "w", rdcc_nbytes=0) as f:  # no chunk cache: stored as written
        dset = f.create_dataset("packets", shape=rows.shape, dtype=PACKET_DTYPE, chunks=(1,),
                                maxshape=(None,))
        for start in range(0, len(rows), 500)[::-1]:  # the last rows first
            dset[start:start + 500] = rows[start:start + 500]
    assert root_level(path) == 2  # 6,000 chunks: more than a root over full leaves holds
    ours, by_hdf5 = listed(path)
    assert ours is not None and (by_hdf5 >= 0).all()
    np.testing.assert_array_equal(ours, by_hdf5)


def test_chunks_never_stored_are_listed_as_not_stored(tmp_path):
    path = tmp_path / "holes.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("packets", shape=(3000,), dtype=PACKET_DTYPE, chunks=(313,),
                         maxshape=(None,))
        f.create_dataset("empty", shape=(3000,), dtype=PACKET_DTYPE, chunks=(313,),
                         maxshape=(None,))
        f["packets"][313 * 4:313 * 6] = np.ones(2 * 313, PACKET_DTYPE)
    ours, by_hdf5 = listed(path)
    assert ours is not None
    assert (by_hdf5 >= 0).sum() == 2
    np.testing.assert_array_equal(ours, by_hdf5)
    ours, by_hdf5 = listed(path, "empty")
    np.testing.assert_array_equal(ours, by_hdf5)
    assert ours is not None and (ours == -1).all()


def test_other_chunk_indexes_are_left_to_hdf5(tmp_path):
    """HDF5's newer formats index chunks otherwise (extensible arrays, version-2 B-trees):
    not listed here, and the map still lists them through HDF5."""
    rows = np.zeros(5000, PACKET_DTYPE)
    rows["timestamp"] = np.arange(len(rows))
    path = tmp_path / "latest.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("packets", data=rows, chunks=(313,), maxshape=(None,))
        f.create_dataset("fixed", data=rows, chunks=(313,))
    for dataset in ("packets", "fixed"):
        ours, by_hdf5 = listed(path, dataset)
        assert ours is None, dataset
        info = os.stat(path)
        with h5py.File(path, "r") as f:
            chunk_map = ChunkMap.of(f[dataset], PACKET_DTYPE, info.st_ino, info.st_size)
        assert chunk_map is not None and (by_hdf5 >= 0).all()
        np.testing.assert_array_equal(chunk_map.addresses, by_hdf5)


def damaged_copy(source: Path, target: Path, field: str) -> None:
    """A copy with one field of the first leaf of the chunk tree overwritten."""
    shutil.copy(source, target)
    data = bytearray(target.read_bytes())
    node = data.index(b"TREE\x01\x00")  # the first leaf (level 0) in the file
    if field == "signature":
        data[node:node + 4] = b"XXXX"
    else:  # the first entry's key
        at = node + NODE.fields["entry"][1] + ENTRY.fields[field][1]
        data[at:at + 4] = (12345).to_bytes(4, "little")
    target.write_bytes(bytes(data))


@pytest.mark.parametrize("field", ["signature", "chunk_bytes", "filters"])
def test_a_damaged_index_is_not_listed(tmp_path, field):
    path = tmp_path / "run.h5"
    hdf5format.to_file(str(path), packet_list=larpix_packets(313 * 100, seed=3))
    damaged = tmp_path / "damaged.h5"
    damaged_copy(path, damaged, field)
    assert listed(path)[0] is not None
    with h5py.File(damaged, "r", locking=False) as f:
        dset = f["packets"]
        header = f.id.links.get_info(b"/packets").u
        ours = stored_chunk_addresses(f.id.get_vfd_handle(), header, dset.chunks[0],
                                      PACKET_DTYPE.itemsize, 100, os.path.getsize(damaged))
    assert ours is None


#: larpix-control's to_file appending batch after batch, as a DAQ's packet logger does.
APPENDING_WRITER = r"""
import sys
from larpix import Packet_v2, TimestampPacket
from larpix.format import hdf5format

path, batches = sys.argv[1], int(sys.argv[2])
for i in range(batches):
    packets = [TimestampPacket(timestamp=1_700_000_000 + i)]
    packets += [Packet_v2(bytes([i % 256, 0, j % 256, 0, 0, 0, 0, 0])) for j in range(2000)]
    hdf5format.to_file(path, packet_list=packets)
"""


def test_listings_made_while_larpix_control_appends_never_give_a_wrong_address(tmp_path):
    """A listing made mid-append may miss the newest chunks or not parse (None); every
    address it gives is where the chunk lies once the writer is done (HDF5 never moves
    a stored chunk)."""
    path = tmp_path / "live.h5"
    hdf5format.to_file(str(path), packet_list=larpix_packets(313 * 3, seed=1))
    writer = subprocess.Popen([sys.executable, "-c", APPENDING_WRITER, str(path), "150"])
    seen: dict[int, set[int]] = {}
    listings = 0
    try:
        while writer.poll() is None:
            try:
                ours = ours_listed(path)
            except (OSError, KeyError):  # caught mid-write: HDF5 cannot open it
                continue
            if ours is None:
                continue
            listings += 1
            for chunk in np.flatnonzero(ours >= 0).tolist():
                seen.setdefault(chunk, set()).add(int(ours[chunk]))
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    final, by_hdf5 = listed(path)
    np.testing.assert_array_equal(final, by_hdf5)
    assert listings >= 20 and len(seen) > 100
    wrong = {c: a for c, a in seen.items() if a != {int(by_hdf5[c])}}
    assert wrong == {}
