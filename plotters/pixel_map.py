"""Pixel maps of each tile, placed by the larpix-geometry layout: mean ADC, spread, hit rate.

``PixelMap_<io_group>_<tile>`` exist for the seed's io_groups 1-2 and tiles 1-8
(made by a factory, as in the seed) and run when named in ``--plots``;
``PixelMaps`` shows the hit rate of every tile that has data. Both need a layout
(see ``exporter.render.geometry``); without a usable one they draw nothing.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from exporter.render.geometry import TileLayout
from plotters._axes import plain_log_colorbar, show, tile_image
from plotters._bases import EveryTileMap, TileMapPlot

#: (array, colour-bar label, log scale) of each panel of a tile map.
PANELS = (("mean", "mean ADC [counts]", False), ("std", "ADC spread (std) [counts]", False),
          ("rate", "hit rate [Hz]", True))


def unplaced_hits(layout: TileLayout, hits: np.ndarray) -> int:
    """Hits on channels the layout does not connect to a pixel."""
    return int(hits[~layout.connected].sum())


class _TileMap(TileMapPlot):
    """Mean ADC, ADC spread and hit rate of one tile."""

    io_group = 1
    tile = 1
    #: Drawn only when named in --plots: PixelMaps and ChannelHealth cover every tile by default.
    default = False
    figsize = (14.0, 4.2)

    def __init__(self) -> None:
        super().__init__()
        self.what = f"Pixel map io_group {self.io_group} tile {self.tile}"

    def update(self, packets: np.ndarray) -> None:
        self.stats.update(packets, self.batch.tile_channel_sums(),
                          only=(self.io_group, self.tile))

    def ready(self) -> bool:
        return self.geometry is not None and (self.io_group, self.tile) in self.stats.tiles()

    def build(self, fig: Figure) -> None:
        fig.subplots_adjust(left=0.05, right=0.97, bottom=0.12, top=0.88, wspace=0.35)
        layout = self.geometry.tile
        self.images = []
        for ax, (_, label, log) in zip(fig.subplots(1, 3), PANELS, strict=True):
            self.images.append(tile_image(ax, layout, log))
            colorbar = fig.colorbar(self.images[-1], ax=ax, label=label, shrink=0.8)
            if log:
                plain_log_colorbar(colorbar)
            ax.set_xlabel("x [mm]")
        fig.axes[0].set_ylabel("y [mm]")
        self.note = fig.text(0.01, 0.01, "", fontsize="small")

    def refresh(self, fig: Figure) -> None:
        arrays = self.stats.tile_arrays(self.io_group, self.tile)
        layout = self.geometry.tile
        for image, (name, _, _) in zip(self.images, PANELS, strict=True):
            show(image, layout, arrays[name])
        self.note.set_text(f"live time {self.stats.livetime(self.io_group):.0f} s; "
                           f"{unplaced_hits(layout, arrays['hits']):,} hits on unconnected "
                           "channels")


def pixel_map_factory(io_group: int, tile: int) -> type:
    """A pixel-map plot class for one io_group and tile (the seed's ``PixelMap_X_X``)."""
    return type(f"PixelMap_{io_group}_{tile}", (_TileMap,),
                {"io_group": io_group, "tile": tile,
                 "__doc__": f"Mean ADC, ADC spread, hit rate of io_group {io_group} tile {tile}."})


for _io_group in (1, 2):
    for _tile in range(1, 9):
        globals()[f"PixelMap_{_io_group}_{_tile}"] = pixel_map_factory(_io_group, _tile)


class PixelMaps(EveryTileMap):
    """Hit rate of every pixel of every tile with data, one panel per io_group and tile."""

    what = "Hit rate per pixel"
    quantity = "rate"
    label = "hit rate [Hz]"
    log = True
