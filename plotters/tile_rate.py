"""Data rate of each anode tile, one panel per io_group."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.packets import DATA
from plotters._axes import log_y, rescale, set_title, to_datenum, utc_time_axis
from plotters._bases import TimeBinnedPlot
from plotters._packets import tile_key


class TileRate(TimeBinnedPlot):
    """Data packets per second on each tile (io_channel 4t-3 .. 4t) vs data time."""

    what = "Data rate per tile"

    def count(self, packets: np.ndarray, seconds: np.ndarray) -> None:
        data = packets["packet_type"] == DATA  # key: io_group * 1000 + tile
        self.bins.add(seconds[data],
                      tile_key(packets["io_group"][data], packets["io_channel"][data]))

    def build(self, fig: Figure) -> None:
        groups = np.unique(self.bins.keys // 1000)
        height = 1.5 + 2.5 * len(groups)
        fig.set_size_inches(10.0, height)
        fig.subplots_adjust(left=0.09, right=0.86, bottom=0.6 / height, top=1 - 0.7 / height,
                            hspace=0.1)
        axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
        self.lines = {}
        for ax, group in zip(axes, groups, strict=True):
            for key in self.bins.keys[self.bins.keys // 1000 == group]:
                self.lines[key] = ax.plot([], [], "-", lw=1, label=f"tile {key % 1000}")[0]
            log_y(ax)
            ax.set_ylabel(f"io_group {group}\ndata rate [Hz]")
            ax.grid(True, alpha=0.3)
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        utc_time_axis(axes[-1])

    def refresh(self, fig: Figure) -> None:
        x = to_datenum(self.bins.starts)
        for key, drawn in self.lines.items():
            drawn.set_data(x, self.bins.column(key) / self.bins.width)
        for ax in fig.axes:
            rescale(ax)
        set_title(fig.axes[0], f"{self.bins.width} s bins", fontsize="medium")
