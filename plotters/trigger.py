"""External triggers: when data arrives relative to them, and how often they come."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.packets import DATA, TRIGGER
from plotters._accumulators import Histograms
from plotters._bases import BuiltinPlot
from plotters.timing import DELAY_EDGES

#: Data timestamp minus the latest trigger's: -0.2 ms to +2 ms in 10 us bins.
AFTER_TRIGGER_EDGES = np.arange(-2_000, 20_001, 100, dtype=np.float64)


def latest_before(packets: np.ndarray, is_mark: np.ndarray, last: dict[int, float]) -> np.ndarray:
    """``timestamp`` of the latest marked packet at or before each packet, same io_group.

    ``last`` carries the latest marked timestamp per io_group from one call to the
    next and is updated; packets with no mark before them get NaN.
    """
    values = np.full(len(packets), np.nan)
    groups = packets["io_group"]
    for group in np.flatnonzero(np.bincount(groups)):
        rows = np.flatnonzero(groups == group)
        marks = np.where(is_mark[rows], np.arange(len(rows)), -1)
        np.maximum.accumulate(marks, out=marks)
        stamps = packets["timestamp"][rows[np.maximum(marks, 0)]].astype(np.float64)
        values[rows] = np.where(marks >= 0, stamps, last.get(int(group), np.nan))
        if marks[-1] >= 0:
            last[int(group)] = float(stamps[-1])
    return values


class TriggerCorrelation(BuiltinPlot):
    """Data timestamps relative to the latest external trigger, and trigger spacing.

    Both in ticks of the 10 MHz PACMAN clock, per io_group, in packet order. A
    spacing across a clock reset (sync) is negative and counted as outside.
    """

    what = "Trigger correlation"
    figsize = (10.0, 8.0)

    def __init__(self) -> None:
        self.last_trigger: dict[int, float] = {}
        self.after = Histograms(AFTER_TRIGGER_EDGES)
        self.spacing = Histograms(DELAY_EDGES, logarithmic=True)

    def update(self, packets: np.ndarray) -> None:
        triggers = packets["packet_type"] == TRIGGER
        previous = dict(self.last_trigger)
        latest = latest_before(packets, triggers, self.last_trigger)
        data = (packets["packet_type"] == DATA) & np.isfinite(latest)
        self.after.add(packets["io_group"][data],
                       packets["timestamp"][data].astype(np.float64) - latest[data])
        self._add_spacing(packets["io_group"][triggers], packets["timestamp"][triggers], previous)

    def _add_spacing(self, groups: np.ndarray, timestamps: np.ndarray,
                     previous: dict[int, float]) -> None:
        for group in np.unique(groups):
            stamps = timestamps[groups == group].astype(np.float64)
            before = previous.get(int(group))
            if before is not None:
                stamps = np.concatenate([[before], stamps])
            self.spacing.add(np.full(len(stamps) - 1, group), np.diff(stamps))

    def ready(self) -> bool:
        return bool(self.after.counts) and bool(self.spacing.counts)

    def structure(self) -> object:
        return tuple(sorted(self.after.counts)), tuple(sorted(self.spacing.counts))

    def build(self, fig: Figure) -> None:
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.08, hspace=0.3)
        after_ax, spacing_ax = fig.subplots(2, 1)
        self.after.build(after_ax)
        after_ax.set_xlabel("data timestamp - latest trigger timestamp [ticks of 100 ns]")
        after_ax.set_ylabel("data packets per 10 us")
        self.spacing.build(spacing_ax)
        spacing_ax.set_xlabel("time between consecutive triggers [ticks of 100 ns]")
        spacing_ax.set_ylabel("triggers per bin")

    def refresh(self, fig: Figure) -> None:
        self.after.refresh(fig.axes[0])
        self.spacing.refresh(fig.axes[1])
