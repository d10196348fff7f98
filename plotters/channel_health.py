"""Channel health: which pixels are dead, noisy or normal."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from exporter.config import DEFAULT_HOT_RATE
from plotters._axes import set_title, tile_panels
from plotters._bases import TileMapPlot

DEAD, NORMAL, NOISY = 0, 1, 2
STATE_NAMES = ("dead", "normal", "noisy")
STATE_COLOURS = ("black", "tab:green", "tab:red")


class ChannelHealth(TileMapPlot):
    """Every pixel of each tile with data: dead (no hit), noisy (above ``noisy_rate`` Hz), normal.

    The pixels are those the layout connects, so a chip that sends nothing shows
    up as a block of dead pixels.
    """

    what = "Channel health"
    noisy_rate = DEFAULT_HOT_RATE

    def states(self, io_group: int, tile: int) -> np.ndarray:
        """State of each channel, [chip_id, channel_id]; -1 where the layout has no pixel."""
        arrays = self.stats.tile_arrays(io_group, tile)
        state = np.where(arrays["hits"] == 0, DEAD,
                         np.where(np.nan_to_num(arrays["rate"]) > self.noisy_rate, NOISY, NORMAL))
        return np.where(self.geometry.tile.connected, state, -1)

    def build(self, fig: Figure) -> None:
        tiles = self.stats.tiles()
        rows, columns, height = self.grid(1.2)
        fig.set_size_inches(2.6 * columns, height)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.7 / height, top=1 - 0.6 / height,
                            wspace=0.05, hspace=0.2)
        axes = tile_panels(fig, rows, columns, len(tiles))
        layout = self.geometry.tile
        self.images = [ax.imshow(np.full(layout.shape, np.nan), origin="lower",
                                 extent=layout.extent, interpolation="nearest",
                                 cmap=ListedColormap(STATE_COLOURS), vmin=-0.5, vmax=2.5)
                       for ax in axes[:len(tiles)]]
        self.legend = None
        fig.text(0.01, 0.01, f"io_group-tile; noisy: above {self.noisy_rate:g} Hz",
                 fontsize="small")

    def refresh(self, fig: Figure) -> None:
        totals = np.zeros(3, dtype=np.int64)
        for image, (group, tile) in zip(self.images, self.stats.tiles(), strict=True):
            state = self.states(group, tile)
            counts = np.bincount(state[state >= 0], minlength=3)
            totals += counts
            image.set_data(self.geometry.tile.grid(state.astype(np.float64)))
            set_title(image.axes, f"{group}-{tile}: {counts[DEAD]} dead, {counts[NOISY]} noisy",
                                 fontsize="small")
        if self.legend is not None:
            self.legend.remove()
        handles = [Patch(color=colour, label=f"{name}: {totals[state]:,}")
                   for state, (name, colour) in enumerate(zip(STATE_NAMES, STATE_COLOURS,
                                                              strict=True))]
        self.legend = fig.legend(handles=handles, loc="lower center", ncols=3)
