"""DirectoryWatcher on a real directory: what it reports, and how fast events wake it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from support.waiting import wait_for

from exporter.source.watcher import DirectoryWatcher, FileChange


def kinds(changes: list[FileChange]) -> dict[str, str]:
    return {c.path.name: c.kind for c in changes}


def test_reports_only_matching_files_directly_in_the_directory(tmp_path: Path) -> None:
    (tmp_path / "run1.h5").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / ".run2.h5.partial.h5").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.h5").write_bytes(b"x")
    (tmp_path / "dir.h5").mkdir()
    watcher = DirectoryWatcher(tmp_path, "*.h5", use_events=False)
    changes = watcher.scan()
    assert kinds(changes) == {"run1.h5": "new"}
    assert changes[0].stat is not None and changes[0].stat.size == 1
    assert watcher.scan() == []


def test_growth_replacement_and_deletion(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("packets", data=np.zeros(10, "u4"), maxshape=(None,), chunks=(1024,))
    watcher = DirectoryWatcher(tmp_path, "*.h5", use_events=False)
    first = watcher.scan()[0]
    assert first.kind == "new"

    with h5py.File(path, "a") as f:
        f["packets"].resize((5000,))
        f["packets"][10:] = 7
    grown = watcher.scan()
    assert kinds(grown) == {"run.h5": "changed"}
    assert grown[0].stat.size > first.stat.size
    assert grown[0].stat.inode == first.stat.inode

    replacement = tmp_path / "tmp.bin"
    replacement.write_bytes(b"y" * grown[0].stat.size)
    os.replace(replacement, path)
    replaced = watcher.scan()
    assert kinds(replaced) == {"run.h5": "changed"}
    assert replaced[0].stat.inode != grown[0].stat.inode

    path.unlink()
    gone = watcher.scan()
    assert kinds(gone) == {"run.h5": "deleted"} and gone[0].stat is None
    assert watcher.scan() == []


def test_file_event_wakes_the_wait_early(tmp_path: Path) -> None:
    watcher = DirectoryWatcher(tmp_path, "*.h5", use_events=True)
    watcher.start()  # returns once the kernel watch is in place
    try:
        threading.Timer(0.2, (tmp_path / "live.h5").write_bytes, args=(b"data",)).start()
        started = time.monotonic()
        changes = watcher.wait(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        watcher.stop()
    assert kinds(changes) == {"live.h5": "new"}
    assert elapsed < 2.0


def test_polling_mode_finds_changes_at_the_timeout(tmp_path: Path) -> None:
    watcher = DirectoryWatcher(tmp_path, "*.h5", use_events=False)
    watcher.start()
    (tmp_path / "a.h5").write_bytes(b"1")
    started = time.monotonic()
    changes = watcher.wait(timeout=0.3)
    assert time.monotonic() - started >= 0.29
    assert kinds(changes) == {"a.h5": "new"}


def test_stop_interrupts_a_wait(tmp_path: Path) -> None:
    watcher = DirectoryWatcher(tmp_path, "*.h5", use_events=True)
    watcher.start()
    threading.Timer(0.2, watcher.stop).start()
    started = time.monotonic()
    watcher.wait(timeout=30)
    assert time.monotonic() - started < 5


def test_unreadable_directory_is_logged_once_and_reports_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.h5").write_bytes(b"1")
    watcher = DirectoryWatcher(data, "*.h5", use_events=False)
    assert kinds(watcher.scan()) == {"a.h5": "new"}
    (data / "a.h5").unlink()
    data.rmdir()
    assert watcher.scan() == [] and watcher.scan() == []
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and str(data) in errors[0].getMessage()


def test_idle_files_are_stat_ed_by_the_slow_sweep_only(tmp_path: Path) -> None:
    """A finished file is not stat-ed at every poll (a round trip each on NFS): a change
    that only a stat can reveal shows at the next sweep, while a file being written
    (recent mtime) is looked at every scan."""
    hour_ago = time.time() - 3600
    for n in range(20):
        (tmp_path / f"old-{n:02d}.h5").write_bytes(b"x" * n)
        os.utime(tmp_path / f"old-{n:02d}.h5", (hour_ago, hour_ago))
    live = tmp_path / "live.h5"
    live.write_bytes(b"1")
    watcher = DirectoryWatcher(tmp_path, "*.h5", use_events=False, idle_stat_seconds=3.0)
    assert len(watcher.scan()) == 21
    swept = time.monotonic()

    with open(tmp_path / "old-07.h5", "ab") as grown:  # no event in polling mode
        grown.write(b"more")
    live.write_bytes(b"12")
    assert kinds(watcher.scan()) == {"live.h5": "changed"}  # old-07 was not stat-ed

    seen = wait_for(lambda: kinds(watcher.scan()) or None, 10, "the sweep", interval=0.05)
    assert seen == {"old-07.h5": "changed"}
    assert time.monotonic() - swept >= 3.0


def test_an_event_names_the_idle_file_it_saw_change(tmp_path: Path) -> None:
    hour_ago = time.time() - 3600
    old = tmp_path / "old.h5"
    old.write_bytes(b"x")
    os.utime(old, (hour_ago, hour_ago))
    watcher = DirectoryWatcher(tmp_path, "*.h5", use_events=True, idle_stat_seconds=3600)
    watcher.start()
    try:
        assert kinds(watcher.scan()) == {"old.h5": "new"}
        with open(old, "ab") as grown:
            grown.write(b"more")
        changes = wait_for(lambda: watcher.wait(timeout=0.5) or None, 10, "the event")
    finally:
        watcher.stop()
    assert kinds(changes) == {"old.h5": "changed"}
