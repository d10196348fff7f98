"""Prometheus exposition of the metric model: one custom Collector over snapshots.

A scrape takes one snapshot of the detector and one of the monitor's health,
each under its own lock, so it never sees half an update. The families built
from a snapshot pair, and their text, are reused until either changes.

At 2x2 scale there are ~10^4 series; prometheus_client's generic encoders
spend ~10 us on each, so ``exposition()`` renders the same bytes (Prometheus
text or OpenMetrics, as negotiated) from pre-sorted label tuples instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.metrics_detector import DetectorMetrics
from exporter.metrics_families import Family, detector_families, escape, health_families
from exporter.metrics_health import MonitorHealth

__all__ = ["DetectorMetrics", "MonitorHealth", "MetricsCollector", "MonitorRegistry",
           "build_registry", "exposition"]

def _text_header(family: Family) -> str:
    name = family.name + "_total" if family.kind == "counter" else family.name
    doc = family.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {family.kind}\n"


def _openmetrics_header(family: Family) -> str:
    return f"# HELP {family.name} {escape(family.help)}\n# TYPE {family.name} {family.kind}\n"


@dataclass
class _Rendered:
    versions: tuple[int, int]
    families: list[Family]
    lines: list[str]
    text: dict[bool, bytes] = field(default_factory=dict)

    def exposition(self, openmetrics: bool) -> bytes:
        if openmetrics not in self.text:
            header = _openmetrics_header if openmetrics else _text_header
            body = "".join(header(f) + lines for f, lines in zip(self.families, self.lines,
                                                                 strict=True))
            self.text[openmetrics] = (body + ("# EOF\n" if openmetrics else "")).encode()
        return self.text[openmetrics]


class MetricsCollector(Collector):
    """Yields every ``larpix_*`` and ``larpix_monitor_*`` family from a snapshot."""

    def __init__(self, detector: DetectorMetrics, health: MonitorHealth) -> None:
        self._detector = detector
        self._health = health
        self._lock = threading.Lock()
        self._rendered: _Rendered | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from (family.metric() for family in self._current().families)

    def exposition(self, openmetrics: bool = False) -> bytes:
        """The whole exposition, identical to prometheus_client's encoders' output."""
        return self._current().exposition(openmetrics)

    def _current(self) -> _Rendered:
        versions = (self._detector.version, self._health.version)
        with self._lock:
            if self._rendered is None or self._rendered.versions != versions:
                families = (detector_families(self._detector.snapshot())
                            + health_families(self._health.snapshot()))
                self._rendered = _Rendered(versions, families,
                                           [f.sample_lines() for f in families])
            return self._rendered


class MonitorRegistry(CollectorRegistry):
    """A registry holding the monitor's collector, which can render itself fast."""

    def __init__(self, collector: MetricsCollector) -> None:
        super().__init__(auto_describe=False)
        self.collector = collector
        self.register(collector)


def build_registry(detector: DetectorMetrics, health: MonitorHealth) -> MonitorRegistry:
    return MonitorRegistry(MetricsCollector(detector, health))


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """(body, content type) for an HTTP ``Accept`` header, like prometheus_client negotiates."""
    encoder, content_type = choose_encoder(accept or "")
    openmetrics = content_type.startswith("application/openmetrics-text")
    if isinstance(registry, MonitorRegistry):
        return registry.collector.exposition(openmetrics), content_type
    return encoder(registry), content_type
