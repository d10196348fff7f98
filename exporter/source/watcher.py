"""Finds new, growing and vanished data files in one directory.

A scan of the directory is the source of truth. File-system events
(watchfiles) wake the scan early and name the files they saw change, so a
packet on disk is noticed within a few tens of milliseconds; without events
(``--poll``, network file systems, or when the kernel refuses a watch) the scan
simply runs every ``poll`` seconds. A scan lists the directory (cheap) but
stats only what may have changed: new names, files an event named, files that
changed in the last ``ACTIVE_SECONDS``, and every other file once per
``IDLE_STAT_SECONDS`` (a stat costs a round trip on NFS, and a run directory
holds thousands of finished files). Events can be lost (queue overflow, remote
writers), so that slow sweep runs in either mode.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import watchfiles

log = logging.getLogger(__name__)

ChangeKind = Literal["new", "changed", "deleted"]

#: A file that changed this recently is stat-ed at every scan.
ACTIVE_SECONDS = 10.0
#: Any other file is stat-ed at least this often, events or not.
IDLE_STAT_SECONDS = 10.0
#: Longest wait for the kernel watch at start (then the sweep alone is in charge).
EVENTS_READY_SECONDS = 5.0


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

    def __init__(self, directory: Path, pattern: str, use_events: bool = True,
                 idle_stat_seconds: float = IDLE_STAT_SECONDS) -> None:
        self.directory = directory
        self.pattern = pattern
        self.use_events = use_events
        self.idle_stat_seconds = idle_stat_seconds
        self._known: dict[Path, FileStat] = {}
        self._stat_at: dict[Path, float] = {}  # monotonic time of each file's last stat
        self._touched: set[str] = set()  # names of files events saw change since the last scan
        self._touched_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._events_ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._scan_failed = False

    def start(self) -> None:
        """Start watching; with events, return once the kernel watch is in place (a write
        right after start is an event, not a wait for the sweep)."""
        if self.use_events and self._thread is None:
            self._thread = threading.Thread(target=self._watch_events, name="watcher", daemon=True)
            self._thread.start()
            self._events_ready.wait(EVENTS_READY_SECONDS)

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
        with self._touched_lock:
            touched, self._touched = self._touched, set()
        current = self._stat_directory(touched)
        if current is None:
            return []  # an unreadable directory says nothing about its files
        changes: list[FileChange] = []
        for path, stat in current.items():
            previous = self._known.get(path)
            if previous is None:
                changes.append(FileChange("new", path, stat))
            elif not stat.same_version(previous):
                changes.append(FileChange("changed", path, stat))
        for path in self._known.keys() - current:
            changes.append(FileChange("deleted", path, None))
            self._stat_at.pop(path, None)
        self._known = current
        return sorted(changes, key=lambda c: str(c.path))

    def _needs_stat(self, path: Path, touched: set[str], now: float) -> bool:
        known = self._known.get(path)
        return (known is None or path.name in touched
                or time.time() - known.mtime < ACTIVE_SECONDS
                or now - self._stat_at[path] >= self.idle_stat_seconds)

    def _stat_directory(self, touched: set[str]) -> dict[Path, FileStat] | None:
        found: dict[Path, FileStat] = {}
        now = time.monotonic()
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    path = Path(entry.path)
                    if not matches(entry.name, self.pattern):
                        continue
                    if not self._needs_stat(path, touched, now):
                        found[path] = self._known[path]
                        continue
                    try:
                        if entry.is_file():
                            found[path] = FileStat.of(entry.stat())
                            self._stat_at[path] = now
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
            # yield_on_timeout: the first (empty) yield says the kernel watch is in place
            for changes in watchfiles.watch(self.directory, watch_filter=relevant,
                                            recursive=False, debounce=100, step=20,
                                            stop_event=self._stop, rust_timeout=200,
                                            yield_on_timeout=True, raise_interrupt=False):
                self._events_ready.set()
                if changes:
                    with self._touched_lock:
                        self._touched.update(os.path.basename(path) for _, path in changes)
                    self._wake.set()
        except Exception as err:  # any failure leaves the periodic scan in charge
            log.warning("%s: file events unavailable (%s); scanning periodically instead",
                        self.directory, err)
        finally:
            self._events_ready.set()
