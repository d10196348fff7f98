"""StateStore: atomic saves, safe loads, and cursors that really resume a larpix-control file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix import Packet_v2
from larpix.format import hdf5format

from exporter.source.reader import Cursor, FileReader
from exporter.source.state import STATE_FILE_NAME, StateStore


def larpix_packets(n: int, seed: int) -> list[Packet_v2]:
    rng = np.random.default_rng(seed)
    packets = []
    for _ in range(n):
        p = Packet_v2()
        p.io_group = int(rng.integers(1, 3))
        p.io_channel = int(rng.integers(1, 33))
        p.chip_id = int(rng.integers(11, 111))
        p.packet_type = 0
        p.channel_id = int(rng.integers(0, 64))
        p.timestamp = int(rng.integers(0, 1 << 31))
        p.dataword = int(rng.integers(0, 256))
        p.assign_parity()
        packets.append(p)
    return packets


def test_round_trip_under_the_plot_dir(tmp_path: Path) -> None:
    store = StateStore.in_plot_dir(tmp_path)
    cursors = [Cursor("/data/b.h5", 12, 3456, 78, "raw"), Cursor("/data/a.h5", 9, 100, 5, "packet"),
               Cursor("/data/new.h5", 3, 10, 0, None)]
    store.save(cursors)
    assert store.path == tmp_path / STATE_FILE_NAME
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE_NAME]  # no temp file left
    loaded = StateStore.in_plot_dir(tmp_path).load()
    assert loaded == {c.path: c for c in cursors}
    on_disk = json.loads(store.path.read_text())
    assert [f["path"] for f in on_disk["files"]] == ["/data/a.h5", "/data/b.h5", "/data/new.h5"]


def test_unchanged_state_is_not_rewritten(tmp_path: Path) -> None:
    store = StateStore.in_plot_dir(tmp_path)
    store.save([Cursor("/d/a.h5", 1, 2, 3, "packet")])
    inode = store.path.stat().st_ino
    store.save([Cursor("/d/a.h5", 1, 2, 3, "packet")])
    assert store.path.stat().st_ino == inode
    store.save([Cursor("/d/a.h5", 1, 2, 4, "packet")])
    assert store.path.stat().st_ino != inode  # replaced, never rewritten in place


def test_concurrent_loads_never_see_a_partial_file(tmp_path: Path) -> None:
    writer = StateStore.in_plot_dir(tmp_path)
    writer.save([Cursor(f"/d/{i}.h5", i, 0, 0, "packet") for i in range(200)])
    seen: list[int] = []
    done = threading.Event()

    def load_repeatedly() -> None:
        while not done.is_set():
            seen.append(len(StateStore.in_plot_dir(tmp_path).load()))

    thread = threading.Thread(target=load_repeatedly)
    thread.start()
    for rows in range(1, 150):
        writer.save([Cursor(f"/d/{i}.h5", i, 0, rows, "packet") for i in range(200)])
    done.set()
    thread.join()
    assert seen and set(seen) == {200}


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 99, "files": []}',
                                     b'{"version": 1, "files": [{"path": "/x"}]}',
                                     b'{"version": 1, "files": [{"path": "/x", "inode": 1, '
                                     b'"size": 1, "rows": -5, "format": "packet"}]}'])
def test_unusable_state_is_reported_in_one_line_and_ignored(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / STATE_FILE_NAME).write_bytes(content)
    assert StateStore.in_plot_dir(tmp_path).load() == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(tmp_path / STATE_FILE_NAME) in warnings[0]
    assert "\n" not in warnings[0]


def test_missing_state_is_empty(tmp_path: Path) -> None:
    assert StateStore.in_plot_dir(tmp_path / "nowhere").load() == {}


def test_saved_cursor_resumes_exactly_after_the_consumed_rows(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    first, second = larpix_packets(40, seed=1), larpix_packets(25, seed=2)
    hdf5format.to_file(str(path), first)
    reader = FileReader(str(path))
    assert sum(chunk.rows for chunk in reader.read_new()) == 40
    StateStore.in_plot_dir(tmp_path / "plots").save([reader.cursor])

    hdf5format.to_file(str(path), second)
    saved = StateStore.in_plot_dir(tmp_path / "plots").load()[str(path)]
    assert saved.rows == 40 and saved.format == "packet"
    chunks = list(FileReader(str(path), saved).read_new())
    new = np.concatenate([c.packets for c in chunks])
    with h5py.File(path, "r", locking=False) as f:
        expected = f["packets"][40:]
    assert len(expected) == 25
    for name in ("io_group", "io_channel", "chip_id", "channel_id", "timestamp", "dataword"):
        np.testing.assert_array_equal(new[name], expected[name])
    np.testing.assert_array_equal(new["dataword"], [p.dataword for p in second])
