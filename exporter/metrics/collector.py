"""Prometheus exposition of the metric model: one custom Collector over snapshots.

A scrape takes one snapshot of the detector and one of the monitor's health,
each under its own lock, so it never sees half an update. The families built
from each snapshot, and their text, are reused until it changes; after new
rows, the ingest loop has the detector's built ahead of the next scrape.

At 2x2 scale there are ~10^4 series; prometheus_client's generic encoders
spend ~10 us on each, so ``exposition()`` renders the same bytes (Prometheus
text or OpenMetrics, as negotiated) from pre-sorted label tuples instead.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.metrics.detector import DetectorMetrics
from exporter.metrics.families import Family, detector_families, escape, health_families
from exporter.metrics.health import MonitorHealth

__all__ = ["DetectorMetrics", "FamilySource", "MonitorHealth", "MetricsCollector",
           "MonitorRegistry", "build_registry", "exposition"]

#: How long after a scrape ``MetricsCollector.prepare`` keeps building ahead of the next
#: one (Prometheus scrapes every 1-60 s; nobody scraping, nothing is built in advance).
PREPARE_AFTER_SCRAPE_SECONDS = 120.0


def _text_header(family: Family) -> str:
    name = family.name + "_total" if family.kind == "counter" else family.name
    doc = family.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {family.kind}\n"


def _openmetrics_header(family: Family) -> str:
    return f"# HELP {family.name} {escape(family.help)}\n# TYPE {family.name} {family.kind}\n"


@dataclass
class _Part:
    """The families of one snapshot source and their text, valid while its version holds."""

    version: int
    families: list[Family]
    lines: list[str]
    text: dict[bool, bytes] = field(default_factory=dict)

    def exposition(self, openmetrics: bool) -> bytes:
        if openmetrics not in self.text:
            header = _openmetrics_header if openmetrics else _text_header
            self.text[openmetrics] = "".join(
                header(f) + lines for f, lines in zip(self.families, self.lines, strict=True)
            ).encode()
        return self.text[openmetrics]


def _part(version: int, build: Callable[[], list[Family]]) -> _Part:
    """The families ``build`` makes, and their sample lines, built with Python's cycle
    collector paused: at 2x2 scale a build makes ~10^5 tuples and strings that live until
    the next build, in no cycle (reference counts free them). With the collector on, they
    set off one or two full collections a build (25-110 ms each) and double its time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        families = build()
        return _Part(version, families, [f.sample_lines() for f in families])
    finally:
        if enabled:
            gc.enable()


class FamilySource(Protocol):
    """Families made downstream of the metrics (the quality checks' results), rendered
    after the detector's; ``version`` changes whenever ``families()`` would."""

    @property
    def version(self) -> int: ...

    def families(self) -> list[Family]: ...


class MetricsCollector(Collector):
    """Yields every ``larpix_*`` and ``larpix_monitor_*`` family from a snapshot.

    The detector's families (~10^4 series at 2x2 scale) and the monitor's own
    (a few dozen, changed by every render) are cached apart, so that a change
    of one does not rebuild the other.
    """

    def __init__(self, detector: DetectorMetrics, health: MonitorHealth,
                 sources: Sequence[FamilySource] = ()) -> None:
        self._detector = detector
        self._health = health
        self._sources = list(sources)
        self._lock = threading.Lock()
        self._detector_part: _Part | None = None
        self._health_part: _Part | None = None
        self._source_parts: list[_Part | None] = [None] * len(self._sources)
        self._last_scrape = -math.inf

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        parts = self._current()
        yield from (family.metric() for part in parts for family in part.families)

    def exposition(self, openmetrics: bool = False) -> bytes:
        """The whole exposition, identical to prometheus_client's encoders' output."""
        self._last_scrape = time.monotonic()
        parts = self._current()
        return b"".join([*(part.exposition(openmetrics) for part in parts),
                         b"# EOF\n" if openmetrics else b""])

    def prepare(self) -> None:
        """Build the detector's families now, if something scraped in the last
        ``PREPARE_AFTER_SCRAPE_SECONDS``: called after new rows were counted, so that the
        next scrape finds them ready instead of building them while Prometheus waits."""
        if time.monotonic() - self._last_scrape <= PREPARE_AFTER_SCRAPE_SECONDS:
            with self._lock:
                self._detector_current()

    def _current(self) -> list[_Part]:
        """The detector's part, the sources' parts, the monitor's own part."""
        with self._lock:
            version = self._health.version
            if self._health_part is None or self._health_part.version != version:
                self._health_part = _part(version, lambda: health_families(self._health.snapshot()))
            for i, source in enumerate(self._sources):
                part, version = self._source_parts[i], source.version
                if part is None or part.version != version:
                    self._source_parts[i] = _part(version, source.families)
            return [self._detector_current(), *self._source_parts, self._health_part]

    def _detector_current(self) -> _Part:
        version = self._detector.version
        if self._detector_part is None or self._detector_part.version != version:
            self._detector_part = _part(
                version, lambda: detector_families(self._detector.snapshot()))
        return self._detector_part


class MonitorRegistry(CollectorRegistry):
    """A registry holding the monitor's collector, which can render itself fast."""

    def __init__(self, collector: MetricsCollector) -> None:
        super().__init__(auto_describe=False)
        self.collector = collector
        self.register(collector)


def build_registry(detector: DetectorMetrics, health: MonitorHealth,
                   sources: Sequence[FamilySource] = ()) -> MonitorRegistry:
    return MonitorRegistry(MetricsCollector(detector, health, sources))


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """(body, content type) for an HTTP ``Accept`` header, like prometheus_client negotiates."""
    encoder, content_type = choose_encoder(accept or "")
    openmetrics = content_type.startswith("application/openmetrics-text")
    if isinstance(registry, MonitorRegistry):
        return registry.collector.exposition(openmetrics), content_type
    return encoder(registry), content_type
