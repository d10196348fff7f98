"""What the built-in plots accumulate over a file: time bins, histograms, keyed totals.

Not a plot module (its name starts with ``_``): discovery does not scan it.
Everything here is vectorised: loops run over io_groups or keys, never packets.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

from plotters._axes import log_x, log_y, rescale
from plotters._packets import timestamp_spans


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
        cols = self._columns(keys)
        lo, hi = int(seconds.min()), int(seconds.max())
        if len(self.counts):
            lo = min(lo, self.first * self.width)
            hi = max(hi, (self.first + len(self.counts)) * self.width - 1)
        while hi // self.width - lo // self.width + 1 > self.max_bins:
            self._widen()
        self._extend(lo // self.width, hi // self.width)
        rows = seconds // self.width - self.first
        n_cols = len(self.keys)
        flat = np.bincount(rows * n_cols + cols, minlength=self.counts.size)
        self.counts += flat.reshape(self.counts.shape)

    def _columns(self, keys: np.ndarray) -> np.ndarray:
        """Column of each key, adding the new keys; keys in a small range (packet types,
        tiles) are found with a table, not by sorting every packet's key."""
        low, high = int(keys.min()), int(keys.max())
        if high - low >= 1 << 20:
            self._add_keys(np.unique(keys))
            return np.searchsorted(self.keys, keys)
        present = np.flatnonzero(np.bincount(keys - low)) + low
        self._add_keys(present)
        table = np.zeros(high - low + 1, dtype=np.int64)
        table[present - low] = np.searchsorted(self.keys, present)
        return table[keys - low]

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
        """Count ``values`` of io_groups ``groups`` (small non-negative integers)."""
        if len(groups) == 0:
            return
        index = self.bin_index(values)
        n_bins = len(self.edges) - 1
        # One bincount for every group: bins 0..n_bins-1, then one bin for "outside".
        present = np.flatnonzero(np.bincount(groups))
        slot = np.zeros(int(present[-1]) + 1, dtype=np.int64)
        slot[present] = np.arange(len(present))
        flat = slot[groups] * (n_bins + 1) + np.where(index >= 0, index, n_bins)
        table = np.bincount(flat, minlength=len(present) * (n_bins + 1))
        for group, counts in zip(present.tolist(), table.reshape(-1, n_bins + 1), strict=True):
            self.counts[group] = self.counts.get(group, 0) + counts[:n_bins]
            self.outside[group] = self.outside.get(group, 0) + int(counts[n_bins])

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
        keys = keys.astype(np.int64)
        if np.all(keys[1:] > keys[:-1]):  # already summed per key (Batch.channel_sums)
            unique = keys
            sums = np.stack(columns, axis=1).astype(np.float64)
        else:
            unique, inverse = np.unique(keys, return_inverse=True)
            sums = np.stack([np.bincount(inverse, weights=c, minlength=len(unique))
                             for c in columns], axis=1)
        if np.array_equal(self.keys, unique):  # the same keys again: no merge
            self.values = self.values + sums
            return
        merged = np.union1d(self.keys, unique)
        values = np.zeros((len(merged), self.values.shape[1]))
        values[np.searchsorted(merged, self.keys)] += self.values
        values[np.searchsorted(merged, unique)] += sums
        self.keys, self.values = merged, values


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

    def update(self, packets: np.ndarray, tile_sums: tuple[np.ndarray, ...],
               only: tuple[int, int] | None = None) -> None:
        """Add a batch (its rows and ``Batch.tile_channel_sums``); with ``only=(io_group, tile)``,
        just that tile."""
        for group, (first, last) in timestamp_spans(packets).items():
            if only is None or group in (only[0], 0):
                self.first[group] = min(self.first.get(group, np.inf), first)
                self.last[group] = max(self.last.get(group, -np.inf), last)
        keys, hits, adc, squares = tile_sums
        if only is not None:
            mine = keys // 16384 == only[0] * 1000 + only[1]
            keys, hits, adc, squares = (a[mine] for a in (keys, hits, adc, squares))
        self.totals.add(keys, hits, adc, squares)

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
