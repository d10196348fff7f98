"""The service's quality thread: grades the files whose per-channel tables the detector
keeps (those that received data last: the run in progress, with the file before it when
the DAQ rotated files or io_groups write apart), again and again, off the ingest and
request paths.

An evaluation reads the per-channel table with its ADC histograms (at 2x2
scale a few hundred MB of arithmetic), so it runs on its own thread: after new
rows once the counts have rested for ``SETTLE_SECONDS`` (or every ``IDLE_SECONDS``
while rows keep coming), and every ``IDLE_SECONDS`` without them (staleness grows
while nothing arrives); never more often than every ``interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time

from exporter.metrics import DetectorMetrics
from exporter.quality.monitor import QualityMonitor
from exporter.quality.runs import combine

log = logging.getLogger(__name__)

#: Longest wait for an evaluation in hand when the service stops.
STOP_WAIT_SECONDS = 2.0
#: Seconds between evaluations when no new rows arrived.
IDLE_SECONDS = 30.0
#: New rows are graded once the counts have rested this long (a burst of ingest is not
#: slowed by the checks), or after IDLE_SECONDS while rows keep coming.
SETTLE_SECONDS = 1.0
#: After an evaluation that took t seconds, the next waits at least this many times t:
#: the checks take at most a fifth of a core from ingest and scrapes.
BACKOFF = 4.0


class QualityLoop:
    def __init__(self, monitor: QualityMonitor, detector: DetectorMetrics,
                 interval: float = 5.0) -> None:
        self.monitor = monitor
        self.detector = detector
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quality", daemon=True)
        self._evaluated: tuple[int, float] = (-1, 0.0)
        self._not_before = 0.0
        self._seen: tuple[int, float] = (-1, 0.0)   # latest version and when it appeared

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the evaluation in hand, waiting at most a few seconds: grades are not
        saved, so a stop signal need not wait for one to finish."""
        self._stop.set()
        self._thread.join(timeout=STOP_WAIT_SECONDS)

    def step(self) -> bool:
        """Evaluate now if there is something new (or it is time to); True if it did."""
        version, now = self.detector.version, time.monotonic()
        if version != self._seen[0]:
            self._seen = (version, now)
        last_version, last_time = self._evaluated
        due = now - last_time >= IDLE_SECONDS or (
            version != last_version and now - self._seen[1] >= SETTLE_SECONDS)
        if now < self._not_before or not due:
            return False
        sources = list(reversed(self.detector.channels.sources()))   # oldest first
        tables = [t for t in (self.detector.channel_table(s, histograms=True) for s in sources)
                  if t is not None]
        if not tables:
            return False
        spans = [span for span in map(self.detector.data_span, sources) if span is not None]
        first = {g: min(s[0] for s in spans) for g in range(256)} if spans else None
        self.monitor.evaluate(combine(tables, self.detector.hot_rate), sources,
                              self.detector.snapshot(), live=True, first_times=first)
        self._evaluated = (version, now)
        self._not_before = time.monotonic() + BACKOFF * (time.monotonic() - now)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception:  # a failed evaluation must not end the checks for good
                log.exception("quality evaluation failed")
