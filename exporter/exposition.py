"""Prometheus text and OpenMetrics exposition, byte for byte as prometheus_client writes it,
only faster for the families the monitor exports.

prometheus_client formats every sample from scratch: it sorts and escapes the
labels on each scrape. At 2x2 scale (some 9,000 series) that is most of a
scrape. The label part of a series never changes, so it is kept between
scrapes, keyed by sample name and labels, and a fresh exposition costs one
string join per sample. Anything outside the plain case (exemplars,
timestamps, units, ``_created`` samples, other metric types, escaping schemes
other than the default) goes to prometheus_client's own encoder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from prometheus_client.validation import _is_valid_legacy_labelname

PLAIN_TYPES = frozenset({"counter", "gauge", "histogram"})
#: Remembered label parts; past this many (series churn) the memory starts over.
MAX_REMEMBERED = 200_000
TEXT, OPENMETRICS = "text", "openmetrics"


class _Families:
    """Already collected families, shaped like a registry for the reference encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _format_of(content_type: str) -> str | None:
    """The fast format for a negotiated content type, None when only the reference will do."""
    parts = [p.strip() for p in content_type.split(";")]
    params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    if params.get("escaping", "underscores") != "underscores":
        return None
    if parts[0] == "application/openmetrics-text":
        return OPENMETRICS
    if parts[0] == "text/plain" and params.get("version") == "0.0.4":
        return TEXT
    return None


def _plain(family: Metric) -> bool:
    """Names that no escaping scheme changes (label-name rules: no colons), nothing special."""
    if family.type not in PLAIN_TYPES or family.unit:
        return False
    names = {family.name}
    created = family.name + "_created"
    for s in family.samples:
        if (s.timestamp is not None or s.exemplar is not None or s.native_histogram is not None
                or s.name == created):
            return False
        names.add(s.name)
        names.update(s.labels)
    return all(_is_valid_legacy_labelname(name) for name in names)


class Exposition:
    """Encodes a registry for one scrape's Accept header; safe to share between threads."""

    def __init__(self) -> None:
        self._prefixes: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def encode(self, registry: Collector, accept: str | None) -> tuple[bytes, str]:
        reference, content_type = choose_encoder(accept or "")
        families = list(registry.collect())
        fmt = _format_of(content_type)
        if fmt is None or not all(_plain(f) for f in families):
            return reference(_Families(families)), content_type
        with self._lock:
            if len(self._prefixes) > MAX_REMEMBERED:
                self._prefixes.clear()
            return self._encode(families, fmt), content_type

    def _encode(self, families: list[Metric], fmt: str) -> bytes:
        out: list[str] = []
        for family in families:
            if fmt == TEXT:
                name = family.name + "_total" if family.type == "counter" else family.name
                doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
            else:
                name, doc = family.name, _escape_value(family.documentation)
            out.append(f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n")
            out.extend(self._prefix(s) + floatToGoString(s.value) + "\n"
                       for s in family.samples)
        if fmt == OPENMETRICS:
            out.append("# EOF\n")
        return "".join(out).encode("utf-8")

    def _prefix(self, sample: Sample) -> str:
        key = (sample.name, tuple(sample.labels.items()))
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = _series_prefix(sample)
        return prefix


def _series_prefix(sample: Sample) -> str:
    if not sample.labels:
        return f"{sample.name} "
    labels = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}} "
