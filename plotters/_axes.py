"""Axis and colour-bar helpers of the built-in plots: log scales, UTC time axes, map panels.

Not a plot module (its name starts with ``_``): discovery does not scan it.
"""

from __future__ import annotations

import warnings
from datetime import timezone

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.colorbar import Colorbar
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from exporter.render.geometry import TileLayout

SECONDS_PER_DAY = 86400.0
NO_POSITIVE_DATA = "Data has no positive values"


def to_datenum(unix_seconds: np.ndarray) -> np.ndarray:
    """Matplotlib date numbers (days since 1970-01-01) of unix times."""
    return np.asarray(unix_seconds, dtype=np.float64) / SECONDS_PER_DAY


def utc_time_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=timezone.utc))
    ax.set_xlabel("data time (UTC)")


def plain_log(axis: Axis) -> None:
    """Label a log axis 0.01, 1, 1e+04 in plain text, decades only: quicker to draw."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())


def plain_log_colorbar(colorbar: Colorbar) -> None:
    """``plain_log`` for a colour bar (which keeps its own locators through updates).

    Ticks at 1, 2 and 5 per decade: a map's colour range is often under a decade.
    """
    colorbar.locator = LogLocator(subs=(1.0, 2.0, 5.0))
    colorbar.formatter = FuncFormatter(lambda value, _: f"{value:g}")
    colorbar.minorlocator = NullLocator()


def log_y(ax: Axes, nonpositive: str = "mask") -> None:
    """Log y axis; zeros are masked (lines) or clipped to the edge (bars, which start at 0)."""
    with warnings.catch_warnings():  # the axes are still empty: nothing to scale yet
        warnings.filterwarnings("ignore", NO_POSITIVE_DATA)
        ax.set_yscale("log", nonpositive=nonpositive)
    plain_log(ax.yaxis)


def log_x(ax: Axes, nonpositive: str = "mask") -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", NO_POSITIVE_DATA)
        ax.set_xscale("log", nonpositive=nonpositive)
    plain_log(ax.xaxis)


def rescale(ax: Axes) -> None:
    """Fit the view to the artists' new data (a log axis may have none above zero yet)."""
    ax.relim()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", NO_POSITIVE_DATA)
        ax.autoscale_view()


def set_title(ax: Axes, text: str, **kwargs) -> None:
    """``ax.set_title`` at the top edge (y = 1), where matplotlib would put it anyway.

    The built-in plots have no tick labels above their axes, so the automatic
    placement never moves a title; giving y skips it, and with it the bounding
    boxes of every tick label (100 on HotPixels) that it measures at each draw.
    """
    ax.set_title(text, y=1.0, **kwargs)


def tile_panels(fig: Figure, rows: int, columns: int, count: int) -> np.ndarray:
    """A grid of bare map axes (a frame, no ticks); the ones past ``count`` are hidden.

    The x and y axes are hidden rather than given no ticks: they draw nothing
    either way, but a hidden axis costs nothing to draw.
    """
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.xaxis.set_visible(False)
        ax.yaxis.set_visible(False)
    for ax in axes[count:]:
        ax.set_axis_off()
    return axes


def one_panel(fig: Figure, bottom: float = 0.12) -> Axes:
    """The single axes of a one-panel plot, with room for the labels."""
    fig.subplots_adjust(left=0.1, right=0.97, bottom=bottom)
    return fig.add_subplot()


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
