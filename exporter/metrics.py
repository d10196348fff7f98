"""Prometheus exposition of the metric model: one custom Collector over snapshots.

A scrape takes one snapshot of the detector and one of the monitor's health,
each under its own lock, so it never sees half an update. The metric families
built from a snapshot pair are reused until either changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from exporter.metrics_detector import ADC_VALUES, TYPE_LABELS, DetectorMetrics, DetectorSnapshot
from exporter.metrics_health import RENDER_BUCKETS, HealthSnapshot, MonitorHealth
from exporter.metrics_rows import DELAY_EDGES
from exporter.packets import DATA, PARITY_TYPES, sync_type_label

__all__ = ["DetectorMetrics", "MonitorHealth", "MetricsCollector", "build_registry",
           "ADC_EDGES", "DELAY_EDGES"]

#: ADC histogram upper bounds: 32 buckets of 8 values, halfway between integers.
ADC_BUCKET_WIDTH = 8
ADC_EDGES = tuple(v + ADC_BUCKET_WIDTH - 0.5 for v in range(0, ADC_VALUES, ADC_BUCKET_WIDTH))

#: (fifo, level, bit) of the 4-bit fifo code: local bits 0-1, shared bits 2-3.
FIFO_FLAGS = (("local", "half", 1), ("local", "full", 2),
              ("shared", "half", 4), ("shared", "full", 8))

_DEC = tuple(str(i) for i in range(256))
_INF = "+Inf"


class MetricsCollector(Collector):
    """Yields every ``larpix_*`` and ``larpix_monitor_*`` family from a snapshot."""

    def __init__(self, detector: DetectorMetrics, health: MonitorHealth) -> None:
        self._detector = detector
        self._health = health
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int], list[Metric]] | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        versions = (self._detector.version, self._health.version)
        with self._lock:
            if self._cached is None or self._cached[0] != versions:
                families = (detector_families(self._detector.snapshot())
                            + health_families(self._health.snapshot()))
                self._cached = (versions, families)
            families = self._cached[1]
        yield from families


def build_registry(detector: DetectorMetrics, health: MonitorHealth) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(detector, health))
    return registry


def detector_families(snap: DetectorSnapshot) -> list[Metric]:
    channel_pairs, pair_of_slot = np.unique(
        snap.chip_group[1:] | snap.chip_channel[1:] << 8, return_inverse=True)
    pair_labels = [(_DEC[k & 0xFF], _DEC[k >> 8]) for k in channel_pairs.tolist()]

    def per_pair(values: np.ndarray) -> np.ndarray:
        """Sum per-chip-slot rows over chips: one row per (io_group, io_channel)."""
        out = np.zeros((len(channel_pairs), *values.shape[1:]), np.int64)
        np.add.at(out, pair_of_slot, values[1:])
        return out

    pair_packets = per_pair(snap.packets)
    families = [
        _packets_family(pair_labels, pair_packets),
        _data_packets_family(snap),
        _parity_family(pair_labels, pair_packets, per_pair(snap.parity_errors)),
        _fifo_family(pair_labels, pair_packets, per_pair(snap.fifo)),
        _adc_family(snap),
        _group_code_counter("larpix_sync_packets", "Sync packets read, by sync type.",
                            "sync_type", snap.sync, sync_type_label),
        *_sync_time_families(snap),
        _delay_family(snap),
        _group_code_counter("larpix_trigger_packets", "Trigger packets read, by trigger type.",
                            "trigger_type", snap.trigger, str),
        *_window_families(snap),
    ]
    return families


def _packets_family(pair_labels: list[tuple[str, str]], pair_packets: np.ndarray) -> Metric:
    family = CounterMetricFamily("larpix_packets", "Packets read.",
                                 labels=["io_group", "io_channel", "packet_type"])
    for (pair, code), value in _nonzero(pair_packets):
        family.add_metric([*pair_labels[pair], TYPE_LABELS[code]], value)
    return family


def _data_packets_family(snap: DetectorSnapshot) -> Metric:
    family = CounterMetricFamily("larpix_data_packets", "Data packets read, per chip.",
                                 labels=["io_group", "io_channel", "chip_id"])
    data = snap.packets[:, DATA]
    for slot in np.flatnonzero(data).tolist():
        family.add_metric([_DEC[snap.chip_group[slot]], _DEC[snap.chip_channel[slot]],
                           _DEC[snap.chip_id[slot]]], int(data[slot]))
    return family


def _parity_family(pair_labels: list[tuple[str, str]], pair_packets: np.ndarray,
                   pair_errors: np.ndarray) -> Metric:
    family = CounterMetricFamily(
        "larpix_parity_errors", "Packets of types 0-3 (LArPix words) with valid_parity == 0.",
        labels=["io_group", "io_channel"])
    words = pair_packets[:, PARITY_TYPES].sum(axis=1)
    errors = pair_errors[:, PARITY_TYPES].sum(axis=1)
    for pair in np.flatnonzero(words).tolist():
        family.add_metric(list(pair_labels[pair]), int(errors[pair]))
    return family


def _fifo_family(pair_labels: list[tuple[str, str]], pair_packets: np.ndarray,
                 pair_fifo: np.ndarray) -> Metric:
    family = CounterMetricFamily(
        "larpix_fifo_flags",
        "Data packets with a FIFO flag: bit 0 more than half full, bit 1 full.",
        labels=["io_group", "io_channel", "fifo", "level"])
    codes = np.arange(pair_fifo.shape[1])
    for fifo, level, bit in FIFO_FLAGS:
        flagged = pair_fifo[:, (codes & bit) > 0].sum(axis=1)
        for pair in np.flatnonzero(pair_packets[:, DATA]).tolist():
            family.add_metric([*pair_labels[pair], fifo, level], int(flagged[pair]))
    return family


def _adc_family(snap: DetectorSnapshot) -> Metric:
    family = HistogramMetricFamily("larpix_adc", "Dataword (ADC) of data packets.",
                                   labels=["io_group"])
    per_bucket = snap.adc.reshape(len(snap.adc), -1, ADC_BUCKET_WIDTH).sum(axis=2)
    sums = snap.adc @ np.arange(ADC_VALUES)
    for group in np.flatnonzero(snap.adc.sum(axis=1)).tolist():
        family.add_metric([_DEC[group]], _buckets(ADC_EDGES, per_bucket[group]),
                          int(sums[group]))
    return family


def _delay_family(snap: DetectorSnapshot) -> Metric:
    family = HistogramMetricFamily(
        "larpix_readout_delay_ticks",
        "receipt_timestamp mod 2^31 - timestamp of data packets, in clock ticks.",
        labels=["io_group"])
    for group in np.flatnonzero(snap.delay.sum(axis=1)).tolist():
        family.add_metric([_DEC[group]], _buckets(DELAY_EDGES, snap.delay[group]),
                          int(snap.delay_sum[group]))
    return family


def _buckets(edges: tuple[float, ...], counts: np.ndarray) -> list[tuple[str, int]]:
    """Cumulative (le, count) pairs; ``counts`` has one bucket per edge, then overflow."""
    cumulative = np.cumsum(counts).tolist()
    labels = [floatToGoString(edge) for edge in edges]
    pairs = list(zip(labels, cumulative[:len(edges)], strict=True))
    return [*pairs, (_INF, cumulative[-1])]


def _group_code_counter(name: str, doc: str, label: str, counts: np.ndarray,
                        code_label) -> Metric:
    family = CounterMetricFamily(name, doc, labels=["io_group", label])
    for (group, code), value in _nonzero(counts):
        family.add_metric([_DEC[group], code_label(code)], value)
    return family


def _sync_time_families(snap: DetectorSnapshot) -> list[Metric]:
    offset = GaugeMetricFamily("larpix_sync_offset_ticks",
                               "Last 'S' sync timestamp minus 10,000,000.", labels=["io_group"])
    for group in np.flatnonzero(snap.has_sync_offset).tolist():
        offset.add_metric([_DEC[group]], int(snap.sync_offset[group]))
    timed = np.flatnonzero(snap.window.has_window).tolist()
    gaps = CounterMetricFamily("larpix_sync_gaps",
                               "Seconds of data time that passed without an 'S' sync.",
                               labels=["io_group"])
    stamp = GaugeMetricFamily("larpix_data_timestamp_seconds",
                              "Latest unix time seen in timestamp packets.", labels=["io_group"])
    for group in timed:
        gaps.add_metric([_DEC[group]], int(snap.sync_gaps[group]))
        stamp.add_metric([_DEC[group]], int(snap.data_timestamp[group]))
    return [offset, gaps, stamp]


def _window_families(snap: DetectorSnapshot) -> list[Metric]:
    window = snap.window
    rate = GaugeMetricFamily("larpix_packet_rate_hz",
                             "Packets per second over the last rate-window seconds of data time.",
                             labels=["io_group", "packet_type"])
    active = GaugeMetricFamily("larpix_active_channels",
                               "Channels with data packets in the rate window.",
                               labels=["io_group"])
    hot = GaugeMetricFamily("larpix_hot_channels",
                            "Channels above the hot rate in the rate window.",
                            labels=["io_group"])
    for group in np.flatnonzero(window.has_window).tolist():
        for code, label in enumerate(TYPE_LABELS):
            if code < len(TYPE_LABELS) - 1 or window.rate_hz[group, code]:
                rate.add_metric([_DEC[group], label], float(window.rate_hz[group, code]))
        active.add_metric([_DEC[group]], int(window.active[group]))
        hot.add_metric([_DEC[group]], int(window.hot[group]))
    return [rate, active, hot]


def _nonzero(counts: np.ndarray) -> Iterator[tuple[tuple[int, ...], int]]:
    index = np.nonzero(counts)
    values = counts[index].tolist()
    return zip(zip(*(i.tolist() for i in index), strict=True), values, strict=True)


def health_families(snap: HealthSnapshot) -> list[Metric]:
    files = GaugeMetricFamily("larpix_monitor_files", "Files known, by state.", labels=["state"])
    for state, n in sorted(snap.files.items()):
        files.add_metric([state], n)
    rows = CounterMetricFamily("larpix_monitor_rows_read",
                               "Dataset rows read: packets or raw messages.", labels=["format"])
    for fmt, n in sorted(snap.rows.items()):
        rows.add_metric([fmt], n)
    errors = CounterMetricFamily("larpix_monitor_read_errors", "Unusable input, by reason.",
                                 labels=["reason"])
    for reason, n in sorted(snap.read_errors.items()):
        errors.add_metric([reason], n)
    render = HistogramMetricFamily("larpix_monitor_plot_render_seconds",
                                   "Time one plot took to draw and write.", labels=["plot"])
    for plot, times in sorted(snap.render.items()):
        render.add_metric([plot], _buckets(RENDER_BUCKETS, np.array(times.counts)), times.total)
    plot_errors = CounterMetricFamily("larpix_monitor_plot_errors",
                                      "Plot plugin calls that raised.", labels=["plot"])
    for plot, n in sorted(snap.plot_errors.items()):
        plot_errors.add_metric([plot], n)
    build = GaugeMetricFamily("larpix_monitor_build_info", "Version of the monitor (always 1).",
                              labels=["version"])
    build.add_metric([snap.version], 1)
    families: list[Metric] = [
        files, rows,
        CounterMetricFamily("larpix_monitor_bytes_read", "Bytes of file payload read.",
                            value=snap.bytes_read),
        errors,
        CounterMetricFamily("larpix_monitor_file_resets",
                            "Files that shrank or were replaced, read again from the start.",
                            value=snap.resets),
    ]
    if snap.ingest_lag is not None:
        families.append(GaugeMetricFamily(
            "larpix_monitor_ingest_lag_seconds",
            "Time from a file's last change to its rows being counted.", value=snap.ingest_lag))
    if snap.last_ingest is not None:
        families.append(GaugeMetricFamily(
            "larpix_monitor_last_ingest_timestamp_seconds",
            "Unix time of the last ingest of new rows.", value=snap.last_ingest))
    return [*families, render, plot_errors, build]
