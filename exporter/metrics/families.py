"""Snapshots -> metric families: the names, labels and help texts of the contract.

Label pairs are written already sorted by label name, the order both
exposition formats print them in, so rendering needs no per-sample sorting.
Label sets change rarely (a new chip, a new io_channel), so their rendered
text is kept between scrapes: a scrape after new rows formats only numbers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter.metrics.chip_families import chip_families
from exporter.metrics.detector import ADC_VALUES, TYPE_LABELS
from exporter.metrics.health import RENDER_BUCKETS, HealthSnapshot
from exporter.metrics.snapshot import DetectorSnapshot
from exporter.packets import DATA, DELAY_EDGES, PARITY_TYPES, sync_type_label

#: Label pairs of one sample, sorted by label name.
Labels = tuple[tuple[str, str], ...]

#: ADC histogram upper bounds: 32 buckets of 8 values, halfway between integers.
ADC_BUCKET_WIDTH = 8
ADC_EDGES = tuple(v + ADC_BUCKET_WIDTH - 0.5 for v in range(0, ADC_VALUES, ADC_BUCKET_WIDTH))

#: (fifo, level, bit) of the 4-bit fifo code: local bits 0-1, shared bits 2-3.
FIFO_FLAGS = (("local", "half", 1), ("local", "full", 2),
              ("shared", "half", 4), ("shared", "full", 8))

_DEC = tuple(str(i) for i in range(256))
#: Integers below this print as "<n>.0" in Go's float format; above it, with an exponent.
_GO_EXPONENT = 1_000_000
_EXACT = 2**53
#: Distinct label sets whose text is kept: every series of a large detector, several times.
_KEPT_LABEL_SETS = 1 << 17


@dataclass
class Family:
    """One metric family: base name (counters without ``_total``), type, help, samples."""

    name: str
    kind: str
    help: str
    #: (sample name, labels, labels as exposed, value)
    samples: list[tuple[str, Labels, str, float]] = field(default_factory=list)

    def add(self, labels: Labels, value: float, suffix: str = "", text: str | None = None) -> None:
        """One sample; ``text`` is the rendered labels, when the caller has it already."""
        self.samples.append((self.name + suffix, labels,
                             _label_text(labels) if text is None else text, value))

    def add_histogram(self, labels: Labels, edges: tuple[float, ...], counts: np.ndarray,
                      total: float) -> None:
        """Cumulative buckets of ``counts`` (one per edge, then overflow), count and sum."""
        cumulative = np.cumsum(counts).tolist()
        les = [*(floatToGoString(edge) for edge in edges), "+Inf"]
        for le, value in zip(les, cumulative, strict=True):
            self.add(_with_le(labels, le), value, "_bucket")
        self.add(labels, cumulative[-1], "_count")
        self.add(labels, total, "_sum")

    def metric(self) -> Metric:
        """The prometheus_client form, for collectors and its encoders."""
        metric = Metric(self.name, self.help, self.kind)
        metric.samples = [Sample(name, dict(labels), value)
                          for name, labels, _, value in self.samples]
        return metric

    def sample_lines(self) -> str:
        """The sample lines of the exposition (the same in both text formats)."""
        return "".join([f"{name}{text} {_go_float(value)}\n"
                        for name, _, text, value in self.samples])


def _go_float(value: float) -> str:
    """``floatToGoString``, with a shortcut for the counts that make up most samples."""
    if type(value) is int and -_EXACT < value < _GO_EXPONENT:
        return f"{value}.0"
    return floatToGoString(value)


@lru_cache(maxsize=_KEPT_LABEL_SETS)
def _with_le(labels: Labels, le: str) -> Labels:
    return tuple(sorted((*labels, ("le", le))))


@lru_cache(maxsize=_KEPT_LABEL_SETS)
def _label_text(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{escape(value)}"' for key, value in labels) + "}"


def escape(value: str) -> str:
    """Label-value escaping of both exposition formats."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def detector_families(snap: DetectorSnapshot) -> list[Family]:
    chips = _ChipLabels(snap)
    pair_packets = chips.per_pair(snap.packets)
    return [
        _packets(chips, pair_packets),
        _data_packets(chips, snap),
        _parity_errors(chips, pair_packets, chips.per_pair(snap.parity_errors)),
        _fifo_flags(chips, pair_packets, chips.per_pair(snap.fifo)),
        _adc(snap),
        _per_group_code("larpix_sync_packets", "Sync packets read, by sync type.", "sync_type",
                        snap.sync, sync_type_label),
        *_sync_and_time(snap),
        _readout_delay(snap),
        _per_group_code("larpix_trigger_packets", "Trigger packets read, by trigger type.",
                        "trigger_type", snap.trigger, str),
        *_window(snap),
        *chip_families(snap, *_chip_slot_labels(snap), Family),
    ]


class _ChipLabels:
    """Chip slots and the (io_group, io_channel) pairs they belong to."""

    def __init__(self, snap: DetectorSnapshot) -> None:
        self.group = snap.chip_group.tolist()
        self.channel = snap.chip_channel.tolist()
        self.chip = snap.chip_id.tolist()
        pairs, self._pair_of_slot = np.unique(snap.chip_group[1:] | snap.chip_channel[1:] << 8,
                                              return_inverse=True)
        self.pairs = len(pairs)
        self.pair_labels = [(("io_channel", _DEC[k >> 8]), ("io_group", _DEC[k & 0xFF]))
                            for k in pairs.tolist()]

    def per_pair(self, values: np.ndarray) -> np.ndarray:
        """Sum per-chip-slot rows over chips: one row per (io_group, io_channel)."""
        return sum_rows_by(values[1:], self._pair_of_slot, self.pairs)


def sum_rows_by(values: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """``out[i] = sum of values[j] with index[j] == i``, for a 2-D array of counts."""
    out = np.zeros((n, values.shape[1]), np.int64)
    for column, counts in enumerate(values.T):
        out[:, column] = np.rint(np.bincount(index, weights=counts, minlength=n))
    return out


def _packets(chips: _ChipLabels, pair_packets: np.ndarray) -> Family:
    family = Family("larpix_packets", "counter", "Packets read.")
    for pair, code in zip(*np.nonzero(pair_packets), strict=True):
        channel, group = chips.pair_labels[pair]
        family.add((channel, group, ("packet_type", TYPE_LABELS[code])),
                   int(pair_packets[pair, code]), "_total")
    return family


def _data_packets(chips: _ChipLabels, snap: DetectorSnapshot) -> Family:
    family = Family("larpix_data_packets", "counter", "Data packets read, per chip.")
    labels, texts = _chip_slot_labels(snap)
    name = family.name + "_total"
    data = snap.packets[:, DATA].tolist()
    family.samples = [(name, labels[slot], texts[slot], data[slot])
                      for slot in np.flatnonzero(snap.packets[:, DATA]).tolist()]
    return family


class _SlotLabelCache:
    """Labels and their text of every chip slot, kept while slots are only appended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = np.zeros((0, 3), np.int64)
        self._labels: list[Labels] = []
        self._texts: list[str] = []

    def get(self, snap: DetectorSnapshot) -> tuple[list[Labels], list[str]]:
        ids = np.stack([snap.chip_group, snap.chip_channel, snap.chip_id], axis=1)
        with self._lock:
            known = len(self._labels)
            if known > len(ids) or not np.array_equal(self._ids, ids[:known]):
                known = 0  # another detector, or renumbered: start again
                self._labels, self._texts = [], []
            for group, channel, chip in ids[known:].tolist():
                pairs = (("chip_id", _DEC[chip]), ("io_channel", _DEC[channel]),
                         ("io_group", _DEC[group]))
                self._labels.append(pairs)
                self._texts.append(_label_text(pairs))
            self._ids = ids
            return self._labels, self._texts


_chip_slot_labels = _SlotLabelCache().get


def _parity_errors(chips: _ChipLabels, pair_packets: np.ndarray,
                   pair_errors: np.ndarray) -> Family:
    family = Family("larpix_parity_errors", "counter",
                    "Packets of types 0-3 (LArPix words) with valid_parity == 0.")
    words = pair_packets[:, PARITY_TYPES].sum(axis=1)
    errors = pair_errors[:, PARITY_TYPES].sum(axis=1).tolist()
    for pair in np.flatnonzero(words).tolist():
        family.add(chips.pair_labels[pair], errors[pair], "_total")
    return family


def _fifo_flags(chips: _ChipLabels, pair_packets: np.ndarray, pair_fifo: np.ndarray) -> Family:
    family = Family("larpix_fifo_flags", "counter",
                    "Data packets with a FIFO flag: bit 0 more than half full, bit 1 full.")
    codes = np.arange(pair_fifo.shape[1])
    with_data = np.flatnonzero(pair_packets[:, DATA]).tolist()
    for fifo, level, bit in FIFO_FLAGS:
        flagged = pair_fifo[:, (codes & bit) > 0].sum(axis=1).tolist()
        for pair in with_data:
            channel, group = chips.pair_labels[pair]
            family.add((("fifo", fifo), channel, group, ("level", level)), flagged[pair],
                       "_total")
    return family


def _adc(snap: DetectorSnapshot) -> Family:
    family = Family("larpix_adc", "histogram", "Dataword (ADC) of data packets.")
    per_bucket = snap.adc.reshape(len(snap.adc), -1, ADC_BUCKET_WIDTH).sum(axis=2)
    per_bucket = np.pad(per_bucket, ((0, 0), (0, 1)))   # overflow: a dataword is 8 bits
    sums = (snap.adc @ np.arange(ADC_VALUES)).tolist()
    for group in np.flatnonzero(snap.adc.sum(axis=1)).tolist():
        family.add_histogram((("io_group", _DEC[group]),), ADC_EDGES, per_bucket[group],
                             sums[group])
    return family


def _readout_delay(snap: DetectorSnapshot) -> Family:
    family = Family("larpix_readout_delay_ticks", "histogram",
                    "receipt_timestamp mod 2^31 - timestamp of data packets, in clock ticks.")
    sums = snap.delay_sum.tolist()
    for group in np.flatnonzero(snap.delay.sum(axis=1)).tolist():
        family.add_histogram((("io_group", _DEC[group]),), DELAY_EDGES, snap.delay[group],
                             sums[group])
    return family


def _per_group_code(name: str, doc: str, label: str, counts: np.ndarray,
                    code_label) -> Family:
    family = Family(name, "counter", doc)
    for group, code in zip(*np.nonzero(counts), strict=True):
        family.add((("io_group", _DEC[group]), (label, code_label(code))),
                   int(counts[group, code]), "_total")
    return family


def _sync_and_time(snap: DetectorSnapshot) -> list[Family]:
    offset = Family("larpix_sync_offset_ticks", "gauge",
                    "Last 'S' sync timestamp minus 10,000,000.")
    for group in np.flatnonzero(snap.has_sync_offset).tolist():
        offset.add((("io_group", _DEC[group]),), int(snap.sync_offset[group]))
    gaps = Family("larpix_sync_gaps", "counter",
                  "Seconds of data time that passed without an 'S' sync.")
    stamp = Family("larpix_data_timestamp_seconds", "gauge",
                   "Latest unix time seen in timestamp packets.")
    for group in np.flatnonzero(snap.window.has_window).tolist():
        gaps.add((("io_group", _DEC[group]),), int(snap.sync_gaps[group]), "_total")
        stamp.add((("io_group", _DEC[group]),), int(snap.data_timestamp[group]))
    return [offset, gaps, stamp]


def _window(snap: DetectorSnapshot) -> list[Family]:
    window = snap.window
    rate = Family("larpix_packet_rate_hz", "gauge",
                  "Packets per second over the last rate-window seconds of data time.")
    active = Family("larpix_active_channels", "gauge",
                    "Channels with data packets in the rate window.")
    hot = Family("larpix_hot_channels", "gauge", "Channels above the hot rate in the rate window.")
    unknown = len(TYPE_LABELS) - 1
    for group in np.flatnonzero(window.has_window).tolist():
        labels = (("io_group", _DEC[group]),)
        rates = window.rate_hz[group].tolist()
        for code, label in enumerate(TYPE_LABELS):
            if code != unknown or rates[code]:
                rate.add((*labels, ("packet_type", label)), rates[code])
        active.add(labels, int(window.active[group]))
        hot.add(labels, int(window.hot[group]))
    return [rate, active, hot]


def health_families(snap: HealthSnapshot) -> list[Family]:
    files = Family("larpix_monitor_files", "gauge", "Files known, by state.")
    for state, n in sorted(snap.files.items()):
        files.add((("state", state),), n)
    rows = Family("larpix_monitor_rows_read", "counter",
                  "Dataset rows read: packets or raw messages.")
    for fmt, n in sorted(snap.rows.items()):
        rows.add((("format", fmt),), n, "_total")
    read_bytes = Family("larpix_monitor_bytes_read", "counter", "Bytes of file payload read.")
    read_bytes.add((), snap.bytes_read, "_total")
    errors = Family("larpix_monitor_read_errors", "counter", "Unusable input, by reason.")
    for reason, n in sorted(snap.read_errors.items()):
        errors.add((("reason", reason),), n, "_total")
    retries = Family("larpix_monitor_read_retries", "counter",
                     "Reads that failed for a passing reason (file busy) and were tried again.")
    for reason, n in sorted(snap.read_retries.items()):
        retries.add((("reason", reason),), n, "_total")
    resets = Family("larpix_monitor_file_resets", "counter",
                    "Files that shrank or were replaced, read again from the start.")
    resets.add((), snap.resets, "_total")
    families = [files, rows, read_bytes, errors, retries, resets]
    if snap.ingest_lag is not None:
        lag = Family("larpix_monitor_ingest_lag_seconds", "gauge",
                     "How long the oldest uncounted rows have waited since the monitor "
                     "noticed them (0 when caught up).")
        lag.add((), snap.ingest_lag)
        families.append(lag)
    if snap.last_ingest is not None:
        last = Family("larpix_monitor_last_ingest_timestamp_seconds", "gauge",
                      "Unix time of the last ingest of new rows.")
        last.add((), snap.last_ingest)
        families.append(last)
    render = Family("larpix_monitor_plot_render_seconds", "histogram",
                    "Time one plot took to draw and write.")
    for plot, times in sorted(snap.render.items()):
        render.add_histogram((("plot", plot),), RENDER_BUCKETS, np.array(times.counts),
                             times.total)
    plot_errors = Family("larpix_monitor_plot_errors", "counter", "Plot plugin calls that raised.")
    for plot, n in sorted(snap.plot_errors.items()):
        plot_errors.add((("plot", plot),), n, "_total")
    skipped = Family("larpix_monitor_plot_rows_skipped", "counter",
                     "Rows the plots never saw because their renders fell behind ingest.")
    skipped.add((), snap.plot_rows_skipped, "_total")
    build = Family("larpix_monitor_build_info", "gauge", "Version of the monitor (always 1).")
    build.add((("version", snap.version),), 1)
    return [*families, render, plot_errors, skipped, build]
