"""Pixel maps of each tile, placed by the larpix-geometry layout: mean ADC, spread, hit rate.

``PixelMap_<io_group>_<tile>`` exist for the seed's io_groups 1-2 and tiles 1-8
(made by a factory, as in the seed); ``PixelMaps`` shows every tile that has data.
Both need a layout (see ``exporter.geometry``); without a usable one they draw nothing.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from exporter.geometry import TileLayout, shared_geometry
from exporter.packets import tile_of
from plotters._support import BuiltinPlot, ChannelStats, plain_log

#: (array, colour-bar label, log scale) of each panel of a tile map.
PANELS = (("mean", "mean ADC [counts]", False), ("std", "ADC spread (std) [counts]", False),
          ("rate", "hit rate [Hz]", True))


def draw_tile(ax: Axes, layout: TileLayout, values: np.ndarray, norm: Normalize | None = None,
              label: str | None = None) -> AxesImage:
    """One tile as an image on its pixel grid, in mm; a colour bar when ``label`` is given."""
    shown = ax.imshow(layout.grid(values), origin="lower", extent=layout.extent,
                      interpolation="nearest", cmap="viridis", norm=norm)
    if label is not None:
        colorbar = ax.figure.colorbar(shown, ax=ax, label=label, shrink=0.8)
        if isinstance(norm, LogNorm):
            plain_log(colorbar.ax.yaxis)
    return shown


def log_norm(*arrays: np.ndarray) -> LogNorm | None:
    """A log colour scale spanning the positive finite values, None if there are none."""
    values = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays])
    return LogNorm(values.min(), values.max()) if len(values) else None


def unplaced_hits(layout: TileLayout, hits: np.ndarray) -> int:
    """Hits on channels the layout does not connect to a pixel."""
    return int(hits[~layout.connected].sum())


class _TileMap(BuiltinPlot):
    """Mean ADC, ADC spread and hit rate of one tile."""

    io_group = 1
    tile = 1
    #: Drawn only when named in --plots: PixelMaps and ChannelHealth cover every tile by default.
    default = False
    figsize = (14.0, 4.2)

    def __init__(self) -> None:
        self.what = f"Pixel map io_group {self.io_group} tile {self.tile}"
        self.stats = ChannelStats()
        self.geometry = shared_geometry()

    def update(self, packets: np.ndarray) -> None:
        mine = ((packets["io_group"] == self.io_group)
                & ((tile_of(packets["io_channel"]) == self.tile)
                   | (packets["io_channel"] == 0)))
        self.stats.update(packets[mine])

    def ready(self) -> bool:
        return self.geometry is not None and (self.io_group, self.tile) in self.stats.tiles()

    def draw(self, fig: Figure) -> None:
        arrays = self.stats.tile_arrays(self.io_group, self.tile)
        layout = self.geometry.tile
        fig.subplots_adjust(left=0.05, right=0.97, bottom=0.12, top=0.88, wspace=0.35)
        for ax, (name, label, log) in zip(fig.subplots(1, 3), PANELS, strict=True):
            draw_tile(ax, layout, arrays[name], log_norm(arrays[name]) if log else None, label)
            ax.set_xlabel("x [mm]")
        fig.axes[0].set_ylabel("y [mm]")
        fig.text(0.01, 0.01, f"live time {self.stats.livetime(self.io_group):.0f} s; "
                 f"{unplaced_hits(layout, arrays['hits']):,} hits on unconnected channels",
                 fontsize="small")


def pixel_map_factory(io_group: int, tile: int) -> type:
    """A pixel-map plot class for one io_group and tile (the seed's ``PixelMap_X_X``)."""
    return type(f"PixelMap_{io_group}_{tile}", (_TileMap,),
                {"io_group": io_group, "tile": tile,
                 "__doc__": f"Mean ADC, ADC spread, hit rate of io_group {io_group} tile {tile}."})


for _io_group in (1, 2):
    for _tile in range(1, 9):
        globals()[f"PixelMap_{_io_group}_{_tile}"] = pixel_map_factory(_io_group, _tile)


class PixelMaps(BuiltinPlot):
    """Hit rate of every pixel of every tile with data, one panel per io_group and tile."""

    what = "Hit rate per pixel"
    columns = 4

    def __init__(self) -> None:
        self.stats = ChannelStats()
        self.geometry = shared_geometry()

    def update(self, packets: np.ndarray) -> None:
        self.stats.update(packets)

    def ready(self) -> bool:
        return self.geometry is not None and bool(self.stats.tiles())

    def draw(self, fig: Figure) -> None:
        tiles = self.stats.tiles()
        columns = min(self.columns, len(tiles))
        rows = -(-len(tiles) // columns)
        fig.set_size_inches(2.6 * columns + 1.2, 2.6 * rows + 0.6)
        fig.subplots_adjust(left=0.02, right=0.85, bottom=0.02, top=1 - 0.5 / (2.6 * rows + 0.6),
                            wspace=0.05, hspace=0.15)
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        rates = [self.stats.tile_arrays(group, tile)["rate"] for group, tile in tiles]
        norm = log_norm(*rates)
        for ax, (group, tile), rate in zip(axes, tiles, rates, strict=False):
            shown = draw_tile(ax, self.geometry.tile, rate, norm)
            ax.set_title(f"io_group {group} tile {tile}", fontsize="small")
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[len(tiles):]:
            ax.set_axis_off()
        colorbar = fig.colorbar(shown, cax=fig.add_axes((0.88, 0.1, 0.025, 0.8)),
                                label="hit rate [Hz]")
        plain_log(colorbar.ax.yaxis)
