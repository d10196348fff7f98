"""CheckpointStore: atomic saves of cursors with counts, safe loads, and cursors that really
resume a larpix-control file."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix import Packet_v2
from larpix.format import hdf5format
from support.larpix import random_packet

from exporter.source.checkpoint import CHECKPOINT_FILE_NAME, CheckpointStore
from exporter.source.reader import Cursor, FileReader


def larpix_packets(n: int, seed: int) -> list[Packet_v2]:
    rng = np.random.default_rng(seed)
    return [random_packet(rng) for _ in range(n)]


def test_round_trip_under_the_plot_dir(tmp_path: Path) -> None:
    store = CheckpointStore.in_plot_dir(tmp_path)
    cursors = [Cursor("/data/b.h5", 12, 3456, 78, "raw"), Cursor("/data/a.h5", 9, 100, 5, "packet"),
               Cursor("/data/new.h5", 3, 10, 0, None)]
    counts = {"detector.chips.keys": np.arange(5, dtype=np.int64),
              "health.rows.keys": np.array(["packet", "raw"])}
    store.save(cursors, counts)
    assert store.path == tmp_path / CHECKPOINT_FILE_NAME
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE_NAME]  # no temp left
    loaded = CheckpointStore.in_plot_dir(tmp_path).load()
    assert loaded.cursors == {c.path: c for c in cursors}
    assert loaded.metrics.keys() == counts.keys()
    for key, array in counts.items():
        np.testing.assert_array_equal(loaded.metrics[key], array)
    assert store.last_size == store.path.stat().st_size


def test_every_save_replaces_the_file(tmp_path: Path) -> None:
    store = CheckpointStore.in_plot_dir(tmp_path)
    store.save([Cursor("/d/a.h5", 1, 2, 3, "packet")], {})
    inode = store.path.stat().st_ino
    store.save([Cursor("/d/a.h5", 1, 2, 4, "packet")], {})
    assert store.path.stat().st_ino != inode  # replaced, never rewritten in place


def test_concurrent_loads_never_see_a_partial_file(tmp_path: Path) -> None:
    writer = CheckpointStore.in_plot_dir(tmp_path)
    writer.save([Cursor(f"/d/{i}.h5", i, 0, 0, "packet") for i in range(200)], {})
    seen: list[int] = []
    done = threading.Event()

    def load_repeatedly() -> None:
        while not done.is_set():
            seen.append(len(CheckpointStore.in_plot_dir(tmp_path).load().cursors))

    thread = threading.Thread(target=load_repeatedly)
    thread.start()
    for rows in range(1, 150):
        writer.save([Cursor(f"/d/{i}.h5", i, 0, rows, "packet") for i in range(200)],
                    {"counts": np.full(1000, rows)})
    done.set()
    thread.join()
    assert seen and set(seen) == {200}


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _cursors(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), np.uint8)


@pytest.mark.parametrize("content", [
    b"{not an npz", b"PK\x03\x04 truncated zip",
    _npz(version=np.array([99]), cursors=_cursors("[]")),
    _npz(version=np.array([2]), cursors=_cursors("{not json")),
    _npz(version=np.array([2]), cursors=_cursors('[{"path": "/x"}]')),
    _npz(version=np.array([2]), cursors=_cursors(
        '[{"path": "/x", "inode": 1, "size": 1, "rows": -5, "format": "packet"}]')),
    _npz(version=np.array([2])),
    _npz(cursors=_cursors("[]")),
])
def test_unusable_checkpoint_is_reported_in_one_line_and_ignored(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / CHECKPOINT_FILE_NAME).write_bytes(content)
    loaded = CheckpointStore.in_plot_dir(tmp_path).load()
    assert loaded.cursors == {} and loaded.metrics == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(tmp_path / CHECKPOINT_FILE_NAME) in warnings[0]
    assert "counting from zero" in warnings[0] and "\n" not in warnings[0]


def test_missing_checkpoint_is_empty(tmp_path: Path) -> None:
    loaded = CheckpointStore.in_plot_dir(tmp_path / "nowhere").load()
    assert loaded.cursors == {} and loaded.metrics == {}


def test_saved_cursor_resumes_exactly_after_the_consumed_rows(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    first, second = larpix_packets(40, seed=1), larpix_packets(25, seed=2)
    hdf5format.to_file(str(path), first)
    reader = FileReader(str(path))
    assert sum(chunk.rows for chunk in reader.read_new()) == 40
    CheckpointStore.in_plot_dir(tmp_path / "plots").save([reader.cursor], {})

    hdf5format.to_file(str(path), second)
    saved = CheckpointStore.in_plot_dir(tmp_path / "plots").load().cursors[str(path)]
    assert saved.rows == 40 and saved.format == "packet"
    chunks = list(FileReader(str(path), saved).read_new())
    new = np.concatenate([c.packets for c in chunks])
    with h5py.File(path, "r", locking=False) as f:
        expected = f["packets"][40:]
    assert len(expected) == 25
    for name in ("io_group", "io_channel", "chip_id", "channel_id", "timestamp", "dataword"):
        np.testing.assert_array_equal(new[name], expected[name])
    np.testing.assert_array_equal(new["dataword"], [p.dataword for p in second])
