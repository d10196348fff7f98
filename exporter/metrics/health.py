"""The monitor's own health: what it read, what failed, how long plots take."""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from exporter import __version__
from exporter.metrics.checkpoint import GatedVersion, State, keyed, section, unkeyed

#: Upper bounds (seconds) of the plot render-time histogram.
RENDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class RenderTimes:
    """Histogram of one plot's render times; ``counts`` has one extra +Inf bucket."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(RENDER_BUCKETS) + 1))
    total: float = 0.0


@dataclass(frozen=True)
class HealthSnapshot:
    version: str
    files: dict[str, int]
    rows: dict[str, int]
    bytes_read: int
    read_errors: dict[str, int]
    read_retries: dict[str, int]
    resets: int
    ingest_lag: float | None
    last_ingest: float | None
    render: dict[str, RenderTimes]
    plot_errors: dict[str, int]
    plot_rows_skipped: int


class MonitorHealth(GatedVersion):
    """Thread-safe tallies of the ingest loop and the renderer.

    Gated (the service), scrapes see the snapshot taken by the last
    ``checkpoint()``, once ``publish()`` says that checkpoint is on disk: the
    renderer counts at any moment, and its counts too must never go back.
    """

    def __init__(self, version: str = __version__, gated: bool = False) -> None:
        self._lock = threading.Lock()
        self._build_version = version
        self.gated = gated
        self._changes = 0
        self._checkpointed: tuple[int, HealthSnapshot] | None = None
        self._published: tuple[int, HealthSnapshot] | None = None
        self._files: dict[str, int] = {}
        self._rows: Counter[str] = Counter({"packet": 0, "raw": 0})  # 0 from the start
        self._bytes = 0
        self._read_errors: Counter[str] = Counter()
        self._read_retries: Counter[str] = Counter()
        self._resets = 0
        self._ingest_lag: float | None = None
        self._last_ingest: float | None = None
        self._render: dict[str, RenderTimes] = {}
        self._plot_errors: Counter[str] = Counter()
        self._plot_rows_skipped = 0

    def checkpoint(self) -> State:
        """The counters, from the snapshot the next ``publish()`` will show."""
        with self._lock:
            snap = self._take_snapshot()
            self._checkpointed = (self._changes, snap)
        state = {"bytes": np.array([snap.bytes_read], np.int64),
                 "resets": np.array([snap.resets], np.int64),
                 "plot_rows_skipped": np.array([snap.plot_rows_skipped], np.int64)}
        parts = {"rows": snap.rows, "read_errors": snap.read_errors,
                 "read_retries": snap.read_retries, "plot_errors": snap.plot_errors,
                 "render_total": {p: t.total for p, t in snap.render.items()}}
        for name, counts in parts.items():
            state.update({f"{name}.{k}": v for k, v in keyed(counts).items()})
        plots = sorted(snap.render)
        state["render.keys"] = np.array(plots, dtype=np.str_)
        state["render.counts"] = np.array([snap.render[p].counts for p in plots], np.int64
                                          ).reshape(len(plots), len(RENDER_BUCKETS) + 1)
        return state

    def restore(self, state: State) -> None:
        totals = unkeyed(section(state, "render_total"))
        render = {str(p): RenderTimes([int(c) for c in counts], totals.get(str(p), 0.0))
                  for p, counts in zip(state["render.keys"], state["render.counts"], strict=True)}
        with self._lock:
            self._bytes = int(state["bytes"][0])
            self._resets = int(state["resets"][0])
            self._plot_rows_skipped = int(state.get("plot_rows_skipped", [0])[0])
            for name in ("rows", "read_errors", "read_retries", "plot_errors"):
                counts = Counter({k: int(v) for k, v in unkeyed(section(state, name)).items()})
                setattr(self, "_" + name, counts)
            self._render = render
            self._changes += 1

    def publish(self) -> None:
        """Let scrapes see the last checkpoint (gated mode)."""
        with self._lock:
            if self._checkpointed is not None:
                self._published = self._checkpointed

    def count_retry(self, reason: str) -> None:
        """A read that failed for a passing reason (file busy) and will be tried again."""
        with self._lock:
            self._read_retries[reason] += 1
            self._changes += 1

    def count_plot_rows_skipped(self, rows: int) -> None:
        """Rows the plots never saw: their renders fell behind ingest (see PlotRenderer)."""
        with self._lock:
            self._plot_rows_skipped += rows
            self._changes += 1

    def count_rows(self, fmt: str, rows: int, nbytes: int) -> None:
        with self._lock:
            self._rows[fmt] += rows
            self._bytes += nbytes
            self._changes += 1

    def count_read_error(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._read_errors[reason] += n
            self._changes += 1

    def count_reset(self) -> None:
        with self._lock:
            self._resets += 1
            self._changes += 1

    def set_files(self, counts: dict[str, int]) -> None:
        """Number of files in each state (replaces the previous counts)."""
        with self._lock:
            if counts != self._files:
                self._files = dict(counts)
                self._changes += 1

    def mark_ingest(self, now: float) -> None:
        """New rows were counted at unix time ``now``."""
        with self._lock:
            self._last_ingest = now
            self._changes += 1

    def set_ingest_lag(self, seconds: float) -> None:
        """How long the oldest rows not yet counted have waited (0: caught up)."""
        with self._lock:
            if seconds != self._ingest_lag:
                self._ingest_lag = seconds
                self._changes += 1

    def observe_render(self, plot: str, seconds: float) -> None:
        with self._lock:
            times = self._render.setdefault(plot, RenderTimes())
            times.counts[bisect.bisect_left(RENDER_BUCKETS, seconds)] += 1
            times.total += seconds
            self._changes += 1

    def count_plot_error(self, plot: str) -> None:
        with self._lock:
            self._plot_errors[plot] += 1
            self._changes += 1

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            if not self.gated:
                return self._take_snapshot()
            if self._published is None:
                self._published = (-1, self._take_snapshot())
            return self._published[1]

    def _take_snapshot(self) -> HealthSnapshot:
        return HealthSnapshot(
            version=self._build_version, files=dict(self._files), rows=dict(self._rows),
            bytes_read=self._bytes, read_errors=dict(self._read_errors),
            read_retries=dict(self._read_retries), resets=self._resets,
            ingest_lag=self._ingest_lag, last_ingest=self._last_ingest,
            render={p: RenderTimes(list(t.counts), t.total) for p, t in self._render.items()},
            plot_errors=dict(self._plot_errors), plot_rows_skipped=self._plot_rows_skipped)
