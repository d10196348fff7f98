"""The whole anode: hit rate of every pixel where it sits, from a multi-tile layout."""

from __future__ import annotations

import logging

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from exporter.render.geometry import shared_geometry
from plotters._accumulators import ChannelStats
from plotters._axes import plain_log_colorbar, set_title
from plotters._bases import BuiltinPlot

log = logging.getLogger(__name__)


class AnodeMap(BuiltinPlot):
    """Hit rate per pixel on each io_group's anode, tiles placed and oriented as the layout says.

    Needs a multi-tile layout (PIXEL_GEOMETRY_PATH); with a single-tile layout it draws nothing.
    """

    what = "Anode hit rate"
    _told = False

    def __init__(self) -> None:
        self.stats = ChannelStats()
        geometry = shared_geometry()
        self.anode = geometry.anode if geometry is not None else None
        if geometry is not None and self.anode is None and not AnodeMap._told:
            AnodeMap._told = True
            log.warning("AnodeMap off: %s is not a multi-tile layout", geometry.path)

    def update(self, packets: np.ndarray) -> None:
        if self.anode is not None:
            self.stats.update(packets, self.batch.tile_channel_sums())

    def ready(self) -> bool:
        return self.anode is not None and bool(self.stats.tiles())

    def pixels(self, io_group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Anode (z, y) in mm and hit rate of the io_group's pixels with hits, and hits left out."""
        keys = self.stats.totals.keys
        mine = keys // (16384 * 1000) == io_group
        tiles = (keys[mine] // 16384) % 1000
        chips = (keys[mine] // 64) % 256
        channels = keys[mine] % 64
        hits = self.stats.totals.values[mine, 0]
        # A data tile is io_channels 4t-3..4t; the layout names the tile of each io_channel.
        io_channels = (tiles - 1)[:, None] * 4 + np.arange(1, 5)
        layout_tile = self.anode.tile_of_io[io_group, io_channels].max(axis=1)
        z = np.where(layout_tile >= 0, self.anode.z[np.maximum(layout_tile, 0), chips, channels],
                     np.nan)
        y = np.where(layout_tile >= 0, self.anode.y[np.maximum(layout_tile, 0), chips, channels],
                     np.nan)
        placed = np.isfinite(z)
        rate = hits / self.stats.livetime(io_group)
        return z[placed], y[placed], rate[placed], int(hits[~placed].sum())

    def structure(self) -> object:
        return tuple(sorted({group for group, _ in self.stats.tiles()}))

    def build(self, fig: Figure) -> None:
        groups = self.structure()
        fig.set_size_inches(6.0 * len(groups), 9.0)
        fig.subplots_adjust(left=0.08, right=0.95, bottom=0.07, top=0.9, wspace=0.35)
        axes = fig.subplots(1, len(groups), squeeze=False)[0]
        self.points = {}
        for ax, group in zip(axes, groups, strict=True):
            self.points[group] = ax.scatter([], [], c=[], marker="s", s=2, linewidths=0,
                                            norm=LogNorm(1.0, 10.0), cmap="viridis")
            plain_log_colorbar(fig.colorbar(self.points[group], ax=ax, label="hit rate [Hz]",
                                            shrink=0.8))
            ax.set_xlabel("z [mm]")
            ax.set_ylabel("y [mm]")
            ax.set_aspect("equal")

    def refresh(self, fig: Figure) -> None:
        for group, points in self.points.items():
            z, y, rate, left_out = self.pixels(group)
            points.set_offsets(np.column_stack([z, y]))
            points.set_array(rate)
            if len(rate):
                points.set_clim(rate.min(), max(rate.max(), rate.min() * 1.01))
            ax = points.axes
            set_title(ax, f"io_group {group}: {left_out:,} hits not in the layout",
                         fontsize="medium")
            ax.update_datalim(np.column_stack([z, y]))
            ax.autoscale_view()
