"""The ingest loop: watcher -> readers -> metrics, plot renderer and saved state.

It runs on its own thread, never on the event loop. Each round it waits for a
file event (or at most ``POLL_SECONDS``), then reads the new rows of every file
that changed or is still being written, chunk by chunk. A chunk is counted
(metrics, health, plot buffer) before the cursor that covers it is saved, so
the saved state never claims a row that was not counted.

Start-up policy: a file with saved state resumes where it stopped; a file
without state that changed within ``flush_interval`` (the run in progress) is
read from its start; an older untouched file waits until it changes, then is
read from its start. ``read_all`` reads everything from the start.

After a round that counted rows, ``on_counted`` runs on this thread (the
service builds the next scrape's exposition there, off the request path).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from exporter.config import MonitorConfig
from exporter.errors import InputError, TransientReadError
from exporter.metrics import DetectorMetrics, MonitorHealth
from exporter.render import PlotRenderer
from exporter.source.reader import Cursor, FileReader
from exporter.source.state import StateStore
from exporter.source.status import FileStatus
from exporter.source.watcher import DirectoryWatcher, FileChange, FileStat

log = logging.getLogger(__name__)

#: Longest wait between two looks at the data directory.
POLL_SECONDS = 0.5
#: A file that changed this recently is re-read every round even without a new
#: event: a write can land within the file system's timestamp granularity.
ACTIVE_SECONDS = 10.0
#: Rows per reader step: bounds memory and the time before the first counts show.
CHUNK_ROWS = 1 << 18


@dataclass
class _Watched:
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
    dirty: bool = False  # packets not yet rendered
    rendered_at: float | None = None
    render: Future | None = field(default=None, repr=False)


class Ingest:
    """Keeps the metrics, plots and saved state in step with the data directory."""

    def __init__(self, config: MonitorConfig, watcher: DirectoryWatcher,
                 detector: DetectorMetrics, health: MonitorHealth, store: StateStore,
                 renderer: PlotRenderer | None = None,
                 on_counted: Callable[[], None] | None = None) -> None:
        self.config = config
        self.watcher = watcher
        self.detector = detector
        self.health = health
        self.store = store
        self.renderer = renderer
        self.on_counted = on_counted
        self._files: dict[Path, _Watched] = {}
        self._lock = threading.Lock()  # guards _files for readers on other threads
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._file_counts: dict[str, int] = {}
        self._idle_closer: threading.Thread | None = None
        self._idle_checked = time.monotonic()
        self._save_failing = False

    # -- seen from the web side -------------------------------------------------------

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def is_alive(self) -> bool:
        """False once the ingest thread has died: the process should be restarted."""
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def files(self) -> list[FileStatus]:
        now = time.monotonic()
        with self._lock:
            return [self._status(w, now) for w in self._files.values()]

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self.watcher.start()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the chunk in hand, drop queued renders, save the state and stop."""
        self._stop.set()
        self.watcher.stop()
        for watched in list(self._files.values()):
            if watched.render is not None:
                watched.render.cancel()  # only a render already running is waited for
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("ingest did not stop within %.0f s; state saved up to its last step",
                          timeout)
                return
        self._save_state()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("ingest stopped by an unexpected error")
            raise

    def _loop(self) -> None:
        saved = self.store.load()
        now = time.time()
        for change in self.watcher.scan():
            self._start_watching(change, saved.get(str(change.path)), now)
        self._ready.set()
        log.info("watching %s (%d files matching %s)", self.config.data_dir, len(self._files),
                 self.config.glob)
        while not self._stop.is_set():
            self._round()
            if self._stop.is_set():
                break
            for change in self.watcher.wait(POLL_SECONDS):
                self._apply(change)

    # -- one round --------------------------------------------------------------------

    def _round(self) -> None:
        now = time.monotonic()
        counted = self.detector.version
        for watched in list(self._files.values()):
            if self._stop.is_set():
                break
            if not self._due(watched, now):
                continue
            try:
                self._read(watched)
            except Exception as err:  # a fault with one file must not stop the others
                watched.read_version = watched.stat
                if self._report(watched, InputError(str(watched.path), "internal", repr(err)),
                                per_version=False):
                    log.exception("%s: unexpected failure while reading", watched.path)
        self._save_state()
        if self.on_counted is not None and self.detector.version != counted:
            self.on_counted()
        self._render_due(now)
        self._close_idle_figures(now)
        self._publish_file_counts()

    def _due(self, watched: _Watched, now: float) -> bool:
        if watched.reader is None or watched.stat.size == 0:
            return False  # waiting, or created but not yet written
        return (watched.retry or now - watched.changed_at < ACTIVE_SECONDS
                or watched.read_version != watched.stat)

    def _start_watching(self, change: FileChange, cursor: Cursor | None, now: float) -> None:
        assert change.stat is not None
        fresh = now - change.stat.mtime <= self.config.flush_interval
        if cursor is not None:
            reader = FileReader(str(change.path), cursor, chunk_rows=CHUNK_ROWS)
            log.info("%s: resuming after row %d", change.path, cursor.rows)
        elif self.config.read_all or fresh:
            reader = FileReader(str(change.path), chunk_rows=CHUNK_ROWS)
            log.info("%s: reading from the start", change.path)
        else:
            reader = None
            log.info("%s: untouched for more than %.0f s; waiting until it changes",
                     change.path, self.config.flush_interval)
        age = max(0.0, now - change.stat.mtime)
        with self._lock:
            self._files[change.path] = _Watched(change.path, change.stat, reader,
                                                changed_at=time.monotonic() - age)

    def _apply(self, change: FileChange) -> None:
        watched = self._files.get(change.path)
        if change.kind == "deleted":
            if watched is not None:
                self._forget(watched, "deleted")
            return
        assert change.stat is not None
        if watched is None:
            log.info("%s: new file", change.path)
            with self._lock:
                self._files[change.path] = _Watched(
                    change.path, change.stat, FileReader(str(change.path), chunk_rows=CHUNK_ROWS),
                    changed_at=time.monotonic())
            return
        if watched.reader is None:
            log.info("%s: changed; reading from the start", change.path)
            watched.reader = FileReader(str(change.path), chunk_rows=CHUNK_ROWS)
        watched.stat = change.stat
        watched.changed_at = time.monotonic()

    def _forget(self, watched: _Watched, why: str) -> None:
        rows = watched.reader.cursor.rows if watched.reader else 0
        log.info("%s: %s (%d rows had been read); no longer watched", watched.path, why, rows)
        with self._lock:
            self._files.pop(watched.path, None)
        self.detector.forget(str(watched.path))

    # -- reading ----------------------------------------------------------------------

    def _read(self, watched: _Watched) -> None:
        reader = watched.reader
        assert reader is not None
        source = str(watched.path)
        version = watched.stat
        first = True
        try:
            for chunk in reader.read_new():
                if not first:
                    self._save_state()  # the cursor now covers every chunk counted so far
                first = False
                self._note_resets(watched)
                self.detector.update(chunk, source)
                if self.renderer is not None:
                    self.renderer.add_packets(watched.path, chunk.packets)
                self.health.count_rows(chunk.format, chunk.rows, chunk.nbytes)
                if chunk.malformed:
                    self.health.count_read_error("malformed_message", chunk.malformed)
                now = time.time()
                self.health.mark_ingest(max(0.0, now - watched.stat.mtime), now)
                watched.last_read = now
                watched.dirty = True
                if self._stop.is_set():
                    break
            self._note_resets(watched)
        except TransientReadError as err:
            watched.retry = True
            self._report(watched, err)
            return
        except InputError as err:
            if err.reason == "vanished":
                self._forget(watched, "vanished")
            else:
                watched.retry = False
                watched.read_version = version
                self._report(watched, err)
            return
        watched.read_version = version
        if watched.error_key is not None:
            log.info("%s: readable again", watched.path)
        watched.retry = False
        watched.error_key = watched.error_text = None

    def _note_resets(self, watched: _Watched) -> None:
        assert watched.reader is not None
        new = watched.reader.resets - watched.resets_seen
        if new <= 0:
            return
        watched.resets_seen = watched.reader.resets
        for _ in range(new):
            self.health.count_reset()
        self.detector.forget(str(watched.path))
        log.info("%s: truncated or replaced; reading it again from the start", watched.path)

    def _report(self, watched: _Watched, err: InputError, per_version: bool = True) -> bool:
        """One log line and one count per error and file version, not one per poll
        (per file, whatever its version, for faults of the monitor itself)."""
        key = (err.reason, watched.stat if per_version else None)
        if key == watched.error_key:
            return False
        watched.error_key = key
        watched.error_text = err.detail
        self.health.count_read_error(err.reason)
        log.warning("%s", err)
        return True

    # -- plots, state, health ---------------------------------------------------------

    def _render_due(self, now: float) -> None:
        if self.renderer is None:
            return
        for watched in self._files.values():
            if not watched.dirty or (watched.render is not None and not watched.render.done()):
                continue
            if watched.rendered_at is not None and now - watched.rendered_at < self.config.interval:
                continue
            watched.dirty = False
            watched.rendered_at = now
            watched.render = self.renderer.render(watched.path)

    def _close_idle_figures(self, now: float) -> None:
        """Close idle figures on a helper thread: the renderer may be busy for a while."""
        every = min(60.0, self.config.flush_interval)
        if self.renderer is None or now - self._idle_checked < every:
            return
        if self._idle_closer is not None and self._idle_closer.is_alive():
            return
        self._idle_checked = now
        self._idle_closer = threading.Thread(
            target=self.renderer.close_idle, args=(self.config.flush_interval,),
            name="close-idle", daemon=True)
        self._idle_closer.start()

    def _save_state(self) -> None:
        try:
            self.store.save(w.reader.cursor for w in list(self._files.values())
                            if w.reader is not None)
        except OSError as err:
            if not self._save_failing:
                log.error("%s: cannot save the state: %s", self.store.path,
                          err.strerror or err)
            self._save_failing = True
            return
        if self._save_failing:
            log.info("%s: state saved again", self.store.path)
            self._save_failing = False

    def _publish_file_counts(self) -> None:
        now = time.monotonic()
        counts = Counter(self._state(w, now) for w in self._files.values())
        counts = {state: counts.get(state, 0) for state in ("active", "idle", "waiting", "error")}
        if counts != self._file_counts:
            self._file_counts = counts
            self.health.set_files(counts)

    @staticmethod
    def _state(watched: _Watched, now: float) -> str:
        if watched.error_key is not None:
            return "error"
        if watched.reader is None:
            return "waiting"
        return "active" if now - watched.changed_at < ACTIVE_SECONDS else "idle"

    def _status(self, watched: _Watched, now: float) -> FileStatus:
        cursor = watched.reader.cursor if watched.reader else None
        return FileStatus(path=str(watched.path), file=watched.path.stem,
                          state=self._state(watched, now), rows=cursor.rows if cursor else 0,
                          format=cursor.format if cursor else None,
                          last_read=watched.last_read, error=watched.error_text)
