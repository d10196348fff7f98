"""The ingest loop: watcher -> readers -> metrics, plot renderer and saved state.

It runs on its own thread, never on the event loop. Each round it waits for a
file event (or at most ``POLL_SECONDS``), then reads the new rows of the files
that changed or are still being written, a bounded share of each (see
``exporter.watched``). After the round, counts and cursors are checkpointed
together and only then published to scrapes (see ``exporter.checkpointer``):
count -> checkpoint -> publish, so counters continue across any stop.

Start-up policy: a file with saved state resumes where it stopped; a file
without state that changed within ``flush_interval`` (the run in progress) is
read from its start; an older untouched file waits until it changes, then is
read from its start. ``read_all`` reads everything from the start. A resumed
file's table and plots are filled again by a replay (``exporter.replay``).

After a round that published new rows, ``on_counted`` runs on this thread
(the service builds the next scrape's exposition there, off the request path).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from exporter.checkpointer import Checkpointer
from exporter.config import MonitorConfig
from exporter.errors import InputError, TransientReadError
from exporter.metrics import DetectorMetrics, MonitorHealth
from exporter.plot_schedule import PlotSchedule
from exporter.render import PlotRenderer
from exporter.replay import Replays
from exporter.source.checkpoint import CheckpointStore
from exporter.source.reader import Cursor, FileReader
from exporter.source.status import FileStatus
from exporter.source.watcher import DirectoryWatcher, FileChange
from exporter.watched import (
    ACTIVE_SECONDS,
    CHUNK_ROWS,
    ROUND_ROWS,
    Watched,
    file_counts,
    ingest_lag,
    retirable,
    status_of,
    turns,
)

log = logging.getLogger(__name__)

#: Longest wait between two looks at the data directory.
POLL_SECONDS = 0.5
#: Longest time between two looks for files to retire.
RETIRE_CHECK_SECONDS = 60.0

__all__ = ["FileStatus", "Ingest"]


class Ingest:
    """Keeps the metrics, plots and checkpoint in step with the data directory."""

    def __init__(self, config: MonitorConfig, watcher: DirectoryWatcher,
                 detector: DetectorMetrics, health: MonitorHealth, store: CheckpointStore,
                 renderer: PlotRenderer | None = None,
                 on_counted: Callable[[], None] | None = None) -> None:
        self.config = config
        self.watcher = watcher
        self.detector = detector
        self.health = health
        self.checkpointer = Checkpointer(store, {"detector": detector, "health": health})
        self.renderer = renderer
        self.on_counted = on_counted
        self._files: dict[Path, Watched] = {}
        self._lock = threading.Lock()  # guards _files for readers on other threads
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.plots = None if renderer is None else PlotSchedule(
            renderer, config.interval, config.flush_interval, time.monotonic())
        #: Rounds run so far (tests wait on it instead of sleeping).
        self.rounds = 0
        self._saved: dict[str, Cursor] = {}
        self._retire_checked = time.monotonic()
        self.replays = Replays(detector, renderer)
        self._announced = detector.counted

    # -- seen from the web side -------------------------------------------------------

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def is_alive(self) -> bool:
        """False once the ingest thread has died: the process should be restarted."""
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def files(self) -> list[FileStatus]:
        """The files a shifter sees in the gallery: retired ones (finished runs) only show
        with their plots, so the page does not grow with every file a long run has seen."""
        now = time.monotonic()
        with self._lock:
            return [status_of(w, now) for w in self._files.values() if not w.retired]

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Restore the checkpoint before anything can scrape, then watch."""
        self._saved = self.checkpointer.restore()
        self.checkpointer.committed = (self.detector.counted, self.health.changed)
        self.watcher.start()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Stop reading after the chunk in hand (safe from a signal handler): a stop
        signal must not wait for the web server's own graceful shutdown."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the chunk in hand, drop queued renders, checkpoint and stop."""
        self._stop.set()
        self.watcher.stop()
        for watched in list(self._files.values()):
            if watched.render is not None:
                watched.render.cancel()  # only a render already running is waited for
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("ingest did not stop within %.0f s; counts kept up to its last "
                          "checkpoint", timeout)
                return
        self._commit()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("ingest stopped by an unexpected error")
            raise

    def _loop(self) -> None:
        now = time.time()
        for change in self.watcher.scan():
            self._start_watching(change, self._saved.get(str(change.path)), now)
        self._saved = {}  # in the readers now
        self._ready.set()
        log.info("watching %s (%d files matching %s)", self.config.data_dir, len(self._files),
                 self.config.glob)
        while not self._stop.is_set():
            self._round()
            if self._stop.is_set():
                break
            for change in self.watcher.wait(0 if self._behind() else POLL_SECONDS):
                self._apply(change)

    def _behind(self) -> bool:
        files = self._files.values()
        return any(w.more for w in files) or self.replays.ready(files)

    # -- one round --------------------------------------------------------------------

    def _round(self) -> None:
        now = time.monotonic()
        self.rounds += 1
        for watched in turns(list(self._files.values()), now):
            if self._stop.is_set():
                break
            watched.served = self.rounds
            try:
                self._read(watched)
            except Exception as err:  # a fault with one file must not stop the others
                watched.read_version = watched.stat
                watched.caught_up()
                if self._report(watched, InputError(str(watched.path), "internal", repr(err)),
                                per_version=False):
                    log.exception("%s: unexpected failure while reading", watched.path)
        self.health.set_files(file_counts(self._files.values(), time.monotonic()))
        self.health.set_ingest_lag(ingest_lag(list(self._files.values()), time.time()))
        counted = self.detector.counted
        if self._commit() and self.on_counted is not None and counted != self._announced:
            self._announced = counted
            self.on_counted()
        # after this round's counts are out; a stop waits for no replay
        self._grant_tables()
        self.replays.step(list(self._files.values()), self._stop.is_set)
        if self.plots is not None:
            self.plots.render_due(self._files.values(), now)
            self.plots.close_idle_figures(now)
        self._retire_idle(now)

    def _grant_tables(self) -> None:
        """Free per-channel tables go to the files being read that wait for one, the most
        recently changed first (``metrics.channels``)."""
        waiting = self.detector.channels.waiting
        if not waiting:
            return
        for watched in sorted(self._files.values(), key=lambda w: -w.changed_at):
            if (str(watched.path) in waiting and watched.reader is not None
                    and watched.replay is None and not watched.retired
                    and self.detector.grant_table(str(watched.path))):
                self.replays.refill(watched)

    def _retire_idle(self, now: float) -> None:
        """Files untouched for ``flush_interval`` (finished runs) keep only their reader's
        cursor: their data-time carry goes, so memory follows the live files, not every
        file a long run has seen (plots: ``PlotSchedule.close_idle_figures``)."""
        if now - self._retire_checked < min(RETIRE_CHECK_SECONDS, self.config.flush_interval):
            return
        self._retire_checked = now
        for watched in self._files.values():
            if retirable(watched, now, self.config.flush_interval):
                watched.retired = True
                self.detector.retire(str(watched.path))

    def _commit(self) -> bool:
        """Checkpoint and publish what changed since the last commit; True if it did."""
        cursors = [w.reader.cursor for w in list(self._files.values()) if w.reader is not None]
        return self.checkpointer.commit(cursors, (self.detector.counted, self.health.changed))

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
        watched = Watched(change.path, change.stat, reader, changed_at=time.monotonic() - age)
        watched.noticed()
        if cursor is not None:
            watched.resumed = cursor.rows
            if now - change.stat.mtime <= ACTIVE_SECONDS:  # being written: in use now
                self.replays.begin(watched)
        with self._lock:
            self._files[change.path] = watched

    def _apply(self, change: FileChange) -> None:
        watched = self._files.get(change.path)
        if change.kind == "deleted":
            if watched is not None:
                self._forget(watched, "deleted")
            return
        assert change.stat is not None
        if watched is None:
            log.info("%s: new file", change.path)
            watched = Watched(change.path, change.stat,
                              FileReader(str(change.path), chunk_rows=CHUNK_ROWS),
                              changed_at=time.monotonic())
            watched.noticed()
            with self._lock:
                self._files[change.path] = watched
            return
        if watched.reader is None:
            log.info("%s: changed; reading from the start", change.path)
            watched.reader = FileReader(str(change.path), chunk_rows=CHUNK_ROWS)
        watched.stat = change.stat
        watched.changed_at = time.monotonic()
        watched.retired = False
        watched.noticed()

    def _forget(self, watched: Watched, why: str) -> None:
        rows = watched.reader.cursor.rows if watched.reader else 0
        log.info("%s: %s (%d rows had been read); no longer watched", watched.path, why, rows)
        with self._lock:
            self._files.pop(watched.path, None)
        self.replays.end(watched)
        self.detector.forget(str(watched.path))

    # -- reading ----------------------------------------------------------------------

    def _read(self, watched: Watched) -> None:
        """Count this round's share of the file's new rows (``ROUND_ROWS``)."""
        reader = watched.reader
        assert reader is not None
        source = str(watched.path)
        version = watched.stat
        share = 0
        try:
            for chunk in reader.read_new():
                self._note_resets(watched)
                self.detector.update(chunk, source)
                if watched.resumed is not None:
                    self.replays.begin(watched)  # new rows: its table and plots are in use
                if self.renderer is not None and (watched.replay is None
                                                  or not watched.replay.feeds_plots):
                    self.renderer.add_packets(watched.path, chunk.packets)
                self.health.count_rows(chunk.format, chunk.rows, chunk.nbytes)
                if chunk.malformed:
                    self.health.count_read_error("malformed_message", chunk.malformed)
                for damage in chunk.damaged:  # skipped rows: said and counted once
                    self.health.count_read_error(damage.reason)
                    log.warning("%s", damage)
                watched.last_read = time.time()
                self.health.mark_ingest(watched.last_read)
                watched.dirty = self.renderer is not None  # rows its plots have not drawn
                share += chunk.rows
                if self._stop.is_set() or share >= ROUND_ROWS:
                    watched.more = not self._stop.is_set()
                    return  # the reader's cursor already covers every chunk counted
            self._note_resets(watched)
        except TransientReadError as err:
            watched.retry = True
            self.health.count_retry(err.reason)
            log.debug("%s", err)
            return
        except InputError as err:
            watched.caught_up()
            if err.reason == "vanished":
                self._forget(watched, "vanished")
            else:
                watched.retry = False
                watched.read_version = version
                self._report(watched, err)
            return
        watched.read_version = version
        watched.caught_up()
        if watched.error_key is not None:
            log.info("%s: readable again", watched.path)
        watched.retry = False
        watched.error_key = watched.error_text = None

    def _note_resets(self, watched: Watched) -> None:
        assert watched.reader is not None
        new = watched.reader.resets - watched.resets_seen
        if new <= 0:
            return
        watched.resets_seen = watched.reader.resets
        for _ in range(new):
            self.health.count_reset()
        watched.resumed = None
        self.replays.end(watched)
        self.detector.forget(str(watched.path))
        log.info("%s: truncated or replaced; reading it again from the start", watched.path)

    def _report(self, watched: Watched, err: InputError, per_version: bool = True) -> bool:
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

    # -- health -----------------------------------------------------------------------
