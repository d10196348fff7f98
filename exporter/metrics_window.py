"""What happened in the last seconds of data time: rates, active and hot channels, sync gaps.

Windows are in the DAQ's own clock (data time), so replayed or old files give
the same gauges as a live run. ``T`` is the latest data second of an
io_group; the window is the complete seconds ``T - W <= s < T``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from exporter.metrics_clock import N_GROUPS, NO_TIME, Segments
from exporter.metrics_rows import grow_axis

#: channel_id is a 6-bit field of the LArPix v2 word.
CHANNELS_PER_CHIP = 64


@dataclass(frozen=True)
class WindowView:
    """The window gauges of every io_group, as of one moment."""

    rate_hz: np.ndarray     # (io_group, packet type code) packets per second
    active: np.ndarray      # (io_group,) channels with data in the window
    hot: np.ndarray         # (io_group,) channels above the hot rate
    has_window: np.ndarray  # (io_group,) whether the io_group has a data second


class SlidingWindow:
    """Per-second packet counts (by type) and data counts (by channel) of recent seconds.

    A ring of ``floor(W) + 1`` slots per io_group holds the window's seconds
    plus the current, incomplete one; one more slot (``outside``), never read
    as a second, takes the rows that fall outside, so keys need no filtering.
    Columns are chip slots (see ``ChipSlots``), times 64 channels for the
    channel counts: memory follows the detector actually seen. Counts are
    int32 so the ring stays cache-sized at 2x2 scale; type counts leave the
    ring into ``retired`` (int64) when their slot is reused, so the ring also
    yields the packet totals.
    """

    def __init__(self, width: float, n_types: int, hot_rate: float) -> None:
        if not width >= 1:
            raise ValueError(f"rate window must be at least one second, got {width}")
        self.width = width
        self.hot_rate = hot_rate
        self.span = math.floor(width)
        self.n_slots = self.span + 1
        self.outside = self.n_slots
        self.latest = np.full(N_GROUPS, NO_TIME, np.int64)
        self.slot_second = np.full((self.n_slots, N_GROUPS), NO_TIME, np.int64)
        self.types = np.zeros((self.n_slots + 1, 1, n_types), np.int32)
        self.retired = np.zeros((1, n_types), np.int64)
        self.channels = np.zeros((self.n_slots + 1, 1, CHANNELS_PER_CHIP), np.int32)

    def grow(self, capacity: int) -> None:
        """Make room for chip slots ``0 .. capacity-1``."""
        self.types = grow_axis(self.types, 1, capacity)
        self.retired = grow_axis(self.retired, 0, capacity)
        self.channels = grow_axis(self.channels, 1, capacity)

    def ring_slots(self, seg: Segments, chip_group: np.ndarray) -> np.ndarray:
        """Advance the latest seconds; return the ring slot of each segment.

        Segments outside the window (or without data time) get ``outside``.
        """
        timed = seg.second != NO_TIME
        np.maximum.at(self.latest, seg.group[timed], seg.second[timed])
        inside = timed & (seg.second >= self.latest[seg.group] - self.span)
        ring = np.where(inside, seg.second % self.n_slots, self.outside)
        self._claim(ring[inside], seg.group[inside], seg.second[inside], chip_group)
        return ring

    def count_types(self, keys: np.ndarray) -> None:
        """Count rows at flat (ring slot, chip slot, type) keys."""
        np.add.at(self.types.reshape(-1), keys, np.int32(1))

    def count_channels(self, keys: np.ndarray) -> None:
        """Count data packets at flat (ring slot, chip slot, channel_id) keys."""
        np.add.at(self.channels.reshape(-1), keys, np.int32(1))

    def type_totals(self) -> np.ndarray:
        """Rows ever counted, by (chip slot, type)."""
        return self.retired + self.types.sum(axis=0)

    def fold_outside(self) -> None:
        """Empty the outside slot before its int32 counts could overflow."""
        self.retired += self.types[self.outside]
        self.types[self.outside] = 0
        self.channels[self.outside] = 0

    def _claim(self, ring: np.ndarray, group: np.ndarray, second: np.ndarray,
               chip_group: np.ndarray) -> None:
        """Point ring slots at their new seconds, retiring what an older second left there."""
        wanted = np.full_like(self.slot_second, NO_TIME)
        wanted[ring, group] = second
        changed = (wanted != NO_TIME) & (wanted != self.slot_second)
        for slot in np.flatnonzero(changed.any(axis=1)).tolist():
            stale = changed[slot, chip_group]
            self.retired[stale] += self.types[slot, stale]
            self.types[slot, stale] = 0
            self.channels[slot, stale] = 0
        self.slot_second[changed] = wanted[changed]

    def view(self, chip_group: np.ndarray) -> WindowView:
        has_window = self.latest != NO_TIME
        in_window = ((self.slot_second != NO_TIME)
                     & (self.slot_second >= self.latest - self.width)
                     & (self.slot_second < self.latest))
        per_slot = self._window_sum(self.types, in_window, chip_group)
        rate = np.stack([np.bincount(chip_group, weights=column, minlength=N_GROUPS)
                         for column in per_slot.T], axis=1) / self.width
        per_channel = self._window_sum(self.channels, in_window, chip_group)
        active = np.bincount(chip_group, weights=(per_channel > 0).sum(axis=1),
                             minlength=N_GROUPS).astype(np.int64)
        hot_channels = (per_channel / self.width > self.hot_rate).sum(axis=1)
        hot = np.bincount(chip_group, weights=hot_channels, minlength=N_GROUPS).astype(np.int64)
        return WindowView(rate, active, hot, has_window)

    def _window_sum(self, ring: np.ndarray, in_window: np.ndarray,
                    chip_group: np.ndarray) -> np.ndarray:
        """Sum over the ring slots in each chip slot's window: (chip slot, column)."""
        total = np.zeros(ring.shape[1:], np.int64)
        for slot in np.flatnonzero(in_window.any(axis=1)).tolist():
            columns = in_window[slot, chip_group]
            if columns.all():
                total += ring[slot]
            else:
                total[columns] += ring[slot, columns]
        return total


class SyncGaps:
    """Data seconds of each io_group that ended without an 'S' sync packet.

    A second is final once a later second has been seen for its io_group; only
    the latest second is ever pending, so the state is one second and one flag
    per io_group. Seconds older than the latest are late and already final.
    """

    def __init__(self) -> None:
        self.pending = np.full(N_GROUPS, NO_TIME, np.int64)
        self.pending_synced = np.zeros(N_GROUPS, bool)
        self.gaps = np.zeros(N_GROUPS, np.int64)

    def add(self, data_seconds: tuple[np.ndarray, np.ndarray],
            synced_seconds: tuple[np.ndarray, np.ndarray]) -> None:
        """Count one chunk: (io_group, second) of its timestamp packets and of its 'S' syncs."""
        keys = _fresh_keys(*data_seconds, self.pending)
        synced = _fresh_keys(*synced_seconds, self.pending)
        waiting = np.flatnonzero(self.pending != NO_TIME)
        old = _key(waiting, self.pending[waiting])
        keys = np.union1d(keys, old)
        if len(keys) == 0:
            return
        group, second = keys >> 40, keys & ((1 << 40) - 1)
        has_sync = np.isin(keys, synced) | np.isin(keys, old[self.pending_synced[waiting]])
        latest = self.pending.copy()
        np.maximum.at(latest, group, second)
        final = second < latest[group]
        self.gaps += np.bincount(group[final & ~has_sync], minlength=N_GROUPS)
        current = ~final
        self.pending = latest
        self.pending_synced[group[current]] = has_sync[current]


def _key(group: np.ndarray, second: np.ndarray) -> np.ndarray:
    return group.astype(np.int64) << 40 | second


def _fresh_keys(group: np.ndarray, second: np.ndarray, pending: np.ndarray) -> np.ndarray:
    """Unique (io_group, second) keys that are not older than the pending second."""
    timed = (second != NO_TIME) & (second >= pending[group])
    return np.unique(_key(group[timed], second[timed]))
