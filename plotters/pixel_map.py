"""Pixel maps of each tile, placed by the larpix-geometry layout: mean ADC, spread, hit rate.

``PixelMap_<io_group>_<tile>`` exist for the seed's io_groups 1-2 and tiles 1-8
(made by a factory, as in the seed) and run when named in ``--plots``;
``PixelMaps`` shows the hit rate of every tile that has data. Both need a layout
(see ``exporter.render.geometry``); without a usable one they draw nothing.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from exporter.render.geometry import TileLayout
from plotters._axes import plain_log_colorbar, tile_panels
from plotters._bases import TileMapPlot

#: (array, colour-bar label, log scale) of each panel of a tile map.
PANELS = (("mean", "mean ADC [counts]", False), ("std", "ADC spread (std) [counts]", False),
          ("rate", "hit rate [Hz]", True))


def tile_image(ax: Axes, layout: TileLayout, log: bool = False) -> AxesImage:
    """An empty image of one tile on its pixel grid, in mm, to be filled by ``show``.

    The colour scale's limits are placeholders until ``show`` fits them to the data.
    """
    return ax.imshow(np.full(layout.shape, np.nan), origin="lower", extent=layout.extent,
                     interpolation="nearest", cmap="viridis",
                     norm=LogNorm(1.0, 10.0) if log else Normalize(0.0, 1.0))


def show(image: AxesImage, layout: TileLayout, values: np.ndarray,
         limits: tuple[float, float] | None = None) -> None:
    """Put per-channel ``values`` ([chip, channel]) on the tile image and fit its colour scale."""
    grid = layout.grid(values)
    image.set_data(grid)
    if limits is None:
        limits = value_range(grid, positive=isinstance(image.norm, LogNorm))
    if limits is not None:
        image.set_clim(*limits)


def value_range(*arrays: np.ndarray, positive: bool = False) -> tuple[float, float] | None:
    values = np.concatenate([a[np.isfinite(a) & ((a > 0) if positive else True)].ravel()
                             for a in arrays])
    if not len(values):
        return None
    low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else (low * 0.9 if positive else low - 1, high * 1.1 + 1e-9)


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
        self.stats.update(packets, only=(self.io_group, self.tile))

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


class PixelMaps(TileMapPlot):
    """Hit rate of every pixel of every tile with data, one panel per io_group and tile."""

    what = "Hit rate per pixel"

    def build(self, fig: Figure) -> None:
        tiles = self.stats.tiles()
        rows, columns, height = self.grid(0.6)
        fig.set_size_inches(2.6 * columns + 1.2, height)
        fig.subplots_adjust(left=0.02, right=0.85, bottom=0.02, top=1 - 0.6 / height,
                            wspace=0.05, hspace=0.15)
        axes = tile_panels(fig, rows, columns, len(tiles))
        self.images = []
        for ax, (group, tile) in zip(axes, tiles, strict=False):
            self.images.append(tile_image(ax, self.geometry.tile, log=True))
            ax.set_title(f"io_group {group} tile {tile}", fontsize="small")
        colorbar = fig.colorbar(self.images[0], cax=fig.add_axes((0.88, 0.1, 0.025, 0.8)),
                                label="hit rate [Hz]")
        plain_log_colorbar(colorbar)

    def refresh(self, fig: Figure) -> None:
        rates = [self.stats.tile_arrays(group, tile)["rate"] for group, tile in self.stats.tiles()]
        limits = value_range(*rates, positive=True)
        for image, rate in zip(self.images, rates, strict=True):
            show(image, self.geometry.tile, rate, limits)
