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
    leaves = _leaf_entries(fd, root, chunks, file_size)
    if leaves is None:
        return None
    chunk_bytes = rows_per_chunk * row_bytes
    index = leaves["row"] // rows_per_chunk
    if not ((leaves["chunk_bytes"] == chunk_bytes).all() and (leaves["filters"] == 0).all()
            and (leaves["byte"] == 0).all() and (leaves["row"] % rows_per_chunk == 0).all()
            and (index < chunks).all() and (leaves["child"] <= file_size - chunk_bytes).all()):
        return None
    addresses[index] = leaves["child"]
    if np.count_nonzero(addresses >= 0) != len(leaves):  # a chunk listed twice
        return None
    return addresses


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


def _leaf_entries(fd: int, root: int, chunks: int, file_size: int) -> np.ndarray | None:
    """Every entry of the tree's leaves (level 0), read a level at a time: each node's
    signature, type, level and entry count checked before its children are followed."""
    nodes = [root]
    level_above = None
    for _ in range(_MAX_LEVELS):
        if len(nodes) > chunks or max(nodes) >= file_size:
            return None
        level = np.zeros(len(nodes), NODE)
        raw = level.view(np.uint8).reshape(len(nodes), NODE.itemsize)
        got = np.array([os.preadv(fd, [row], at) for row, at in zip(raw, nodes, strict=True)])
        entries = level["entries"].astype(np.int64)
        if ((level["signature"] != b"TREE").any() or (level["type"] != 1).any()
                or (level["level"] != level["level"][0]).any()
                or (level_above is not None and level["level"][0] != level_above - 1)
                or (entries < 1).any() or (entries > _NODE_ENTRIES).any()
                or (got < _HEAD_BYTES + entries * ENTRY.itemsize).any()):
            return None
        used = level["entry"][np.arange(_NODE_ENTRIES) < entries[:, None]]
        if level["level"][0] == 0:
            return used
        level_above = int(level["level"][0])
        nodes = used["child"].tolist()
    return None
