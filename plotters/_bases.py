"""Base classes of the built-in plots: build the figure once, then only feed it new data.

Not a plot module (its name starts with ``_``): discovery does not scan it, and
no class here is bound in a plot module, so none of them is listed as a plot.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from exporter.metrics.clock import DataClock
from exporter.render.geometry import shared_geometry
from plotters._accumulators import ChannelStats, TimeBins
from plotters._axes import (
    plain_log_colorbar,
    set_title,
    show,
    tile_image,
    tile_panels,
    value_range,
)
from plotters._packets import Batch, data_times


def new_figure(fig: Figure | None, figsize: tuple[float, float]) -> Figure:
    """A blank figure: the previous one cleared (reused), or a new one off pyplot.

    A new figure gets its own Agg canvas, which keeps one renderer across saves
    (a bare Figure would get a fresh canvas and pixel buffer at every save).
    """
    if fig is None:
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        return fig
    fig.clear()
    return fig


def title(fig: Figure, what: str, filename: str) -> None:
    fig.suptitle(f"{what} - {Path(filename).name}")


class BuiltinPlot:
    """Accumulate new packets, then show the accumulated state in the figure.

    The figure's axes and artists are built once (``build``) and only get new data
    afterwards (``refresh``): rebuilding costs far more than drawing. They are
    built again when ``structure()`` changes (a new io_group, tile or series).
    Subclasses set ``what`` (the title) and ``figsize``. Until ``ready()`` the
    plot returns no figure.
    """

    what = ""
    figsize: tuple[float, float] = (10.0, 6.0)
    _built: Figure | None = None
    _structure: object = None
    #: The current render's batch: its sums are counted once for every built-in plot.
    batch: Batch | None = None

    def __call__(self, filename: str, fh, fig: Figure | None = None) -> Figure | None:
        self.batch = Batch.of(fh)
        self.update(fh["packets"])
        if not self.ready():
            return fig
        structure = self.structure()
        if fig is None or fig is not self._built or structure != self._structure:
            fig = new_figure(fig, self.figsize)
            self.build(fig)
            title(fig, self.what, filename)
            self._built, self._structure = fig, structure
        self.refresh(fig)
        return fig

    def update(self, packets: np.ndarray) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def structure(self) -> object:
        return None

    def build(self, fig: Figure) -> None:
        raise NotImplementedError

    def refresh(self, fig: Figure) -> None:
        raise NotImplementedError


class PerGroupPlot(BuiltinPlot):
    """One series per io_group: shown once a group has some, built again when a group appears."""

    def groups(self) -> Collection[int]:
        """The io_groups with something to show."""
        raise NotImplementedError

    def ready(self) -> bool:
        return bool(self.groups())

    def structure(self) -> object:
        return tuple(sorted(self.groups()))


class TimeBinnedPlot(BuiltinPlot):
    """Packets counted per data-time bin and key (``self.bins``), in data time as the metrics use.

    Subclasses choose which packets count under which key (``count``) and draw
    the bins; the figure is built again when a key appears.
    """

    def __init__(self) -> None:
        self.clock = DataClock()
        self.bins = TimeBins()

    def update(self, packets: np.ndarray) -> None:
        self.count(packets, data_times(self.clock, packets))

    def count(self, packets: np.ndarray, seconds: np.ndarray) -> None:
        """Add ``packets`` (data time ``seconds``, NaN if none) to ``self.bins``."""
        raise NotImplementedError

    def ready(self) -> bool:
        return len(self.bins.counts) > 0

    def structure(self) -> object:
        return tuple(self.bins.keys)


class TileMapPlot(BuiltinPlot):
    """A map of every pixel of each tile with data, placed by the shared layout."""

    columns = 4

    def __init__(self) -> None:
        self.stats = ChannelStats()
        self.geometry = shared_geometry()

    def update(self, packets: np.ndarray) -> None:
        self.stats.update(packets, self.batch.tile_channel_sums())

    def ready(self) -> bool:
        return self.geometry is not None and bool(self.stats.tiles())

    def structure(self) -> object:
        return tuple(self.stats.tiles())

    def grid(self, height_extra: float) -> tuple[int, int, float]:
        """Rows, columns and figure height (inches) for one 2.6-inch panel per tile."""
        count = len(self.stats.tiles())
        columns = min(self.columns, count)
        rows = -(-count // columns)
        return rows, columns, 2.6 * rows + height_extra


class EveryTileMap(TileMapPlot):
    """One per-channel quantity of ``ChannelStats.tile_arrays`` on every tile with data,
    one panel per io_group and tile, under one colour scale fitted to every tile shown."""

    #: The ``tile_arrays`` key shown, its colour-bar label, and whether its scale is log.
    quantity = ""
    label = ""
    log = False

    def build(self, fig: Figure) -> None:
        tiles = self.stats.tiles()
        rows, columns, height = self.grid(0.6)
        fig.set_size_inches(2.6 * columns + 1.2, height)
        fig.subplots_adjust(left=0.02, right=0.85, bottom=0.02, top=1 - 0.6 / height,
                            wspace=0.05, hspace=0.15)
        axes = tile_panels(fig, rows, columns, len(tiles))
        self.images = []
        for ax, (group, tile) in zip(axes, tiles, strict=False):
            self.images.append(tile_image(ax, self.geometry.tile, log=self.log))
            set_title(ax, f"io_group {group} tile {tile}", fontsize="small")
        colorbar = fig.colorbar(self.images[0], cax=fig.add_axes((0.88, 0.1, 0.025, 0.8)),
                                label=self.label)
        if self.log:
            plain_log_colorbar(colorbar)

    def values(self) -> list[np.ndarray]:
        """The quantity of each tile, [chip_id, channel_id], NaN where a channel has no hits."""
        return [self.stats.tile_arrays(group, tile)[self.quantity]
                for group, tile in self.stats.tiles()]

    def refresh(self, fig: Figure) -> None:
        values = self.values()
        limits = value_range(*values, positive=self.log)
        for image, tile_values in zip(self.images, values, strict=True):
            show(image, self.geometry.tile, tile_values, limits)
