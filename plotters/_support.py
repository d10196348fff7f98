"""Building blocks of the built-in plots: data time, time bins, keyed totals, axes.

Not a plot module (its name starts with ``_``): discovery does not scan it.
Everything here is vectorised: loops run over io_groups or keys, never packets.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Callable
from datetime import timezone
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from exporter.packets import DATA, TIMESTAMP, tile_of
from exporter.render.geometry import shared_geometry

SECONDS_PER_DAY = 86400.0
NO_POSITIVE_DATA = "Data has no positive values"


def latest_before(packets: np.ndarray, is_mark: np.ndarray, last: dict[int, float]) -> np.ndarray:
    """``timestamp`` of the latest marked packet at or before each packet, same io_group.

    ``last`` carries the latest marked timestamp per io_group from one call to the
    next and is updated; packets with no mark before them get NaN.
    """
    values = np.full(len(packets), np.nan)
    groups = packets["io_group"]
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        marks = np.where(is_mark[rows], np.arange(len(rows)), -1)
        np.maximum.accumulate(marks, out=marks)
        stamps = packets["timestamp"][rows[np.maximum(marks, 0)]].astype(np.float64)
        values[rows] = np.where(marks >= 0, stamps, last.get(int(group), np.nan))
        if marks[-1] >= 0:
            last[int(group)] = float(stamps[-1])
    return values


class BatchCache:
    """Results computed once per batch of packets and shared by every plot that needs them.

    The renderer hands the same array to all plots of a file in one render, so
    the array's identity (held weakly: a freed array never matches) is the key.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batch: weakref.ref | None = None
        self._values: dict = {}

    def get(self, packets: np.ndarray, key: object, compute: Callable[[], object]) -> object:
        with self._lock:
            if self._batch is None or self._batch() is not packets:
                self._batch, self._values = weakref.ref(packets), {}
            if key not in self._values:
                self._values[key] = compute()
            return self._values[key]


BATCH = BatchCache()


def data_times(packets: np.ndarray, last_timestamp: dict[int, float]) -> np.ndarray:
    """Unix data time of each packet: the latest timestamp packet (type 4) up to it, same io_group.

    A timestamp packet carries its own time; message packets (io_group 0) have none.
    The result is shared between plots (read it, do not write to it).
    """
    def compute() -> tuple[np.ndarray, dict[int, float]]:
        carry = dict(last_timestamp)
        return latest_before(packets, packets["packet_type"] == TIMESTAMP, carry), carry

    times, carry = BATCH.get(packets, ("data_times", tuple(sorted(last_timestamp.items()))),
                             compute)
    last_timestamp.update(carry)
    return times


def channel_sums(packets: np.ndarray) -> tuple[np.ndarray, ...]:
    """Data packets per channel: (keys, hits, sum of ADC, sum of ADC squared).

    A channel key is ``io_group << 24 | io_channel << 16 | chip_id << 8 | channel_id``,
    so keys sort by io_group, io_channel, chip and channel.

    Counted with ``bincount`` over a dense index (the (io_group, io_channel) pairs
    present, times 65,536 chip and channel values) rather than by sorting.
    """
    def compute() -> tuple[np.ndarray, ...]:
        data = packets["packet_type"] == DATA
        pair = (packets["io_group"][data].astype(np.int64) << 8) | packets["io_channel"][data]
        used = np.zeros(1 << 16, dtype=bool)
        used[pair] = True
        pairs = np.flatnonzero(used)
        index = np.zeros(1 << 16, dtype=np.int64)
        index[pairs] = np.arange(len(pairs))
        dense = ((index[pair] << 16) | (packets["chip_id"][data].astype(np.int64) << 8)
                 | packets["channel_id"][data])
        size = len(pairs) << 16
        hits = np.bincount(dense, minlength=size)
        seen = np.flatnonzero(hits)
        adc = packets["dataword"][data].astype(np.float64)
        keys = (pairs[seen >> 16] << 16) | (seen & 0xFFFF)
        return (keys, hits[seen].astype(np.float64),
                np.bincount(dense, weights=adc, minlength=size)[seen],
                np.bincount(dense, weights=adc * adc, minlength=size)[seen])

    return BATCH.get(packets, "channel_sums", compute)


def timestamp_spans(packets: np.ndarray) -> dict[int, tuple[float, float]]:
    """First and last unix time of the timestamp packets of each io_group."""
    def compute() -> dict[int, tuple[float, float]]:
        is_stamp = packets["packet_type"] == TIMESTAMP
        groups, stamps = packets["io_group"][is_stamp], packets["timestamp"][is_stamp]
        return {int(group): (float(mine.min()), float(mine.max()))
                for group in np.unique(groups) for mine in [stamps[groups == group]]}

    return BATCH.get(packets, "timestamp_spans", compute)


class TimeBins:
    """Counts per data-time bin and integer key, with bins that widen to stay bounded.

    Bins are aligned to multiples of ``width`` seconds since the epoch, and
    ``width`` doubles whenever the run spans more than ``max_bins`` bins, so the
    result does not depend on how the packets were split between calls.
    """

    def __init__(self, max_bins: int = 2048) -> None:
        self.max_bins = max_bins
        self.width = 1
        self.first = 0  # absolute index of the first bin
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros((0, 0))

    def add(self, seconds: np.ndarray, keys: np.ndarray) -> None:
        """Count one per (second, key); NaN seconds (no data time) are left out."""
        known = np.isfinite(seconds)
        seconds, keys = seconds[known].astype(np.int64), keys[known].astype(np.int64)
        if len(seconds) == 0:
            return
        self._add_keys(np.unique(keys))
        lo, hi = int(seconds.min()), int(seconds.max())
        if len(self.counts):
            lo = min(lo, self.first * self.width)
            hi = max(hi, (self.first + len(self.counts)) * self.width - 1)
        while hi // self.width - lo // self.width + 1 > self.max_bins:
            self._widen()
        self._extend(lo // self.width, hi // self.width)
        rows = seconds // self.width - self.first
        cols = np.searchsorted(self.keys, keys)
        n_cols = len(self.keys)
        flat = np.bincount(rows * n_cols + cols, minlength=self.counts.size)
        self.counts += flat.reshape(self.counts.shape)

    def _add_keys(self, new: np.ndarray) -> None:
        merged = np.union1d(self.keys, new)
        if len(merged) == len(self.keys):
            return
        counts = np.zeros((len(self.counts), len(merged)))
        counts[:, np.searchsorted(merged, self.keys)] = self.counts
        self.keys, self.counts = merged, counts

    def _widen(self) -> None:
        if len(self.counts):
            start = self.first // 2
            stop = (self.first + len(self.counts) - 1) // 2
            merged = np.zeros((stop - start + 1, self.counts.shape[1]))
            np.add.at(merged, np.arange(self.first, self.first + len(self.counts)) // 2 - start,
                      self.counts)
            self.first, self.counts = start, merged
        else:
            self.first //= 2
        self.width *= 2

    def _extend(self, lo: int, hi: int) -> None:
        if not len(self.counts):
            self.first, self.counts = lo, np.zeros((hi - lo + 1, len(self.keys)))
            return
        start, stop = min(lo, self.first), max(hi, self.first + len(self.counts) - 1)
        if start == self.first and stop == self.first + len(self.counts) - 1:
            return
        grown = np.zeros((stop - start + 1, len(self.keys)))
        grown[self.first - start:self.first - start + len(self.counts)] = self.counts
        self.first, self.counts = start, grown

    @property
    def starts(self) -> np.ndarray:
        """Unix time of the start of each bin."""
        return (self.first + np.arange(len(self.counts))) * float(self.width)

    def column(self, key: int) -> np.ndarray:
        index = np.searchsorted(self.keys, key)
        if index < len(self.keys) and self.keys[index] == key:
            return self.counts[:, index]
        return np.zeros(len(self.counts))


class Histograms:
    """Fixed-edge histograms per io_group, with the values outside the edges counted.

    Edges are evenly spaced, in value or in log10 of value (``logarithmic``); bins
    are found arithmetically, then corrected against the edges so that every value
    lands where ``np.histogram`` would put it.
    """

    def __init__(self, edges: np.ndarray, logarithmic: bool = False) -> None:
        self.edges = edges
        self.logarithmic = logarithmic
        scale = np.log10(edges) if logarithmic else edges
        self.start, self.step = scale[0], (scale[-1] - scale[0]) / (len(edges) - 1)
        self.counts: dict[int, np.ndarray] = {}
        self.outside: dict[int, int] = {}

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value, -1 outside the edges (the last edge is inside, as in numpy)."""
        n_bins = len(self.edges) - 1
        inside = (values >= self.edges[0]) & (values <= self.edges[-1])
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = np.log10(values) if self.logarithmic else values
            index = np.floor((scaled - self.start) / self.step)
        index = np.clip(np.nan_to_num(index), 0, n_bins - 1).astype(np.int64)
        index -= (index > 0) & (values < self.edges[index])
        index += (index < n_bins - 1) & (values >= self.edges[index + 1])
        return np.where(inside, index, -1)

    def add(self, groups: np.ndarray, values: np.ndarray) -> None:
        index = self.bin_index(values)
        n_bins = len(self.edges) - 1
        for group in np.unique(groups):
            mine = index[groups == group]
            key = int(group)
            counts = np.bincount(mine[mine >= 0], minlength=n_bins)
            self.counts[key] = self.counts.get(key, 0) + counts
            self.outside[key] = self.outside.get(key, 0) + int(np.count_nonzero(mine < 0))

    def build(self, ax: Axes) -> None:
        self.centres = np.sqrt(self.edges[1:] * self.edges[:-1]) if self.logarithmic else (
            self.edges[1:] + self.edges[:-1]) / 2
        self.lines = {group: ax.plot(self.centres, np.zeros(len(self.centres)),
                                     drawstyle="steps-mid", lw=1)[0]
                      for group in sorted(self.counts)}
        log_y(ax)
        if self.logarithmic:
            log_x(ax)
        ax.grid(True, alpha=0.3)

    def refresh(self, ax: Axes) -> None:
        for group, drawn in self.lines.items():
            drawn.set_ydata(self.counts[group])
            drawn.set_label(f"io_group {group} ({self.outside[group]:,} outside)")
        rescale(ax)
        ax.legend(fontsize="small")


class KeyedTotals:
    """Running sums of several quantities per integer key (channel, chip, ...)."""

    def __init__(self, n_values: int = 1) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.values = np.zeros((0, n_values))

    def add(self, keys: np.ndarray, *columns: np.ndarray) -> None:
        if len(keys) == 0:
            return
        unique, inverse = np.unique(keys.astype(np.int64), return_inverse=True)
        sums = np.stack([np.bincount(inverse, weights=c, minlength=len(unique))
                         for c in columns], axis=1)
        merged = np.union1d(self.keys, unique)
        values = np.zeros((len(merged), self.values.shape[1]))
        values[np.searchsorted(merged, self.keys)] += self.values
        values[np.searchsorted(merged, unique)] += sums
        self.keys, self.values = merged, values


def channel_label(key: int) -> str:
    """``io_group-io_channel-chip-channel`` of a channel key (see ``channel_sums``)."""
    return f"{key >> 24}-{(key >> 16) & 255}-{(key >> 8) & 255}-{key & 255}"


def tile_key(io_group: np.ndarray, io_channel: np.ndarray) -> np.ndarray:
    """io_group * 1000 + tile of data packets."""
    return io_group.astype(np.int64) * 1000 + tile_of(io_channel)


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

    def __call__(self, filename: str, fh, fig: Figure | None = None) -> Figure | None:
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


def rescale(ax: Axes) -> None:
    """Fit the view to the artists' new data (a log axis may have none above zero yet)."""
    ax.relim()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", NO_POSITIVE_DATA)
        ax.autoscale_view()


class ChannelStats:
    """Hits, ADC sum and ADC sum of squares per channel of each (io_group, tile), and live time.

    Live time of an io_group: from its first to its last timestamp packet, plus one
    second (the span of whole data seconds seen); see ``livetime``.
    """

    def __init__(self) -> None:
        # Key ((io_group * 1000 + tile) * 256 + chip_id) * 64 + channel_id.
        self.totals = KeyedTotals(3)
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def update(self, packets: np.ndarray, only: tuple[int, int] | None = None) -> None:
        """Add a batch; with ``only=(io_group, tile)``, just that tile."""
        for group, (first, last) in timestamp_spans(packets).items():
            if only is None or group in (only[0], 0):
                self.first[group] = min(self.first.get(group, np.inf), first)
                self.last[group] = max(self.last.get(group, -np.inf), last)
        keys, hits, adc, squares = channel_sums(packets)
        tiles = (keys >> 24) * 1000 + tile_of((keys >> 16) & 255)
        if only is not None:
            mine = tiles == only[0] * 1000 + only[1]
            keys, hits, adc, squares, tiles = (a[mine] for a in (keys, hits, adc, squares, tiles))
        self.totals.add(tiles * 16384 + ((keys >> 8) & 255) * 64 + (keys & 255),
                        hits, adc, squares)

    def livetime(self, io_group: int) -> float:
        """Seconds of the io_group's timestamps; of all timestamps if it has none of its own.

        Packet files before hdf5format 2.3 store timestamp packets with io_group 0.
        """
        if io_group in self.first:
            return self.last[io_group] - self.first[io_group] + 1.0
        if not self.first:
            return np.nan
        return max(self.last.values()) - min(self.first.values()) + 1.0

    def tiles(self) -> list[tuple[int, int]]:
        """(io_group, tile) pairs with data, sorted."""
        return [(int(k) // 1000, int(k) % 1000) for k in np.unique(self.totals.keys // 16384)]

    def tile_arrays(self, io_group: int, tile: int) -> dict[str, np.ndarray]:
        """Per-channel ``hits``, ``mean``, ``std`` and ``rate`` as [chip_id, channel_id] arrays.

        ``mean``, ``std`` and ``rate`` are NaN where a channel has no hits.
        """
        mine = self.totals.keys // 16384 == io_group * 1000 + tile
        chips = (self.totals.keys[mine] // 64) % 256
        channels = self.totals.keys[mine] % 64
        count, total, squares = self.totals.values[mine].T
        hits = np.zeros((256, 64))
        hits[chips, channels] = count
        mean = np.full((256, 64), np.nan)
        mean[chips, channels] = total / count
        std = np.full((256, 64), np.nan)
        std[chips, channels] = np.sqrt(np.maximum(squares / count - (total / count) ** 2, 0.0))
        with np.errstate(invalid="ignore"):
            rate = np.where(hits > 0, hits / self.livetime(io_group), np.nan)
        return {"hits": hits, "mean": mean, "std": std, "rate": rate}


class TileMapPlot(BuiltinPlot):
    """A map of every pixel of each tile with data, placed by the shared layout."""

    columns = 4

    def __init__(self) -> None:
        self.stats = ChannelStats()
        self.geometry = shared_geometry()

    def update(self, packets: np.ndarray) -> None:
        self.stats.update(packets)

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


def tile_panels(fig: Figure, rows: int, columns: int, count: int) -> np.ndarray:
    """A grid of bare map axes; the ones past ``count`` are hidden."""
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[count:]:
        ax.set_axis_off()
    return axes
