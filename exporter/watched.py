"""The ingest loop's view of each watched file, and whose turn it is to be read.

Rounds are fair: a file gets at most ``ROUND_ROWS`` rows per round, files that
changed recently (the run being written) go first, and the others take turns,
least recently served first. So a backlog of big old files never holds back
the live file's metrics by more than one bounded step of each.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.source.reader import FileReader
from exporter.source.status import FileStatus
from exporter.source.watcher import FileStat

if TYPE_CHECKING:
    from exporter.replay import Replay

#: A file that changed this recently is re-read every round even without a new
#: event: a write can land within the file system's timestamp granularity.
ACTIVE_SECONDS = 10.0
#: Rows one file may have counted in one round before the others get their turn.
ROUND_ROWS = 1 << 19
#: Rows per reader step: bounds memory and the time before the first counts show.
CHUNK_ROWS = 1 << 18


@dataclass
class Watched:
    path: Path
    stat: FileStat
    reader: FileReader | None  # None while waiting for its first change
    changed_at: float  # monotonic time the watcher last saw it change
    resets_seen: int = 0
    last_read: float | None = None
    read_version: FileStat | None = None  # the version last read (or found unreadable)
    error_key: tuple | None = None  # (reason, file version) of the last reported error
    error_text: str | None = None
    retry: bool = False  # a transient error: read again next round
    more: bool = False  # its round's share was used up before its end
    served: int = 0  # the round it last had a turn in
    #: Unix time the monitor noticed rows it has not counted yet (None: caught up).
    waiting_since: float | None = None
    dirty: bool = False  # packets not yet rendered
    rendered_at: float | None = None
    render: Future | None = field(default=None, repr=False)
    #: Rows the checkpoint covered at start, until a replay of them begins (``exporter.replay``)
    resumed: int | None = None
    replay: Replay | None = field(default=None, repr=False)
    retired: bool = False  # idle past --flush_interval: only its cursor is kept

    def noticed(self) -> None:
        """The file changed: its new rows wait from now (unless older ones already wait)."""
        if self.waiting_since is None and self.reader is not None:
            self.waiting_since = time.time()

    def caught_up(self) -> None:
        self.more = False
        self.waiting_since = None


def due(watched: Watched, now: float) -> bool:
    if watched.reader is None or watched.stat.size == 0:
        return False  # waiting, or created but not yet written
    return (watched.retry or watched.more or now - watched.changed_at < ACTIVE_SECONDS
            or watched.read_version != watched.stat)


def turns(files: list[Watched], now: float) -> list[Watched]:
    """The due files in reading order: recently changed first, then least recently served."""
    ready = [w for w in files if due(w, now)]
    return sorted(ready, key=lambda w: (now - w.changed_at >= ACTIVE_SECONDS, w.served,
                                        -w.changed_at))


def retirable(watched: Watched, now: float, flush_interval: float) -> bool:
    """Read to its end and untouched for ``flush_interval``: a finished file."""
    return (not watched.retired and watched.reader is not None and watched.replay is None
            and not (watched.more or watched.retry or watched.dirty)
            and now - watched.changed_at > flush_interval)


def ingest_lag(files: list[Watched], now: float) -> float:
    """How long the oldest rows not yet counted have waited (0 when caught up)."""
    waits = [now - w.waiting_since for w in files
             if w.waiting_since is not None and w.error_key is None]
    return max(0.0, max(waits, default=0.0))


def file_counts(files: Iterable[Watched], now: float) -> dict[str, int]:
    """Files in each state, every state named (0 too)."""
    counts = Counter(state_of(w, now) for w in files)
    return {state: counts.get(state, 0) for state in ("active", "idle", "waiting", "error")}


def state_of(watched: Watched, now: float) -> str:
    if watched.error_key is not None:
        return "error"
    if watched.reader is None:
        return "waiting"
    return "active" if now - watched.changed_at < ACTIVE_SECONDS else "idle"


def status_of(watched: Watched, now: float) -> FileStatus:
    cursor = watched.reader.cursor if watched.reader else None
    return FileStatus(path=str(watched.path), file=watched.path.stem,
                      state=state_of(watched, now), rows=cursor.rows if cursor else 0,
                      format=cursor.format if cursor else None,
                      last_read=watched.last_read, error=watched.error_text)
