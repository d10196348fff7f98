"""After a restart, the rows of a resumed file counted before the stop, read again for its
per-channel table and its plots only.

Counters continue from the checkpoint, but the per-channel tables (too big for every
round's checkpoint) and what the plot plugins accumulate are not saved: without a
replay they would cover only the rows read since the restart. A replay reads the file
again from row 0 with a reader of its own:

* rows below the checkpoint's cursor (``counted``) go to the file's table
  (``DetectorMetrics.count_channels``: never a counter, the window or the data clock);
* with plots, every row up to where the live reader stands goes to the renderer, so the
  plugins see the file in order, as in an uninterrupted run: the live reader's rows
  reach the renderer only once the replay has caught up with it. Until then the
  file's figures are held (fed, never drawn): a figure never shows part of a file.

A file that waited for a per-channel table (``metrics.channels``) has its rows so far
read again the same way once it gets one, for the table only (``Replays.refill``).

Bounded: at most ``REPLAY_ROWS`` packets a file a round, after the round's live rows are
published, and the next share waits until the renderer has taken the last one (the
ingest thread never waits for plots). Only files whose table and plots are used again
are replayed: resumed files still being written at start, or that get new rows later.
Nothing of a replay is saved: a stop during one replays again at the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future

from exporter.errors import InputError, TransientReadError
from exporter.metrics import DetectorMetrics
from exporter.render import PlotRenderer
from exporter.source.reader import FileReader
from exporter.watched import CHUNK_ROWS, ROUND_ROWS, Watched

log = logging.getLogger(__name__)

#: Packets one file may replay in one round (the work a share costs follows packets, not the
#: messages of a raw file).
REPLAY_ROWS = ROUND_ROWS


class Replay:
    """Rows ``0 ..`` of one resumed file, read again (see the module notes)."""

    def __init__(self, watched: Watched, counted: int, renderer: PlotRenderer | None) -> None:
        self.path = watched.path
        self.counted = counted
        self.renderer = renderer
        # No read-ahead: each read is bounded by ``chunk_rows``, set just before it.
        self.reader = FileReader(str(self.path), chunk_rows=CHUNK_ROWS, read_ahead=False)
        self._fed: Future | None = None
        if renderer is not None:
            renderer.hold(self.path)

    @property
    def position(self) -> int:
        return self.reader.cursor.rows

    @property
    def feeds_plots(self) -> bool:
        """Whether the live rows reach the renderer through this replay (not directly)."""
        return self.renderer is not None

    def ready(self) -> bool:
        """Whether the renderer has taken the last share (a step would do something)."""
        return self._fed is None or self._fed.done()

    def step(self, detector: DetectorMetrics, live_rows: int) -> bool:
        """Replay about ``REPLAY_ROWS`` more packets; True once the replay is over (caught up
        with ``live_rows``, the rows the live reader has counted, or given up)."""
        if not self.ready():
            return False
        end = self.counted if self.renderer is None else max(live_rows, self.counted)
        share = 0
        try:
            self._bound(end)
            for chunk in self.reader.read_new():
                start = self.position - chunk.rows  # the cursor covers the chunk handed out
                if self.reader.resets or self.position > self._limit(start, end):
                    log.warning("%s: changed while being replayed; its table and plots cover "
                                "only the rows read live", self.path)
                    return True
                if start < self.counted:
                    detector.count_channels(chunk, str(self.path))
                if self.renderer is not None:
                    self.renderer.add_packets(self.path, chunk.packets)
                share += len(chunk.packets)
                if share >= REPLAY_ROWS or self.position >= end:
                    break
                self._bound(end)
        except TransientReadError:
            return False  # caught mid-write: the next round tries again
        except InputError as err:
            log.warning("%s; replay stopped, the table and plots cover the rows read live",
                        err)
            return True
        if self.position < end:
            if self.renderer is not None and share:
                self._fed = self.renderer.render(self.path)  # held: feeds, shows nothing
            return False
        return True

    def _limit(self, position: int, end: int) -> int:
        """A read never crosses ``counted`` (the table's rows end there) nor ``end``."""
        return self.counted if position < self.counted else end

    def _bound(self, end: int) -> None:
        self.reader.chunk_rows = max(1, min(CHUNK_ROWS, self._limit(self.position, end)
                                            - self.position))

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.release(self.path)


class Replays:
    """Starts, steps and ends the replays of the ingest loop's files."""

    def __init__(self, detector: DetectorMetrics, renderer: PlotRenderer | None) -> None:
        self.detector = detector
        self.renderer = renderer

    def begin(self, watched: Watched) -> None:
        """Replay a resumed file, once, when its table and plots turn out to be used again."""
        counted, watched.resumed = watched.resumed, None
        if not counted:
            return
        watched.replay = Replay(watched, counted, self.renderer)
        log.info("%s: replaying rows 0-%d for its channel table%s", watched.path, counted,
                 "" if self.renderer is None else " and plots")

    def refill(self, watched: Watched) -> None:
        """Count a file's rows so far into the per-channel table it was just given (it waited
        for one); its plots have them already."""
        assert watched.reader is not None
        counted = watched.reader.cursor.rows
        if not counted:
            return
        watched.replay = Replay(watched, counted, None)
        log.info("%s: a per-channel table is free; counting rows 0-%d into it", watched.path,
                 counted)

    def step(self, files: Iterable[Watched], stopping: Callable[[], bool]) -> None:
        for watched in files:
            if stopping():
                return
            if watched.replay is None or watched.reader is None:
                continue
            if watched.replay.step(self.detector, watched.reader.cursor.rows):
                log.info("%s: replay done (%d rows)", watched.path, watched.replay.position)
                if watched.replay.feeds_plots:
                    watched.dirty = True  # the figures of the whole file, at the next render
                self.end(watched)

    def end(self, watched: Watched) -> None:
        """Stop replaying (done, or the file is gone or read again from its start)."""
        if watched.replay is not None:
            watched.replay.close()
            watched.replay = None

    @staticmethod
    def ready(files: Iterable[Watched]) -> bool:
        """Whether a replay could step now (the ingest loop should not wait for events)."""
        return any(w.replay is not None and w.replay.ready() for w in files)
