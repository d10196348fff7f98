"""The busiest channels: where the data comes from."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from plotters._accumulators import KeyedTotals
from plotters._axes import log_x, set_title
from plotters._bases import BuiltinPlot
from plotters._packets import channel_label


class HotPixels(BuiltinPlot):
    """The 100 channels with the largest share of data packets (ties: lowest channel first)."""

    what = "Hot pixels"
    figsize = (8.0, 14.0)
    top = 100

    def __init__(self) -> None:
        self.counts = KeyedTotals()

    def update(self, packets: np.ndarray) -> None:
        keys, hits, _, _ = self.batch.channel_sums()
        self.counts.add(keys, hits)

    def ready(self) -> bool:
        return len(self.counts.keys) > 0

    def structure(self) -> object:
        return min(self.top, len(self.counts.keys))

    def busiest(self) -> tuple[np.ndarray, np.ndarray]:
        """Keys and packet counts of the top channels, busiest first."""
        counts = self.counts.values[:, 0]
        order = np.lexsort((self.counts.keys, -counts))[:self.top]
        return self.counts.keys[order], counts[order]

    def build(self, fig: Figure) -> None:
        fig.subplots_adjust(left=0.2, right=0.96, bottom=0.04, top=0.94)
        ax = fig.add_subplot()
        positions = np.arange(self.structure())
        self.bars = ax.barh(positions, np.ones(len(positions)), color="tab:red")
        ax.set_yticks(positions, [""] * len(positions), fontsize=6)
        ax.set_ylim(len(positions) - 0.5, -0.5)
        log_x(ax, nonpositive="clip")
        ax.set_xlabel("share of data packets [%]")
        ax.set_ylabel("io_group-io_channel-chip-channel")
        ax.grid(True, axis="x", alpha=0.3)

    def refresh(self, fig: Figure) -> None:
        ax = fig.axes[0]
        keys, counts = self.busiest()
        total = self.counts.values[:, 0].sum()
        shares = 100.0 * counts / total
        for bar, share in zip(self.bars, shares, strict=True):
            bar.set_width(share)
        ax.set_yticklabels([channel_label(int(k)) for k in keys])
        ax.set_xlim(shares.min() / 2, shares.max() * 1.5)
        set_title(ax, f"top {len(keys)} of {len(self.counts.keys):,} channels, "
                     f"{int(total):,} data packets", fontsize="medium")
