"""What scrapes and readers see of the detector: snapshots, published when gated, and the
per-channel tables read through them."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from exporter.metrics.channels import ChannelTable, ChannelTables
from exporter.metrics.checkpoint import GatedVersion
from exporter.metrics.window import WindowView


@dataclass(frozen=True)
class DetectorSnapshot:
    """Every detector metric at one moment; arrays are copies, safe to read unlocked."""

    chip_group: np.ndarray      # (slot,) io_group of each chip slot (slot 0: none)
    chip_channel: np.ndarray    # (slot,) io_channel
    chip_id: np.ndarray         # (slot,) chip_id
    packets: np.ndarray         # (slot, type) rows
    parity_errors: np.ndarray   # (slot, type) rows with valid_parity == 0
    fifo: np.ndarray            # (slot, 16) data rows by local | shared << 2 fifo bits
    adc: np.ndarray             # (io_group, value) data rows by dataword
    delay: np.ndarray           # (io_group, bucket) data rows by readout delay
    delay_sum: np.ndarray       # (io_group,) sum of readout delays
    sync: np.ndarray            # (io_group, sync type code)
    trigger: np.ndarray         # (io_group, trigger type code)
    sync_offset: np.ndarray     # (io_group,) last 'S' timestamp - 10,000,000
    has_sync_offset: np.ndarray
    sync_gaps: np.ndarray       # (io_group,)
    data_timestamp: np.ndarray  # (io_group,) latest timestamp packet, NO_TIME if none
    window: WindowView
    config: np.ndarray          # (slot, 4) config packets by (op, direction), see CONFIG_COLUMNS
    clock_source: np.ndarray    # (io_group,) dataword of the latest sync packet
    has_clock_source: np.ndarray


class PublishedSnapshots(GatedVersion):
    """The snapshot and channel-table side of ``DetectorMetrics``.

    Gated (the service): scrapes see the snapshot of the last ``publish()``.
    Ungated: ``_published`` caches the latest snapshot, taken again after every
    update. The subclass takes snapshots (``_take_snapshot``) under ``_lock``
    and bumps ``_changes`` at every update.
    """

    _lock: threading.RLock
    _published: tuple[int, DetectorSnapshot] | None
    _tables: dict[str, tuple[int, ChannelTable]]
    channels: ChannelTables
    rate_window: float
    hot_rate: float

    #: Changes with every update, published or not.
    counted = GatedVersion.changed

    def publish(self) -> None:
        """Let scrapes see everything counted so far (gated mode)."""
        with self._lock:
            if self._published is None or self._published[0] != self._changes:
                self._published = (self._changes, self._take_snapshot())

    def snapshot(self) -> DetectorSnapshot:
        """A consistent copy of every metric (cached until the next update; gated: the
        published one)."""
        with self._lock:
            return self._current_snapshot()

    def _current_snapshot(self) -> DetectorSnapshot:
        cached = self._published
        if self.gated and cached is None:
            cached = self._published = (-1, self._take_snapshot())
        if not self.gated and (cached is None or cached[0] != self._changes):
            cached = (self._changes, self._take_snapshot())
            self._published = cached
        return cached[1]

    def channel_table(self, source: str | None = None, histograms: bool = False
                      ) -> ChannelTable | None:
        """The per-channel table of ``source`` (default: the file that received data last);
        None if it has none. Cached until the next update (without histograms)."""
        with self._lock:
            sources = self.channels.sources()
            source = source if source is not None else (sources[0] if sources else None)
            if source is None:
                return None
            cached = self._tables.get(source)
            if cached is not None and cached[0] == self._changes and not histograms:
                return cached[1]
            window = self._current_snapshot().window.channel_counts
            table = self.channels.table(source, window, self.rate_window, self.hot_rate,
                                        histograms)
            if table is not None and not histograms:
                self._tables = {source: (self._changes, table)}
            return table

    def _take_snapshot(self) -> DetectorSnapshot:
        raise NotImplementedError
