"""PACMAN and LArPix clocks: data timestamps, readout delays, and sync offsets."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.metrics.clock import DataClock
from exporter.packets import DATA, SYNC, SYNC_PERIOD_TICKS
from plotters._accumulators import Histograms
from plotters._axes import one_panel, rescale, to_datenum, utc_time_axis
from plotters._bases import PerGroupPlot
from plotters._packets import data_times

#: Bins of data-packet timestamps: 0 to 1.2 s of the 10 MHz clock in 10 ms bins.
TIMESTAMP_EDGES = np.linspace(0, 1.2 * SYNC_PERIOD_TICKS, 121)
#: Bins of readout delays: 1 tick to 2^31 ticks, 10 per decade.
DELAY_EDGES = np.logspace(0, np.log10(2.0**31), 94)
RECEIPT_MODULUS = 1 << 31
SYNC_CODE = ord("S")


class _HistogramPlot(PerGroupPlot):
    """One panel of per-io_group histograms; subclasses fill ``self.histograms``."""

    figsize = (9.0, 5.0)
    xlabel = ""
    ylabel = ""
    histograms: Histograms

    def groups(self) -> dict[int, np.ndarray]:
        return self.histograms.counts

    def build(self, fig: Figure) -> None:
        ax = one_panel(fig)
        self.histograms.build(ax)
        ax.set_xlabel(self.xlabel)
        ax.set_ylabel(self.ylabel)

    def refresh(self, fig: Figure) -> None:
        self.histograms.refresh(fig.axes[0])


class TimestampHist(_HistogramPlot):
    """Distribution of the LArPix timestamp of data packets (ticks of the 10 MHz clock)."""

    what = "Data packet timestamps"
    xlabel = "timestamp [ticks of 100 ns]"
    ylabel = "data packets per 10 ms bin"

    def __init__(self) -> None:
        self.histograms = Histograms(TIMESTAMP_EDGES)

    def update(self, packets: np.ndarray) -> None:
        data = packets["packet_type"] == DATA
        self.histograms.add(packets["io_group"][data],
                            packets["timestamp"][data].astype(np.float64))


class ReadoutDelay(_HistogramPlot):
    """PACMAN receipt time (mod 2^31) minus LArPix timestamp of data packets, per io_group.

    Only packets that carry a receipt time (raw files, packet files >= 2.3) count.
    """

    what = "Readout delay"
    xlabel = "receipt time - timestamp [ticks of 100 ns]"
    ylabel = "data packets per bin"

    def __init__(self) -> None:
        self.histograms = Histograms(DELAY_EDGES, logarithmic=True)

    def update(self, packets: np.ndarray) -> None:
        data = (packets["packet_type"] == DATA) & (packets["receipt_timestamp"] != 0)
        delay = (packets["receipt_timestamp"][data].astype(np.int64) % RECEIPT_MODULUS
                 - packets["timestamp"][data].astype(np.int64))
        self.histograms.add(packets["io_group"][data], delay.astype(np.float64))


class SyncOffset(PerGroupPlot):
    """Timestamp of each PACMAN 'S' sync minus 10,000,000 ticks, per io_group vs data time.

    Keeps the latest ``keep`` syncs per io_group (a day at one sync a second).
    """

    what = "PACMAN sync offset"
    figsize = (10.0, 5.0)
    keep = 86_400

    def __init__(self) -> None:
        self.clock = DataClock()
        self.points: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def update(self, packets: np.ndarray) -> None:
        seconds = data_times(self.clock, packets)
        syncs = (packets["packet_type"] == SYNC) & (packets["trigger_type"] == SYNC_CODE)
        groups = packets["io_group"][syncs]
        offsets = packets["timestamp"][syncs].astype(np.float64) - SYNC_PERIOD_TICKS
        seconds = seconds[syncs]
        for group in np.unique(groups):
            mine = groups == group
            old_t, old_offset = self.points.get(int(group), (np.zeros(0), np.zeros(0)))
            self.points[int(group)] = (np.concatenate([old_t, seconds[mine]])[-self.keep:],
                                       np.concatenate([old_offset, offsets[mine]])[-self.keep:])

    def groups(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        return self.points

    def build(self, fig: Figure) -> None:
        ax = one_panel(fig, bottom=0.13)
        self.lines = {group: ax.plot([], [], ".", ms=4)[0] for group in sorted(self.points)}
        ax.set_ylabel("sync timestamp - 10,000,000 [ticks]")
        ax.grid(True, alpha=0.3)
        utc_time_axis(ax)

    def refresh(self, fig: Figure) -> None:
        ax = fig.axes[0]
        for group, drawn in self.lines.items():
            seconds, offsets = self.points[group]
            drawn.set_data(to_datenum(seconds), offsets)
            drawn.set_label(f"io_group {group} ({len(offsets):,} syncs)")
        rescale(ax)
        ax.legend(fontsize="small")
