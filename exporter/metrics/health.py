"""The monitor's own health: what it read, what failed, how long plots take."""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field

from exporter import __version__

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
    resets: int
    ingest_lag: float | None
    last_ingest: float | None
    render: dict[str, RenderTimes]
    plot_errors: dict[str, int]


class MonitorHealth:
    """Thread-safe tallies of the ingest loop and the renderer."""

    def __init__(self, version: str = __version__) -> None:
        self._lock = threading.Lock()
        self._build_version = version
        self._generation = 0
        self._files: dict[str, int] = {}
        self._rows: Counter[str] = Counter()
        self._bytes = 0
        self._read_errors: Counter[str] = Counter()
        self._resets = 0
        self._ingest_lag: float | None = None
        self._last_ingest: float | None = None
        self._render: dict[str, RenderTimes] = {}
        self._plot_errors: Counter[str] = Counter()

    @property
    def version(self) -> int:
        """Changes with every change: a cache of the exposition is valid while it holds."""
        return self._generation

    def count_rows(self, fmt: str, rows: int, nbytes: int) -> None:
        with self._lock:
            self._rows[fmt] += rows
            self._bytes += nbytes
            self._generation += 1

    def count_read_error(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._read_errors[reason] += n
            self._generation += 1

    def count_reset(self) -> None:
        with self._lock:
            self._resets += 1
            self._generation += 1

    def set_files(self, counts: dict[str, int]) -> None:
        """Number of files in each state (replaces the previous counts)."""
        with self._lock:
            self._files = dict(counts)
            self._generation += 1

    def mark_ingest(self, lag_seconds: float, now: float) -> None:
        with self._lock:
            self._ingest_lag = lag_seconds
            self._last_ingest = now
            self._generation += 1

    def observe_render(self, plot: str, seconds: float) -> None:
        with self._lock:
            times = self._render.setdefault(plot, RenderTimes())
            times.counts[bisect.bisect_left(RENDER_BUCKETS, seconds)] += 1
            times.total += seconds
            self._generation += 1

    def count_plot_error(self, plot: str) -> None:
        with self._lock:
            self._plot_errors[plot] += 1
            self._generation += 1

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            return HealthSnapshot(
                version=self._build_version, files=dict(self._files), rows=dict(self._rows),
                bytes_read=self._bytes, read_errors=dict(self._read_errors),
                resets=self._resets, ingest_lag=self._ingest_lag,
                last_ingest=self._last_ingest,
                render={p: RenderTimes(list(t.counts), t.total) for p, t in self._render.items()},
                plot_errors=dict(self._plot_errors))
