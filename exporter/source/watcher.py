"""Finds new, growing and vanished data files in one directory.

A stat scan of the directory is the source of truth. File-system events
(watchfiles) only wake the scan early, so a packet on disk is noticed within a
few tens of milliseconds; without events (``--poll``, network file systems, or
when the kernel refuses a watch) the scan simply runs every ``poll`` seconds.
Events can be lost (queue overflow, remote writers), so the periodic scan runs
in either mode.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import watchfiles

log = logging.getLogger(__name__)

ChangeKind = Literal["new", "changed", "deleted"]


@dataclass(frozen=True)
class FileStat:
    """What tells two versions of a file apart without opening it."""

    inode: int
    size: int
    mtime_ns: int
    mtime: float

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_mtime)

    def same_version(self, other: FileStat | None) -> bool:
        return other is not None and (self.inode, self.size, self.mtime_ns) == (
            other.inode, other.size, other.mtime_ns)


@dataclass(frozen=True)
class FileChange:
    kind: ChangeKind
    path: Path
    stat: FileStat | None  # None when deleted


def matches(name: str, pattern: str) -> bool:
    """Shell-glob semantics: a leading dot must be matched explicitly (skips temp files)."""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


class DirectoryWatcher:
    """Reports changes of the files directly in ``directory`` whose names match ``pattern``."""

    def __init__(self, directory: Path, pattern: str, use_events: bool = True) -> None:
        self.directory = directory
        self.pattern = pattern
        self.use_events = use_events
        self._known: dict[Path, FileStat] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._scan_failed = False

    def start(self) -> None:
        if self.use_events and self._thread is None:
            self._thread = threading.Thread(target=self._watch_events, name="watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait(self, timeout: float) -> list[FileChange]:
        """Block until a file event or ``timeout`` seconds, then report what changed."""
        self._wake.wait(timeout)
        self._wake.clear()
        return self.scan()

    def scan(self) -> list[FileChange]:
        """Compare the directory with the last scan."""
        current = self._stat_directory()
        if current is None:
            return []  # an unreadable directory says nothing about its files
        changes: list[FileChange] = []
        for path, stat in current.items():
            previous = self._known.get(path)
            if previous is None:
                changes.append(FileChange("new", path, stat))
            elif not stat.same_version(previous):
                changes.append(FileChange("changed", path, stat))
        changes += [FileChange("deleted", path, None) for path in self._known.keys() - current]
        self._known = current
        return sorted(changes, key=lambda c: str(c.path))

    def _stat_directory(self) -> dict[Path, FileStat] | None:
        found: dict[Path, FileStat] = {}
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if not matches(entry.name, self.pattern):
                        continue
                    try:
                        if entry.is_file():
                            found[Path(entry.path)] = FileStat.of(entry.stat())
                    except FileNotFoundError:
                        continue  # removed between listing and stat
        except OSError as err:
            if not self._scan_failed:
                log.error("%s: cannot list the data directory: %s", self.directory, err.strerror)
            self._scan_failed = True
            return None
        if self._scan_failed:
            log.info("%s: data directory readable again", self.directory)
            self._scan_failed = False
        return found

    def _watch_events(self) -> None:
        def relevant(_change: watchfiles.Change, path: str) -> bool:
            return matches(os.path.basename(path), self.pattern)

        try:
            for _ in watchfiles.watch(self.directory, watch_filter=relevant, recursive=False,
                                      debounce=100, step=20, stop_event=self._stop,
                                      rust_timeout=1000, raise_interrupt=False):
                self._wake.set()
        except Exception as err:  # any failure leaves the periodic scan in charge
            log.warning("%s: file events unavailable (%s); scanning periodically instead",
                        self.directory, err)
