"""The per-channel table of each data file: what ``/api/channels`` and the quality checks read.

Per-pixel detail is never a Prometheus series (~400 k channels at 2x2 scale);
it lives here, one table per data file (a run). ``ChannelTables`` keeps the
counts (see ``ChannelCounts``) of at most ``max_files`` files; ``ChannelTable``
is the snapshot of one of them.

A table always covers its file from row 0. A file that needs a table while
every table belongs to a file still receiving rows *waits* (its rows count
everywhere but in a table) instead of taking one: taking it would leave the
other file's table without the rows counted so far. The table of a file
read to its end (``finish``), or without rows for ``IDLE_SECONDS``, goes to
the next file that needs one: a new file, or a waiting one that receives
rows, whose rows so far are then read again into it (``grant``,
``exporter.replay``); the file that gave it up waits from then on.

``rate_hz`` is the channel's rate over the detector's rate window (data time,
complete seconds ``T-W <= s < T``). The window follows the file that
feeds an io_group; when another file takes over an io_group (the DAQ rotated
its file), the old file keeps the window it had at that moment.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np

from exporter.metrics.channel_counts import CHANNELS_PER_CHIP, ChannelCounts
from exporter.metrics.chips import ChipSlots
from exporter.metrics.clock import sorted_unique
from exporter.packets import tile_of

#: A channel is ``quiet`` when it has fewer than this fraction of the median count of
#: its chip's channels seen in the file ...
QUIET_FRACTION = 0.1
#: ... and that median is at least this many packets (fewer cannot tell quiet from chance:
#: a channel expecting 50 packets shows 5 or fewer with a Poisson probability of 2e-15).
QUIET_MIN_CHIP_MEDIAN = 50
STATUSES = ("ok", "hot", "quiet")
#: Files whose per-channel counts are kept (at 2x2 scale ~230 MB each, mostly histograms).
MAX_FILES = 2
#: A file without new rows this long gives its table up to a file that needs one.
IDLE_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class PerChannelColumns:
    """The per-channel columns of a table (see ``ChannelTable``): one file's or a run's."""

    io_group: np.ndarray
    io_channel: np.ndarray
    tile: np.ndarray
    chip_id: np.ndarray
    channel_id: np.ndarray
    count: np.ndarray
    rate_hz: np.ndarray
    adc_mean: np.ndarray
    adc_rms: np.ndarray
    parity_errors: np.ndarray
    fifo_half: np.ndarray
    fifo_full: np.ndarray
    status: np.ndarray
    adc_histogram: np.ndarray | None = None


@dataclass(frozen=True)
class ChannelTable(PerChannelColumns):
    """One row per channel seen (with at least one data packet) in a data file.

    Every field but ``file``, ``rate_window``, ``hot_rate`` and
    ``adc_histogram`` is a numpy column of one value per channel:

    * ``io_group``, ``io_channel``, ``tile`` (``(io_channel - 1) // 4 + 1``),
      ``chip_id``, ``channel_id`` (int64): which channel;
    * ``count`` (int64): data packets of the channel read from the file;
    * ``rate_hz`` (float64): data packets per second over the rate window;
    * ``adc_mean``, ``adc_rms`` (float64): mean and standard deviation (ddof 0)
      of their ``dataword``: pedestal and noise (signal tail included);
    * ``parity_errors`` (int64): data packets with ``valid_parity == 0``;
    * ``fifo_half``, ``fifo_full`` (int64): data packets with bit 0 (more than
      half full) or bit 1 (full) set in ``local_fifo`` or ``shared_fifo``;
    * ``status`` (str): ``hot`` (``rate_hz`` above ``hot_rate``), ``quiet``
      (count below ``QUIET_FRACTION`` of the median of its chip's channels, when
      that median is at least ``QUIET_MIN_CHIP_MEDIAN``), else ``ok``.

    ``adc_histogram`` is None unless asked for: (channel, 256) uint32 counts of
    each dataword value, for estimators a signal tail cannot fool.
    Rows are in (io_group, io_channel, chip_id, channel_id) order.
    """

    file: str
    rate_window: float
    hot_rate: float

    #: Columns of the table, in the order of the contract.
    COLUMNS = ("io_group", "io_channel", "tile", "chip_id", "channel_id", "count", "rate_hz",
               "adc_mean", "adc_rms", "parity_errors", "fifo_half", "fifo_full", "status")
    NUMERIC = COLUMNS[:-1]

    def __len__(self) -> int:
        return len(self.count)

    def take(self, rows: np.ndarray | slice) -> ChannelTable:
        """The table of some rows (an index array, boolean mask or slice)."""
        columns = {f.name: getattr(self, f.name)[rows] for f in fields(self)
                   if f.name in self.COLUMNS}
        histogram = None if self.adc_histogram is None else self.adc_histogram[rows]
        return replace(self, **columns, adc_histogram=histogram)

    @classmethod
    def build(cls, file: str, counts: ChannelCounts, chip_keys: np.ndarray,
              window: np.ndarray, rate_window: float, hot_rate: float,
              histograms: bool = False) -> ChannelTable:
        """The table of one file's ``counts``; ``chip_keys`` are the chip slots' keys
        (``chip_id | io_channel << 8 | io_group << 16``) and ``window`` the data packets
        of each flat channel in the rate window."""
        n = min(counts.slots, len(chip_keys)) * CHANNELS_PER_CHIP
        seen = np.flatnonzero(counts.count[CHANNELS_PER_CHIP:n]) + CHANNELS_PER_CHIP
        key = chip_keys[seen // CHANNELS_PER_CHIP]
        order = np.argsort(key, kind="stable")   # slots are numbered as chips appear
        seen, key = seen[order], key[order]
        count = counts.count[seen]
        total, squares = counts.adc_sum[seen], counts.adc_squares[seen]
        mean = total / count
        # n * sum(x^2) - sum(x)^2 is exact in int64 below ~1.2e7 packets a channel
        exact = count < 10**7
        spread = np.where(exact, count * squares - total * total, 0) / (count * count)
        spread[~exact] = squares[~exact] / count[~exact] - mean[~exact] ** 2
        rate = window[seen] / rate_window
        io_channel = key >> 8 & 0xFF
        status = _status(key, count, rate, hot_rate)
        histogram = None
        if histograms:
            by_index = np.sort(seen)
            histogram = counts.histograms(by_index)[np.searchsorted(by_index, seen)]
        return cls(file=file, rate_window=rate_window, hot_rate=hot_rate,
                   io_group=key >> 16, io_channel=io_channel, tile=tile_of(io_channel),
                   chip_id=key & 0xFF, channel_id=seen % CHANNELS_PER_CHIP, count=count,
                   rate_hz=rate, adc_mean=mean, adc_rms=np.sqrt(np.maximum(spread, 0)),
                   parity_errors=counts.parity_errors[seen], fifo_half=counts.fifo_half[seen],
                   fifo_full=counts.fifo_full[seen], status=status, adc_histogram=histogram)


def _status(chip_key: np.ndarray, count: np.ndarray, rate: np.ndarray,
            hot_rate: float) -> np.ndarray:
    """hot / quiet / ok of each channel (rows sorted by chip)."""
    status = np.full(len(count), "ok", dtype="<U5")
    if len(count):
        starts = np.flatnonzero(np.r_[True, chip_key[1:] != chip_key[:-1]])
        sizes = np.diff(np.r_[starts, len(count)])
        chip = np.repeat(np.arange(len(starts)), sizes)
        # a chip's counts in a row of its own (at most 64), sorted there
        by_chip = np.full((len(starts), CHANNELS_PER_CHIP), np.inf)
        by_chip[chip, np.arange(len(count)) - starts[chip]] = count
        by_chip.sort(axis=1)
        chips = np.arange(len(starts))
        median = 0.5 * (by_chip[chips, (sizes - 1) // 2] + by_chip[chips, sizes // 2])
        chip_median = median[chip]
        quiet = (chip_median >= QUIET_MIN_CHIP_MEDIAN) & (count < QUIET_FRACTION * chip_median)
        status[quiet] = "quiet"
    status[rate > hot_rate] = "hot"
    return status


class ChannelTables:
    """Per-channel counts of a few files, under the detector's lock (see the module notes)."""

    def __init__(self, chips: ChipSlots, lock: threading.Lock, grow: Callable[[int], None],
                 max_files: int = MAX_FILES) -> None:
        self._chips = chips
        self._lock = lock
        self._grow = grow  # the detector's own per-slot arrays follow new chip slots
        self.max_files = max_files
        #: tables, the file that received data last at the end
        self._files: OrderedDict[str, ChannelCounts] = OrderedDict()
        #: files read to their end: their tables give way to a waiting file
        self._finished: set[str] = set()
        #: files with rows counted and no table, in the order they began to wait
        self.waiting: dict[str, None] = {}
        #: when each file (with a table, or waiting) last had rows counted (monotonic)
        self._last_rows: dict[str, float] = {}
        #: io_group -> the file whose data the detector's rate window holds
        self.window_owner: dict[int, str] = {}

    def counts(self, source: str) -> ChannelCounts | None:
        """The counts of ``source``, now the file that received data last; new if it has none
        and a table is free, else None (it waits: see the module notes)."""
        self._last_rows[source] = time.monotonic()
        counts = self._files.get(source)
        if counts is None:
            if source in self.waiting or not self._make_room():
                self.waiting.setdefault(source, None)
                return None
            counts = self._files[source] = ChannelCounts(self._chips.capacity)
        self._finished.discard(source)
        self._files.move_to_end(source)
        counts.grow(self._chips.capacity)
        return counts

    def grant(self, source: str) -> bool:
        """Give a waiting file that receives rows an empty table if one is free; its rows so
        far are the caller's to count into it again (``DetectorMetrics.count_channels``)."""
        if source not in self.waiting or not self._receiving(source) or not self._make_room():
            return False
        del self.waiting[source]
        self._files[source] = ChannelCounts(self._chips.capacity)
        self._files.move_to_end(source, last=False)  # it has received no new data
        return True

    def waiting_files(self) -> list[str]:
        """Files waiting for a table (for other threads than the one counting)."""
        with self._lock:
            return list(self.waiting)

    def finish(self, source: str) -> None:
        """``source`` is read to its end: its table stays until a waiting file needs it."""
        if source in self._files:
            self._finished.add(source)

    def _make_room(self) -> bool:
        """Whether a new table fits, after dropping that of a finished or idle file if need
        be (the one without rows for longest; it waits from then on)."""
        if len(self._files) < self.max_files:
            return True
        old = next((s for s in self._files if s in self._finished or not self._receiving(s)),
                   None)
        if old is None:
            return False
        self._drop(old)
        self.waiting[old] = None
        return True

    def _receiving(self, source: str) -> bool:
        return time.monotonic() - self._last_rows.get(source, -math.inf) < IDLE_SECONDS

    def _drop(self, source: str) -> None:
        self._files.pop(source, None)
        self._finished.discard(source)
        self.window_owner = {g: f for g, f in self.window_owner.items() if f != source}

    def take_window(self, source: str, groups: np.ndarray, window_counts) -> None:
        """``source`` feeds ``groups`` now: a file that fed one of them before keeps the window
        counts of its chips there (``window_counts()`` gives them per flat channel)."""
        current = None
        for g in sorted_unique(groups).tolist():
            owner = self.window_owner.get(g)
            if owner is not None and owner != source and owner in self._files:
                current = window_counts() if current is None else current
                counts = self._files[owner]
                n = min(counts.slots, len(self._chips.keys))
                mine = np.repeat(self._chips.group[:n] == g, CHANNELS_PER_CHIP)
                counts.frozen_window[:len(mine)][mine] = current[:len(mine)][mine]
            self.window_owner[g] = source

    def forget(self, source: str) -> None:
        """``source`` is gone, or is read again from its start."""
        self._drop(source)
        self.waiting.pop(source, None)
        self._last_rows.pop(source, None)

    def sources(self) -> list[str]:
        """Files with a table, the one that received data last first."""
        return list(reversed(self._files))

    def table(self, source: str, window: np.ndarray, rate_window: float, hot_rate: float,
              histograms: bool = False) -> ChannelTable | None:
        counts = self._files.get(source)
        if counts is None:
            return None
        # The window may come from the last published snapshot, taken before newer chips.
        n = min(counts.slots, len(self._chips.keys), window.size // CHANNELS_PER_CHIP)
        owned = np.array([self.window_owner.get(int(g)) == source
                          for g in range(256)])[self._chips.group[:n]]
        flat_window = counts.frozen_window.copy()
        own = np.repeat(owned, CHANNELS_PER_CHIP)
        flat_window[:len(own)][own] = window.reshape(-1)[:len(own)][own]
        return ChannelTable.build(source, counts, self._chips.keys, flat_window, rate_window,
                                  hot_rate, histograms)

    # -- the checkpoint protocol: arrays only -----------------------------------------------

    def checkpoint(self) -> dict[str, np.ndarray]:
        """Every file's counts, channels named by chip key and channel_id (not by slot)."""
        with self._lock:
            state: dict[str, np.ndarray] = {"channels.files": np.array(list(self._files), str)}
            owners = sorted(self.window_owner.items())
            state["channels.owner_group"] = np.array([g for g, _ in owners], np.int64)
            state["channels.owner_file"] = np.array([f for _, f in owners], str)
            for i, counts in enumerate(self._files.values()):
                part = counts.state()
                channel = part.pop("channel")
                part["chip_key"] = self._chips.keys[channel // CHANNELS_PER_CHIP]
                part["channel_id"] = channel % CHANNELS_PER_CHIP
                state.update({f"channels.{i}.{name}": v for name, v in part.items()})
            return state

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Add the counts of a checkpoint (taken by another process) to these."""
        with self._lock:
            for i, source in enumerate(state["channels.files"].tolist()):
                part = {name.split(".", 2)[2]: v for name, v in state.items()
                        if name.startswith(f"channels.{i}.")}
                ids = part.pop("chip_key").astype(np.uint32) << np.uint32(8)  # as in words
                slot = self._chips.lookup(ids).astype(np.int64)
                self._grow(self._chips.capacity)
                # the checkpoint's files had tables: they keep them, whatever this limit
                self.waiting.pop(source, None)
                counts = self._files.setdefault(source, ChannelCounts(self._chips.capacity))
                counts.load(part, slot * CHANNELS_PER_CHIP + part.pop("channel_id"))
            for g, source in zip(state["channels.owner_group"].tolist(),
                                 state["channels.owner_file"].tolist(), strict=True):
                self.window_owner[g] = source
