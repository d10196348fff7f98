"""FIFO flags of data packets: how often the chips' local and shared FIFOs fill up."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.packets import DATA
from plotters._support import BuiltinPlot, TimeBins, data_times, log_y, to_datenum, utc_time_axis

#: (label, field, bit): bit 0 = more than half full, bit 1 = full.
FLAGS = (("local half", "local_fifo", 1), ("local full", "local_fifo", 2),
         ("shared half", "shared_fifo", 1), ("shared full", "shared_fifo", 2))
_ALL_DATA = len(FLAGS)


class FifoFlags(BuiltinPlot):
    """Rate and fraction of data packets carrying each FIFO flag, vs data time."""

    what = "FIFO flags"
    figsize = (10.0, 7.0)

    def __init__(self) -> None:
        self.last_timestamp: dict[int, float] = {}
        # Keys 0-3: FLAGS; key 4: every data packet (the denominator).
        self.bins = TimeBins()

    def update(self, packets: np.ndarray) -> None:
        seconds = data_times(packets, self.last_timestamp)
        data = packets["packet_type"] == DATA
        seconds, packets = seconds[data], packets[data]
        keys = [np.full(len(packets), _ALL_DATA)]
        times = [seconds]
        for key, (_, name, bit) in enumerate(FLAGS):
            flagged = (packets[name] & bit) != 0
            keys.append(np.full(int(flagged.sum()), key))
            times.append(seconds[flagged])
        self.bins.add(np.concatenate(times), np.concatenate(keys))

    def ready(self) -> bool:
        return len(self.bins.counts) > 0

    def draw(self, fig: Figure) -> None:
        rate_ax, fraction_ax = fig.subplots(2, 1, sharex=True)
        x = to_datenum(self.bins.starts)
        data = self.bins.column(_ALL_DATA)
        for key, (label, _, _) in enumerate(FLAGS):
            flagged = self.bins.column(key)
            rate_ax.plot(x, flagged / self.bins.width, ".-", ms=3, lw=1, label=label)
            with np.errstate(invalid="ignore", divide="ignore"):
                fraction = np.where(data > 0, flagged / data, np.nan)
            fraction_ax.plot(x, fraction, ".-", ms=3, lw=1, label=label)
        log_y(rate_ax)
        rate_ax.set_ylabel(f"flagged packets [Hz] ({self.bins.width} s bins)")
        log_y(fraction_ax)
        fraction_ax.set_ylabel("fraction of data packets")
        for ax in (rate_ax, fraction_ax):
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(loc="upper left", fontsize="small", ncols=4)
        utc_time_axis(fraction_ax)
