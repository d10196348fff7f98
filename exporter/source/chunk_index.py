"""Listing a packet dataset's stored chunks from the bytes of its chunk index.

HDF5 lists stored chunks one Python callback at a time (``chunk_iter``: 38 ms,
with the GIL held, for the 32,000 chunks of 10 M packets, all of it before the
first row can be read). A file in HDF5's earliest format, as larpix-control
writes it, keeps that list in a version-1 B-tree whose nodes hold up to 64
entries, each a chunk's first row and its address: read node by node and
parsed with numpy, the list takes a few ms. Whatever is not that format, or
does not parse as a tree of whole unfiltered chunks, gets None, and the caller
asks HDF5 instead.
"""

from __future__ import annotations

import os

import numpy as np

#: The layout message's type in an object header (HDF5 file format, section IV.A.2.i).
_LAYOUT = 0x0008
_UNDEFINED_ADDRESS = (1 << 64) - 1
#: Deepest tree followed (64**16 chunks: far more than any file holds).
_MAX_LEVELS = 16

#: A key and the child after it, in a B-tree node of a 1-D dataset's chunks.
ENTRY = np.dtype([("chunk_bytes", "<u4"), ("filters", "<u4"), ("row", "<u8"),
                  ("byte", "<u8"), ("child", "<u8")])
#: 2K entries with HDF5's default K of 32 for chunk indexes (a file with a larger K
#: gets None); the last key is never read.
_NODE_ENTRIES = 64
NODE = np.dtype([("signature", "S4"), ("type", "u1"), ("level", "u1"), ("entries", "<u2"),
                 ("left", "<u8"), ("right", "<u8"),
                 ("entry", ENTRY, (_NODE_ENTRIES,)), ("last_key", "u1", (24,))])
_HEAD_BYTES = NODE.fields["entry"][1]
#: Nodes read at a time (2 MB): a level of a big file's tree is read in batches, so that
#: memory stays at the map's own 8 bytes a chunk.
_BATCH_NODES = 1024


def stored_chunk_addresses(fd: int, header_address: int, rows_per_chunk: int,
                           row_bytes: int, chunks: int, file_size: int) -> np.ndarray | None:
    """Where each of ``chunks`` chunks of rows starts in the file (-1: not stored), read
    from the chunk index of the 1-D dataset whose object header is at ``header_address``;
    None when that is not a version-1 B-tree of whole unfiltered chunks of the given
    shape. The file's addresses must be 8-byte offsets from its start."""
    root = _chunk_tree(fd, header_address, rows_per_chunk, row_bytes)
    if root is None:
        return None
    addresses = np.full(chunks, -1, np.int64)
    if root == _UNDEFINED_ADDRESS:  # nothing stored yet
        return addresses
    chunk = _Chunks(rows_per_chunk, rows_per_chunk * row_bytes, file_size)
    nodes, expected = np.array([root], np.uint64), None
    for _ in range(_MAX_LEVELS):  # a level at a time, from the root down
        children, listed, level = [], 0, expected
        for first in range(0, len(nodes), _BATCH_NODES):
            entries, level = _entries(fd, nodes[first:first + _BATCH_NODES], level, file_size)
            if entries is None:
                return None
            if level > 0:
                children.append(entries["child"])
            elif not chunk.note(entries, addresses):
                return None
            listed += len(entries)
        if level == 0:  # every chunk listed once
            return addresses if np.count_nonzero(addresses >= 0) == listed else None
        nodes, expected = np.concatenate(children), level - 1
        if len(nodes) > chunks:
            return None
    return None


class _Chunks:
    """What a leaf entry must say of its chunk."""

    def __init__(self, rows: int, nbytes: int, file_size: int) -> None:
        self.rows, self.nbytes, self.file_size = rows, nbytes, file_size

    def note(self, entries: np.ndarray, addresses: np.ndarray) -> bool:
        """Put leaf entries in ``addresses``; False unless each is a whole unfiltered chunk,
        on a chunk boundary, inside the dataset and the file."""
        index = entries["row"] // self.rows
        if not ((entries["chunk_bytes"] == self.nbytes).all() and (entries["filters"] == 0).all()
                and (entries["byte"] == 0).all() and (entries["row"] % self.rows == 0).all()
                and (index < len(addresses)).all()
                and (entries["child"] <= self.file_size - self.nbytes).all()):
            return False
        addresses[index] = entries["child"]
        return True


def _chunk_tree(fd: int, header_address: int, rows_per_chunk: int,
                row_bytes: int) -> int | None:
    """The address of the dataset's chunk B-tree, from its layout message (version 3,
    chunked, two dimensions: rows and the row's bytes)."""
    layout = _layout_message(fd, header_address)
    if layout is None or len(layout) < 19 or tuple(layout[:3]) != (3, 2, 2):
        return None
    if tuple(np.frombuffer(layout, "<u4", 2, 11)) != (rows_per_chunk, row_bytes):
        return None
    return int.from_bytes(layout[3:11], "little")


def _layout_message(fd: int, header_address: int) -> bytes | None:
    """The data of the layout message in the first block of a version-1 object header
    (where HDF5 writes it when it makes the dataset; elsewhere, HDF5 lists the chunks)."""
    prefix = os.pread(fd, 16, header_address)
    if len(prefix) < 16 or prefix[0] != 1:
        return None
    messages = int.from_bytes(prefix[2:4], "little")
    block = os.pread(fd, int.from_bytes(prefix[8:12], "little"), header_address + 16)
    position = 0
    for _ in range(messages):
        if position + 8 > len(block):
            return None
        kind = int.from_bytes(block[position:position + 2], "little")
        size = int.from_bytes(block[position + 2:position + 4], "little")
        data = block[position + 8:position + 8 + size]
        if kind == _LAYOUT:
            shared = block[position + 4] & 2
            return None if shared or len(data) < size else data
        position += 8 + size
    return None


def _entries(fd: int, nodes: np.ndarray, level: int | None, file_size: int
             ) -> tuple[np.ndarray | None, int]:
    """The entries of some nodes of one level and that level (``level``: the one expected,
    None for the root): None unless each node's signature, type, level and entry count
    check out."""
    if nodes.max() >= file_size:
        return None, -1
    read = np.zeros(len(nodes), NODE)
    raw = read.view(np.uint8).reshape(len(nodes), NODE.itemsize)
    got = np.array([os.preadv(fd, [row], at) for row, at in zip(raw, nodes.tolist(),
                                                               strict=True)])
    found = int(read["level"][0])
    used = read["entries"].astype(np.int64)
    if ((read["signature"] != b"TREE").any() or (read["type"] != 1).any()
            or (read["level"] != found).any() or (level is not None and found != level)
            or (used < 1).any() or (used > _NODE_ENTRIES).any()
            or (got < _HEAD_BYTES + used * ENTRY.itemsize).any()):
        return None, -1
    return read["entry"][np.arange(_NODE_ENTRIES) < used[:, None]], found
