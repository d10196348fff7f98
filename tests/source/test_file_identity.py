"""A file is known by its inode and the ``created`` time in its LArPix header: one rewritten
in place (same inode, not smaller) or a new file on a reused inode is read again from row
0 and counted as a reset, never resumed mid-file. Files are written by larpix-control."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import h5py
import numpy as np
from support.damage import larpix_packets, packet_file
from support.damage import raw_file as larpix_raw_file
from support.larpix import convert_messages

from exporter.packets import PACKET_DTYPE
from exporter.source.checkpoint import CHECKPOINT_VERSION, CheckpointStore
from exporter.source.reader import Cursor, FileReader


def drain(reader: FileReader) -> np.ndarray:
    chunks = list(reader.read_new())
    return np.concatenate([c.packets for c in chunks]) if chunks else np.zeros(0, PACKET_DTYPE)


def created_of(path, group: str = "_header") -> float:
    with h5py.File(path, "r") as f:
        return float(f[group].attrs["created"])


def test_packet_file_rewritten_in_place_larger_is_read_again(tmp_path):
    path = tmp_path / "run.h5"
    old = packet_file(path, larpix_packets(300, seed=1))
    reader = FileReader(path)
    np.testing.assert_array_equal(drain(reader), old)
    assert reader.cursor.created == created_of(path)
    inode = path.stat().st_ino
    new = packet_file(path, larpix_packets(2000, seed=2))  # truncated, rewritten: same inode
    assert path.stat().st_ino == inode and len(new) > len(old)
    np.testing.assert_array_equal(drain(reader), new)
    assert reader.resets == 1 and reader.cursor.rows == 2000
    assert reader.cursor.created == created_of(path)
    assert len(drain(reader)) == 0 and reader.resets == 1


def test_packet_file_rewritten_with_as_many_rows_is_read_again(tmp_path):
    path = tmp_path / "run.h5"
    packet_file(path, larpix_packets(500, seed=3))
    reader = FileReader(path)
    drain(reader)
    new = packet_file(path, larpix_packets(500, seed=4))
    np.testing.assert_array_equal(drain(reader), new)
    assert reader.resets == 1


def test_raw_file_rewritten_in_place_is_read_again(tmp_path):
    path = tmp_path / "raw.h5"
    larpix_raw_file(path, 50, seed=5)
    reader = FileReader(path)
    drain(reader)
    inode = path.stat().st_ino
    with open(path, "r+b") as f:  # truncated in place; to_rawfile then writes a new file
        f.truncate(0)
    msgs, groups = larpix_raw_file(path, 80, seed=6)
    assert path.stat().st_ino == inode
    np.testing.assert_array_equal(drain(reader), convert_messages(msgs, groups, tmp_path)[0])
    assert reader.resets == 1 and reader.cursor.created == created_of(path, "meta")


def test_new_file_on_a_reused_inode_is_read_from_the_start(tmp_path):
    """The file is deleted and a new one made at once: it gets the old inode (ext4 and
    tmpfs hand a freed inode out again); where not, the saved cursor is given the new
    file's inode, which is what a restart after such a reuse sees."""
    path = tmp_path / "run.h5"
    packet_file(path, larpix_packets(400, seed=7))
    first = FileReader(path)
    drain(first)
    path.unlink()
    new = packet_file(path, larpix_packets(900, seed=8))
    saved = replace(first.cursor, inode=path.stat().st_ino)
    reader = FileReader(path, cursor=saved)
    np.testing.assert_array_equal(drain(reader), new)
    assert reader.resets == 1 and reader.cursor.rows == 900


def test_cursor_identity_survives_the_checkpoint(tmp_path):
    path = tmp_path / "run.h5"
    rows = packet_file(path, larpix_packets(600, seed=9))
    with h5py.File(path, "a") as f:  # as if only 250 rows had been written yet
        f["packets"].resize((250,))
    first = FileReader(path)
    drain(first)
    store = CheckpointStore(tmp_path / "checkpoint.npz")
    store.save([first.cursor], {})
    loaded = store.load().cursors[str(path)]
    assert loaded == first.cursor and loaded.created == created_of(path)
    with h5py.File(path, "a") as f:
        f["packets"].resize((600,))
        f["packets"][250:] = rows[250:]
    resumed = FileReader(path, cursor=loaded)
    np.testing.assert_array_equal(drain(resumed), rows[250:])
    assert resumed.resets == 0


def test_checkpoint_from_before_file_identity_resumes(tmp_path):
    """A cursor saved without ``created`` resumes by the inode-and-size rule and takes the
    file's identity from its next read."""
    path = tmp_path / "run.h5"
    rows = packet_file(path, larpix_packets(300, seed=10))
    info = path.stat()
    entry = {"path": str(path), "inode": info.st_ino, "size": info.st_size, "rows": 120,
             "format": "packet"}
    old = tmp_path / "old.npz"
    np.savez(old, version=np.array([CHECKPOINT_VERSION]),
             cursors=np.frombuffer(json.dumps([entry]).encode(), np.uint8))
    cursor = CheckpointStore(old).load().cursors[str(path)]
    assert cursor == Cursor(str(path), info.st_ino, info.st_size, 120, "packet", None)
    reader = FileReader(path, cursor=cursor)
    np.testing.assert_array_equal(drain(reader), rows[120:])
    assert reader.resets == 0 and reader.cursor.created == created_of(path)


def test_file_without_created_time_keeps_the_inode_and_size_rule(tmp_path):
    path = tmp_path / "run.h5"
    rows = packet_file(path, larpix_packets(200, seed=11))
    with h5py.File(path, "a") as f:
        del f["_header"].attrs["created"]
        f["packets"].resize((80,))
    reader = FileReader(path)
    np.testing.assert_array_equal(drain(reader), rows[:80])
    assert reader.cursor.created is None
    with h5py.File(path, "a") as f:
        f["packets"].resize((200,))
        f["packets"][80:] = rows[80:]
    np.testing.assert_array_equal(drain(reader), rows[80:])
    assert reader.resets == 0
    os.truncate(path, 0)
    packet_file(path, larpix_packets(10, seed=12))  # smaller again: the size rule resets
    drain(reader)
    assert reader.resets == 1
