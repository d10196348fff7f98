"""Pedestal and noise maps: ADC mean and ADC RMS of every pixel of every tile with data.

Beside ``PixelMaps`` (the hit rate), on the same layout and panel grid: a pixel
whose pedestal moved, or whose noise grew, stands out of its tile. The ADC RMS
is the standard deviation (ddof 0) of the channel's ADC values, as in
``/api/channels``. One colour scale per figure, fitted to every tile shown.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from plotters._axes import tile_panels
from plotters._bases import TileMapPlot
from plotters.pixel_map import show, tile_image, value_range


class _TileValueMaps(TileMapPlot):
    """One per-channel quantity of ``ChannelStats.tile_arrays`` on every tile with data."""

    #: The ``tile_arrays`` key shown, and its colour-bar label.
    quantity = ""
    label = ""

    def build(self, fig: Figure) -> None:
        tiles = self.stats.tiles()
        rows, columns, height = self.grid(0.6)
        fig.set_size_inches(2.6 * columns + 1.2, height)
        fig.subplots_adjust(left=0.02, right=0.85, bottom=0.02, top=1 - 0.6 / height,
                            wspace=0.05, hspace=0.15)
        axes = tile_panels(fig, rows, columns, len(tiles))
        self.images = []
        for ax, (group, tile) in zip(axes, tiles, strict=False):
            self.images.append(tile_image(ax, self.geometry.tile))
            ax.set_title(f"io_group {group} tile {tile}", fontsize="small")
        fig.colorbar(self.images[0], cax=fig.add_axes((0.88, 0.1, 0.025, 0.8)),
                     label=self.label)

    def values(self) -> list[np.ndarray]:
        """The quantity of each tile, [chip_id, channel_id], NaN where a channel has no hits."""
        return [self.stats.tile_arrays(group, tile)[self.quantity]
                for group, tile in self.stats.tiles()]

    def refresh(self, fig: Figure) -> None:
        values = self.values()
        limits = value_range(*values)
        for image, tile_values in zip(self.images, values, strict=True):
            show(image, self.geometry.tile, tile_values, limits)


class PedestalMaps(_TileValueMaps):
    """Mean ADC of every pixel of every tile with data: the pedestal map."""

    what = "Pedestal (ADC mean) per pixel"
    quantity = "mean"
    label = "ADC mean [counts]"


class NoiseMaps(_TileValueMaps):
    """ADC standard deviation of every pixel of every tile with data: the noise map."""

    what = "Noise (ADC RMS) per pixel"
    quantity = "std"
    label = "ADC RMS [counts]"
