"""Prometheus exposition of the metric model: one custom Collector over snapshots.

A scrape takes one snapshot of the detector and one of the monitor's health,
each under its own lock, so it never sees half an update. The families built
from each snapshot, and their text, are reused until it changes; after new
rows, the ingest loop has the detector's built ahead of the next scrape.

At 2x2 scale there are ~10^4 series; prometheus_client's generic encoders
spend ~10 us on each, so ``exposition()`` renders the same bytes (Prometheus
text or OpenMetrics, as negotiated) from pre-sorted label tuples instead.
Prometheus asks for gzip: the 4.9 MB of a 2x2 exposition go out as ~0.46 MB.
Each part is deflated once, the detector's ahead of the scrape with its text,
into raw deflate blocks that end on a byte boundary; a scrape joins them into
one gzip member (RFC 1952), so a change of the monitor's own few lines does
not compress the detector's 4.9 MB again.
"""

from __future__ import annotations

import gc
import math
import struct
import threading
import time
import zlib
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
           "MonitorRegistry", "build_registry", "exposition", "gzip_accepted"]

#: zlib level of gzipped scrapes: level 6 saves another 20% of the bytes at 3.5x the time.
GZIP_LEVEL = 1
#: A gzip member's header: deflate, no name, no modification time, OS unknown.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_OPENMETRICS_END = b"# EOF\n"

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
    deflated: dict[bool, bytes] = field(default_factory=dict)

    def exposition(self, openmetrics: bool) -> bytes:
        if openmetrics not in self.text:
            header = _openmetrics_header if openmetrics else _text_header
            self.text[openmetrics] = "".join(
                header(f) + lines for f, lines in zip(self.families, self.lines, strict=True)
            ).encode()
        return self.text[openmetrics]

    def deflate(self, openmetrics: bool) -> bytes:
        if openmetrics not in self.deflated:
            self.deflated[openmetrics] = _deflated(self.exposition(openmetrics))
        return self.deflated[openmetrics]


def _deflated(text: bytes) -> bytes:
    """``text`` as raw deflate blocks ending on a byte boundary (a sync flush): such pieces,
    joined and closed by an empty final block, are one deflate stream."""
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)


_OPENMETRICS_END_DEFLATED = _deflated(_OPENMETRICS_END)
_FINAL_BLOCK = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush()


def _gzip_member(texts: list[bytes], pieces: list[bytes]) -> bytes:
    """One gzip member of ``texts``, joined, from their ``_deflated`` pieces."""
    crc = 0
    for text in texts:
        crc = zlib.crc32(text, crc)
    size = sum(len(text) for text in texts)
    return b"".join([_GZIP_HEADER, *pieces, _FINAL_BLOCK,
                     struct.pack("<II", crc, size & 0xFFFF_FFFF)])


def _part(version: int, build: Callable[[], list[Family]]) -> _Part:
    """The families ``build`` makes, and their sample lines, built with Python's cycle
    collector paused: at 2x2 scale a build makes ~10^5 tuples and strings that live until
    the next build, in no cycle (reference counts free them). With the collector on, they
    set off one or two full collections a build (25-110 ms each, paid by whichever thread
    allocates next: a scrape, an /api/channels request) and double the build's time."""
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
        self._last_format = (False, False)  # (openmetrics, gzipped) of the last scrape

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        parts = self._current()
        yield from (family.metric() for part in parts for family in part.families)

    def exposition(self, openmetrics: bool = False, gzipped: bool = False) -> bytes:
        """The whole exposition, identical to prometheus_client's encoders' output; gzipped,
        one gzip member of it."""
        self._last_scrape = time.monotonic()
        self._last_format = (openmetrics, gzipped)
        parts = self._current()
        texts = [part.exposition(openmetrics) for part in parts]
        if openmetrics:
            texts.append(_OPENMETRICS_END)
        if not gzipped:
            return b"".join(texts)
        pieces = [part.deflate(openmetrics) for part in parts]
        if openmetrics:
            pieces.append(_OPENMETRICS_END_DEFLATED)
        return _gzip_member(texts, pieces)

    def prepare(self) -> None:
        """Build the detector's families now, if something scraped in the last
        ``PREPARE_AFTER_SCRAPE_SECONDS``: called after new rows were counted, so that the
        next scrape finds them ready (as text, and deflated if the last scrape was gzipped)
        instead of building them while Prometheus waits."""
        if time.monotonic() - self._last_scrape <= PREPARE_AFTER_SCRAPE_SECONDS:
            with self._lock:
                part = self._detector_current()
            openmetrics, gzipped = self._last_format  # as the next scrape will likely ask
            part.exposition(openmetrics)
            if gzipped:
                part.deflate(openmetrics)

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


def exposition(registry: CollectorRegistry, accept: str | None = None,
               gzipped: bool = False) -> tuple[bytes, str]:
    """(body, content type) for an HTTP ``Accept`` header, like prometheus_client negotiates;
    the body gzip-compressed if ``gzipped``."""
    encoder, content_type = choose_encoder(accept or "")
    openmetrics = content_type.startswith("application/openmetrics-text")
    if isinstance(registry, MonitorRegistry):
        return registry.collector.exposition(openmetrics, gzipped), content_type
    body = encoder(registry)
    return (_gzip_member([body], [_deflated(body)]) if gzipped else body), content_type


def gzip_accepted(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (``gzip;q=0`` refuses it)."""
    for coding in (accept_encoding or "").split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            weight = params.strip().lower().removeprefix("q=")
            return not params.strip() or weight.strip("0. ") != ""
    return False
