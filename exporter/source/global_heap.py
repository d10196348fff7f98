"""Reading a raw file's messages from the bytes of HDF5's global heap.

A raw file's ``msgs`` are variable-length byte strings: the dataset holds, per
message, its length and where it lies in the file's global heap, and the bytes
lie in heap collections of ~64 kB, one after another. HDF5 reads them one
message at a time through its metadata cache, into a fresh buffer each
(40-60 ms for the benchmark file's 8,866 messages, a third of the whole raw
read, decoding included). Here a block's references are read from the
dataset's chunks, each collection they name is read whole with one
``os.preadv`` (which lets go of the GIL), and the messages are views of those
bytes. Whatever does not
parse as the format says (another filter, a collection or an object that is
not what its reference expects) gets None, and the caller asks HDF5 instead.
"""

from __future__ import annotations

import os
import zlib

import h5py
import numpy as np

#: A variable-length reference as stored: the length, then the heap ID (the collection's
#: address and the object's index). A file with 4-byte addresses does not match it.
REFERENCE = np.dtype([("length", "<u4"), ("collection", "<u8"), ("index", "<u4")])
#: A collection's header, then each object's (HDF5 file format, section III.E).
COLLECTION = np.dtype([("signature", "S4"), ("version", "u1"), ("reserved", "u1", (3,)),
                       ("size", "<u8")])
OBJECT = np.dtype([("index", "<u2"), ("references", "<u2"), ("reserved", "<u4"),
                   ("size", "<u8")])
#: Object indexes are 16-bit: a collection's objects are keyed ``collection * this + index``.
_INDEXES = 1 << 16
#: Collections read for a block hold at most 4 times its messages' bytes and this much
#: more: a block whose messages lie scattered through big collections is left to HDF5,
#: so memory stays bounded.
_MAX_SLACK_BYTES = 1 << 20


def read_messages(dset: h5py.Dataset, start: int, stop: int, fd: int, file_size: int
                  ) -> np.ndarray | None:
    """Messages ``start:stop`` of ``dset`` as uint8 arrays (an object array, as h5py
    gives), read through ``fd``; None when the file is not laid out as expected."""
    references = _references(dset, start, stop)
    if references is None:
        return None
    lengths = references["length"].astype(np.int64)
    used = lengths > 0
    collections, which = np.unique(references["collection"][used], return_inverse=True)
    heap = _Collections.read(fd, collections, file_size, int(lengths.sum()))
    if heap is None:
        return None
    offsets = np.zeros(len(references), np.int64)
    found = heap.find(which, references["index"][used], lengths[used])
    if found is None:
        return None
    offsets[used] = found
    data = heap.data
    return np.fromiter((data[a:a + n] for a, n in zip(offsets.tolist(), lengths.tolist(),
                                                      strict=True)),
                       dtype=object, count=len(references))


def _references(dset: h5py.Dataset, start: int, stop: int) -> np.ndarray | None:
    """The stored references of rows ``start:stop``, from the dataset's chunks as they lie in
    the file (gzip or no filter, 8-byte addresses and lengths; anything else, or a chunk
    not stored, gets None)."""
    deflated = _deflated(dset)
    sizes = dset.file.id.get_create_plist().get_sizes()  # of addresses and of lengths
    if dset.chunks is None or dset.ndim != 1 or deflated is None or sizes != (8, 8):
        return None
    step, parts = dset.chunks[0], []
    expected = step * REFERENCE.itemsize
    for low in range(start - start % step, stop, step):
        try:
            skipped, stored = dset.id.read_direct_chunk((low,))
            # one byte more than a chunk holds at most, however much damaged bytes inflate
            raw = (zlib.decompressobj().decompress(stored, expected + 1)
                   if deflated and not skipped & 1 else stored)
        except (OSError, RuntimeError, ValueError, zlib.error):
            return None
        if len(raw) != expected:
            return None
        parts.append(np.frombuffer(raw, REFERENCE)[max(start - low, 0):stop - low])
    return np.concatenate(parts) if parts else np.zeros(0, REFERENCE)


def _deflated(dset: h5py.Dataset) -> bool | None:
    """Whether the chunks are gzip-compressed; None when they pass through another filter."""
    plist = dset.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    return {(): False, (h5py.h5z.FILTER_DEFLATE,): True}.get(tuple(filters))


class _Collections:
    """Some heap collections, read whole into one buffer, and the objects they hold."""

    def __init__(self, data: np.ndarray, first: np.ndarray, sizes: np.ndarray) -> None:
        self.data, self.first, self.sizes = data, first, sizes

    @classmethod
    def read(cls, fd: int, addresses: np.ndarray, file_size: int,
             message_bytes: int) -> _Collections | None:
        """The collections at ``addresses``; None unless each header checks out and together
        they hold little more than the ``message_bytes`` wanted of them."""
        heads = np.zeros(len(addresses), COLLECTION)
        raw = heads.view(np.uint8).reshape(len(addresses), COLLECTION.itemsize)
        if len(addresses) and addresses.max() >= file_size:
            return None
        got = [os.preadv(fd, [row], at) for row, at in zip(raw, addresses.tolist(),
                                                            strict=True)]
        sizes = heads["size"].astype(np.int64)
        if ((heads["signature"] != b"GCOL").any() or (heads["version"] != 1).any()
                or (np.array(got) < COLLECTION.itemsize).any()
                or (sizes < COLLECTION.itemsize).any()
                or (addresses.astype(np.int64) + sizes > file_size).any()
                or sizes.sum() > 4 * message_bytes + _MAX_SLACK_BYTES):
            return None
        first = np.zeros(len(sizes), np.int64)
        np.cumsum(sizes[:-1], out=first[1:])
        data = np.empty(int(sizes.sum()), np.uint8)
        for begin, size, at in zip(first.tolist(), sizes.tolist(), addresses.tolist(),
                                   strict=True):
            if os.preadv(fd, [data[begin:begin + size]], at) != size:
                return None
        return cls(data, first, sizes)

    def find(self, collection: np.ndarray, index: np.ndarray, length: np.ndarray
             ) -> np.ndarray | None:
        """Where the data of each object (its collection's number, its index) starts in
        ``data``; None unless each is there once, ``length`` bytes long."""
        keys, starts, sizes = self._objects()
        order = np.argsort(keys)
        keys = keys[order]
        if (np.diff(keys) == 0).any():
            return None
        wanted = collection.astype(np.int64) * _INDEXES + index
        at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        if len(wanted) and not (len(keys) and (keys[at] == wanted).all()
                                and (sizes[order][at] == length).all()):
            return None
        return starts[order][at]

    def _objects(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every object of every collection: its key, where its data starts, its size.

        The collections are walked side by side, an object of each per step: an object
        is its 16-byte header, then its data padded to 8 bytes; index 0 is the free
        space that ends a collection."""
        ends = self.first + self.sizes
        position = self.first + COLLECTION.itemsize
        walking = np.arange(len(self.first))
        keys, starts, sizes = [], [], []
        header_bytes = np.arange(OBJECT.itemsize)
        while True:
            inside = position[walking] + OBJECT.itemsize <= ends[walking]
            walking = walking[inside]
            if not len(walking):
                break
            at = position[walking]
            header = self.data[at[:, None] + header_bytes].view(OBJECT)[:, 0]
            size = header["size"].astype(np.int64)
            data_start = at + OBJECT.itemsize
            real = ((header["index"] != 0) & (size >= 0)  # not 2**63 or more, as uint64
                    & (data_start + size <= ends[walking]))
            walking, data_start, size = walking[real], data_start[real], size[real]
            keys.append(walking * _INDEXES + header["index"][real])
            starts.append(data_start)
            sizes.append(size)
            position[walking] = data_start + ((size + 7) & ~7)
        if not keys:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(keys), np.concatenate(starts), np.concatenate(sizes)
