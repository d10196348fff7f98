"""A real ``larpix-monitor serve`` and files that change identity under it: rewritten in
place (same inode, larger) while it runs, and a new file on a reused inode across a
restart. Every row of every version is counted exactly once; counts are checked against
larpix-control's own packet objects."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from support.damage import larpix_packets, packet_file, types_of
from support.service import MonitorProcess, Samples, series, value
from support.waiting import wait_for

from exporter.packets import PACKET_TYPE_NAMES
from exporter.source.checkpoint import CHECKPOINT_FILE_NAME, CheckpointStore


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    return data, plots


def rows_read(samples: Samples) -> float:
    return sum(series(samples, "larpix_monitor_rows_read_total").values())


def packets_by_type(samples: Samples) -> Counter:
    counts: Counter = Counter()
    for labels, v in series(samples, "larpix_packets_total").items():
        counts[PACKET_TYPE_NAMES.index(dict(labels)["packet_type"])] += int(v)
    return +counts


def overwrite_in_place(path: Path, new: Path) -> None:
    """Replace the file's bytes with ``new``'s through the same inode, in one write (a
    larger file: nothing is cut off first, so no empty or half-written state is seen)."""
    data = new.read_bytes()
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate(len(data))


def test_file_rewritten_in_place_while_served(dirs, tmp_path):
    data, plots = dirs
    path = data / "run.h5"
    old, new = larpix_packets(2_000, seed=1), larpix_packets(30_000, seed=2)
    packet_file(path, old)
    packet_file(tmp_path / "new.h5", new)
    with MonitorProcess(data, plots, "--no-plots") as monitor:
        wait_for(lambda: rows_read(monitor.scrape()) == len(old), 20, "the first version")
        inode = path.stat().st_ino
        overwrite_in_place(path, tmp_path / "new.h5")
        assert path.stat().st_ino == inode
        wait_for(lambda: rows_read(monitor.scrape()) == len(old) + len(new), 20,
                 "every row of the rewritten file")
        samples = monitor.scrape()
        assert monitor.proc.poll() is None
    assert value(samples, "larpix_monitor_file_resets_total") == 1
    assert packets_by_type(samples) == types_of(old) + types_of(new)
    assert "run.h5: truncated or replaced; reading it again from the start" in monitor.log_text()


def test_new_file_on_a_reused_inode_after_a_restart(dirs):
    """The file is deleted and a new one written while the monitor is down; it gets the
    old inode (ext4 and tmpfs reuse a freed one at once; where they do not, the saved
    cursor is given the new file's inode, which is the situation this is about)."""
    data, plots = dirs
    path = data / "run.h5"
    old, new = larpix_packets(3_000, seed=3), larpix_packets(20_000, seed=4)
    packet_file(path, old)
    with MonitorProcess(data, plots, "--no-plots") as first:
        wait_for(lambda: rows_read(first.scrape()) == len(old), 20, "the first file")
    path.unlink()
    packet_file(path, new)
    store = CheckpointStore(plots / CHECKPOINT_FILE_NAME)
    saved = store.load()
    cursor = saved.cursors[str(path)]
    assert cursor.rows == len(old)
    if cursor.inode != path.stat().st_ino:
        cursor.inode = path.stat().st_ino
        store.save(saved.cursors.values(), saved.metrics)
    with MonitorProcess(data, plots, "--no-plots") as second:
        wait_for(lambda: rows_read(second.scrape()) == len(old) + len(new), 20,
                 "every row of the new file")
        samples = second.scrape()
    assert value(samples, "larpix_monitor_file_resets_total") == 1
    assert packets_by_type(samples) == types_of(old) + types_of(new)
