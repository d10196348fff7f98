"""A run's per-channel table over all its files: read the files, add their tables up.

A run may be written as several files; the reference command and the once
sign-off grade the whole run. Tables are added as each file is read (the
detector keeps the tables of its last files only), so memory holds one
combined table, not one per file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporter.errors import InputError
from exporter.metrics import ChannelTable, DetectorMetrics
from exporter.metrics.channels import PerChannelColumns
from exporter.quality.table import channel_key, key_parts, tile_of
from exporter.source import FileReader

_SUMMED = ("count", "parity_errors", "fifo_half", "fifo_full")


@dataclass(frozen=True, kw_only=True)
class RunTable(PerChannelColumns):
    """The per-channel columns of a run (see ``exporter.quality.ChannelColumns``); its
    ``adc_histogram`` is always there."""

    adc_histogram: np.ndarray


def _key(table) -> np.ndarray:
    return channel_key(table.io_group, table.io_channel, table.chip_id, table.channel_id)


def combine(tables: list[ChannelTable | RunTable], hot_rate: float) -> RunTable:
    """One table of several files' tables (oldest first): counts and histograms added;
    the rate is the last file's that has the channel (its rate window is the latest)."""
    keys = [_key(t) for t in tables]
    key, inverse = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64),
                             return_inverse=True)
    n = len(key)
    summed = {name: np.bincount(inverse, weights=np.concatenate(
        [getattr(t, name) for t in tables]) if tables else None, minlength=n).astype(np.int64)
        for name in _SUMMED}
    histogram = np.zeros((n, 256), np.uint32)
    rate = np.zeros(n)
    start = 0
    for table in tables:  # oldest first: a channel's rate is from the last file that has it
        rows = inverse[start:start + len(table.count)]
        histogram[rows] += table.adc_histogram.astype(np.uint32)
        rate[rows] = table.rate_hz
        start += len(table.count)
    values = np.arange(256)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = histogram @ values / summed["count"]
        rms = np.sqrt(np.maximum(histogram @ values.astype(np.float64)**2 / summed["count"]
                                 - mean**2, 0))
    group, io_channel, chip, channel = key_parts(key)
    return RunTable(io_group=group, io_channel=io_channel, tile=tile_of(io_channel),
                    chip_id=chip, channel_id=channel, rate_hz=rate, adc_mean=mean,
                    adc_rms=rms, status=np.where(rate > hot_rate, "hot", "ok"),
                    adc_histogram=histogram, **summed)


@dataclass
class RunReader:
    """Reads a run's files into one detector and collects their per-channel tables."""

    rate_window: float = 10.0
    hot_rate: float = 20.0
    #: the detector to read into (once mode shares its own); None: a new one
    detector: DetectorMetrics | None = None
    files: list[str] = field(default_factory=list)
    spans: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    _table: RunTable | None = None

    def __post_init__(self) -> None:
        if self.detector is None:
            self.detector = DetectorMetrics(self.rate_window, self.hot_rate)

    def read(self, path: str | Path) -> None:
        """Read one file to its end (InputError: unusable)."""
        path = Path(path)
        if not path.exists():
            raise InputError(str(path), "vanished", "no such file")
        for chunk in FileReader(path, at_rest=True).read_new():
            self.detector.update(chunk, str(path))
        self.add(path)

    def add(self, path: str | Path) -> None:
        """Take the table of a file the detector has read (call right after reading it)."""
        table = self.detector.channel_table(str(path), histograms=True)
        self.files.append(str(path))
        self.spans[str(path)] = self.detector.data_span(str(path))
        if table is not None:  # one combined table: memory for one run, however many files
            before = [self._table] if self._table is not None else []
            self._table = combine([*before, table], self.hot_rate)

    def table(self) -> RunTable:
        return self._table if self._table is not None else combine([], self.hot_rate)

    def span(self) -> tuple[int, int] | None:
        known = [s for s in self.spans.values() if s is not None]
        return (min(s[0] for s in known), max(s[1] for s in known)) if known else None
