"""Reading runs of an uncompressed packet dataset's stored chunks as plain bytes.

HDF5 reads larpix-control's 313-row chunks one at a time, at a fixed cost per chunk
that is most of a packet file's read time, and holds the GIL while it does. An
uncompressed chunk holds its rows byte for byte as they lie in memory once the
stored type equals ours, HDF5 never moves such a chunk once written, and a
writer lays most chunks back to back, in runs a few kB apart (where HDF5 stored
something else). The rows of a read are taken with one ``os.preadv``, which
lets go of the GIL: the bytes between two runs go to a scratch buffer that is
never read. Whatever the map cannot vouch for (a chunk it does not list, a read
that comes short) is left to HDF5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from exporter.source.chunk_index import stored_chunk_addresses

#: Listing a stored chunk through HDF5 costs about a quarter of what reading it as bytes
#: saves (1 against 4.4 us, 10 M packets in 313-row chunks; from the chunk index's bytes,
#: ``chunk_index``, 0.13 us): a map pays for itself, whichever lists it, when the rows to
#: read span at least this share of the dataset's chunks.
WORTH_SHARE = 0.25

#: Most bytes between two runs of chunks read and dropped rather than skipped by another
#: read (larpix-control's files have 13-21 kB: the chunk index's nodes).
MAX_GAP = 1 << 18
#: Where those bytes go; only ever written, so readers on any thread may share it.
_GAP = memoryview(bytearray(MAX_GAP))
#: Most buffers one ``os.preadv`` takes (Linux's ``IOV_MAX``).
_MAX_BUFFERS = 1024

#: Most chunks a map lists (8 bytes each: 16 MB, a 24 GB file of 313-row chunks), so
#: that its memory stays bounded whatever the file; a bigger dataset is read by HDF5.
MAX_CHUNKS = 1 << 21


@dataclass(frozen=True)
class ChunkMap:
    """Where each listed chunk of one dataset starts in its file (-1: not listed)."""

    rows_per_chunk: int
    row_bytes: int
    addresses: np.ndarray
    #: The file and dataset it was made for: the file's inode, the dataset's object
    #: address and the file's size then (a file that shrank was rewritten).
    inode: int
    dataset_address: int
    file_size: int

    @classmethod
    def of(cls, dset: h5py.Dataset, dtype: np.dtype, inode: int,
           file_size: int) -> ChunkMap | None:
        """The map of ``dset``, or None when its chunks are not plain rows of ``dtype``
        in a file whose addresses are byte offsets."""
        if not _plain_rows(dset, dtype):
            return None
        rows_per_chunk = dset.chunks[0]
        chunks = -(-dset.shape[0] // rows_per_chunk)
        header_address = _object_address(dset)
        addresses = None
        if dset.file.id.get_create_plist().get_sizes() == (8, 8):
            addresses = stored_chunk_addresses(dset.file.id.get_vfd_handle(), header_address,
                                               rows_per_chunk, dtype.itemsize, chunks,
                                               file_size)
        if addresses is None:
            addresses = _listed_by_hdf5(dset, rows_per_chunk, chunks)
        if addresses is None:
            return None
        return cls(rows_per_chunk, dtype.itemsize, addresses, inode, header_address, file_size)

    def fits(self, dset: h5py.Dataset, inode: int, file_size: int) -> bool:
        """Whether the map still describes ``dset`` in the file as now opened."""
        return (inode == self.inode and file_size >= self.file_size
                and dset.chunks is not None and dset.chunks[0] == self.rows_per_chunk
                and _object_address(dset) == self.dataset_address)

    def read_into(self, fd: int, out: np.ndarray, start: int, stop: int) -> bool:
        """Rows ``start:stop`` into ``out``, in one read where the runs of back-to-back
        chunks lie in order and close together; False (``out`` then holds nothing to use)
        if a chunk is not listed or a read came short."""
        first, last = start // self.rows_per_chunk, (stop - 1) // self.rows_per_chunk + 1
        addresses = self.addresses[first:last]
        if last > len(self.addresses) or (addresses < 0).any():
            return False
        # each run of back-to-back chunks: its first chunk, the rows wanted from it, where
        # they lie in the file, and the bytes from the end of the run to the next one
        jumps = np.diff(addresses) != self.rows_per_chunk * self.row_bytes
        run = np.concatenate(([0], np.flatnonzero(jumps) + 1))
        run_row = (first + run) * self.rows_per_chunk
        low = np.maximum(run_row, start)
        high = np.append(run_row[1:], stop)
        where = addresses[run] + (low - run_row) * self.row_bytes
        size = (high - low) * self.row_bytes
        gap = np.append(where[1:] - where[:-1] - size[:-1], -1)  # -1: no run follows
        view = memoryview(out.view(np.uint8))
        buffers: list[memoryview] = []
        at = wanted = 0
        for offset, n, skip in zip(where.tolist(), size.tolist(), gap.tolist(), strict=True):
            if not buffers:
                read_at = offset
            buffers.append(view[at:at + n])
            at += n
            wanted += n
            if 0 <= skip <= MAX_GAP and len(buffers) < _MAX_BUFFERS - 1:
                if skip:
                    buffers.append(_GAP[:skip])
                    wanted += skip
                continue
            if os.preadv(fd, buffers, read_at) != wanted:
                return False
            buffers, wanted = [], 0
        return True


def _listed_by_hdf5(dset: h5py.Dataset, rows_per_chunk: int, chunks: int) -> np.ndarray | None:
    """Where HDF5 says each chunk starts (-1: not stored); None if its index is damaged."""
    addresses = np.full(chunks, -1, np.int64)

    def note(info: h5py.h5d.StoreInfo) -> None:  # unfiltered: every chunk stored whole
        addresses[info.chunk_offset[0] // rows_per_chunk] = info.byte_offset

    try:
        dset.id.chunk_iter(note)
    except (OSError, RuntimeError, ValueError, IndexError):
        return None
    return addresses


def worth_mapping(dset: h5py.Dataset, start: int, end: int) -> bool:
    """Whether rows ``start:end`` span enough of ``dset``'s chunks to pay for a map, and the
    map would not be too big."""
    if not dset.chunks or end <= start:
        return False
    stored = -(-dset.shape[0] // dset.chunks[0])
    return stored <= MAX_CHUNKS and (end - start) / dset.chunks[0] >= WORTH_SHARE * stored


def _plain_rows(dset: h5py.Dataset, dtype: np.dtype) -> bool:
    """A 1-D chunked dataset, unfiltered, stored as exactly ``dtype``, in a file read
    through the POSIX driver with no user block (chunk addresses are then file offsets)."""
    create = dset.id.get_create_plist()
    return (dset.ndim == 1 and dset.chunks is not None
            and create.get_layout() == h5py.h5d.CHUNKED and create.get_nfilters() == 0
            and create.get_external_count() == 0
            and hasattr(dset.id, "chunk_iter") and dset.file.driver == "sec2"
            and dset.file.id.get_create_plist().get_userblock() == 0
            and dset.id.get_type() == h5py.h5t.py_create(dtype))


def _object_address(dset: h5py.Dataset) -> int:
    """Where the dataset's header lies: a dataset made anew has another (its link's, as
    ``h5o.get_info`` costs milliseconds)."""
    return dset.file.id.links.get_info(dset.name.encode()).u
