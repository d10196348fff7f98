"""FIFO flags of data packets: how often the chips' local and shared FIFOs fill up."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.packets import DATA
from plotters._axes import log_y, rescale, to_datenum, utc_time_axis
from plotters._bases import TimeBinnedPlot

#: (label, field, bit): bit 0 = more than half full, bit 1 = full.
FLAGS = (("local half", "local_fifo", 1), ("local full", "local_fifo", 2),
         ("shared half", "shared_fifo", 1), ("shared full", "shared_fifo", 2))
_ALL_DATA = len(FLAGS)


class FifoFlags(TimeBinnedPlot):
    """Rate and fraction of data packets carrying each FIFO flag, vs data time.

    Bin keys 0-3 are FLAGS, key 4 every data packet (the denominator).
    """

    what = "FIFO flags"
    figsize = (10.0, 7.0)

    def count(self, packets: np.ndarray, seconds: np.ndarray) -> None:
        data = packets["packet_type"] == DATA
        seconds = seconds[data]
        self.bins.add(seconds, np.full(len(seconds), _ALL_DATA))
        for key, (_, name, bit) in enumerate(FLAGS):
            flagged = (packets[name][data] & bit) != 0
            self.bins.add(seconds[flagged], np.full(int(flagged.sum()), key))

    def structure(self) -> object:
        return None  # one line per flag from the start: a flag seen first later needs no rebuild

    def build(self, fig: Figure) -> None:
        fig.subplots_adjust(left=0.09, right=0.97, bottom=0.09, hspace=0.1)
        rate_ax, fraction_ax = fig.subplots(2, 1, sharex=True)
        self.rates = [rate_ax.plot([], [], "-", lw=1, label=label)[0]
                      for label, _, _ in FLAGS]
        self.fractions = [fraction_ax.plot([], [], "-", lw=1, label=label)[0]
                          for label, _, _ in FLAGS]
        fraction_ax.set_ylabel("fraction of data packets")
        for ax in (rate_ax, fraction_ax):
            log_y(ax)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="upper left", fontsize="small", ncols=4)
        utc_time_axis(fraction_ax)

    def refresh(self, fig: Figure) -> None:
        x = to_datenum(self.bins.starts)
        data = self.bins.column(_ALL_DATA)
        for key, (rate, fraction) in enumerate(zip(self.rates, self.fractions, strict=True)):
            flagged = self.bins.column(key)
            rate.set_data(x, flagged / self.bins.width)
            with np.errstate(invalid="ignore", divide="ignore"):
                fraction.set_data(x, np.where(data > 0, flagged / data, np.nan))
        fig.axes[0].set_ylabel(f"flagged packets [Hz] ({self.bins.width} s bins)")
        for ax in fig.axes:
            rescale(ax)
