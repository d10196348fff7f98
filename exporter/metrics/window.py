"""What happened in the last seconds of data time: rates, active and hot channels, sync gaps.

Windows are in the DAQ's own clock (data time), so replayed or old files give
the same gauges as a live run. ``T`` is the latest data second of an
io_group; the window is the complete seconds ``T - W <= s < T``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from exporter.metrics.checkpoint import State, dense, sparse
from exporter.metrics.chips import grow_axis
from exporter.metrics.clock import N_GROUPS, NO_TIME, Segments, sorted_unique
from exporter.metrics.memory import zeros
from exporter.metrics.packed import PACKED_ROWS, unpack_into
from exporter.packets import DATA

#: channel_id is a 6-bit field of the LArPix v2 word.
CHANNELS_PER_CHIP = 64
#: Longest rate window: the ring holds one slot per second (~2 MB each at 2x2 scale).
MAX_WINDOW_SECONDS = 120


@dataclass(frozen=True)
class WindowView:
    """The window gauges of every io_group, as of one moment."""

    rate_hz: np.ndarray     # (io_group, packet type code) packets per second
    active: np.ndarray      # (io_group,) channels with data in the window
    hot: np.ndarray         # (io_group,) channels above the hot rate
    has_window: np.ndarray  # (io_group,) whether the io_group has a data second
    channel_counts: np.ndarray  # (chip slot, channel_id) data packets in the window
    chip_adc: np.ndarray        # (chip slot, 2) sum of dataword and of its square there


class SlidingWindow:
    """Per-second counts of recent seconds: data packets by channel, other packets by type.

    One int32 array ``counts[ring slot, chip slot, column]`` holds everything:
    columns 0-63 count data packets by channel_id, column ``64 + type`` the
    other packets by type (data packets of a chip are the sum of its
    channels). A ring of ``floor(W) + 1`` slots per io_group holds the
    window's seconds plus the current, incomplete one; one more slot
    (``outside``), never read as a second, takes the rows that fall outside,
    so keys need no filtering. Chip slots (see ``ChipSlots``) make memory
    follow the detector actually seen, and int32 keeps the array cache-sized
    at 2x2 scale (a channel cannot see 2**31 packets in a second). Counts of
    other packets leave the ring into ``retired`` (int64) when their slot is
    reused or the outside slot is emptied. Data packets reach ``retired`` a
    chunk at a time from the per-channel counts (``count_data``), so the rows
    of a backlog's seconds outside the window need not be counted here.
    """

    def __init__(self, width: float, n_types: int, hot_rate: float) -> None:
        if not 1 <= width <= MAX_WINDOW_SECONDS:
            raise ValueError(
                f"rate window must be 1 to {MAX_WINDOW_SECONDS} seconds, not {width:g}")
        self.width = width
        self.hot_rate = hot_rate
        self.n_types = n_types
        self.span = math.floor(width)
        self.n_slots = self.span + 1
        self.outside = self.n_slots
        self.columns = CHANNELS_PER_CHIP + n_types
        self.latest = np.full(N_GROUPS, NO_TIME, np.int64)
        self.slot_second = np.full((self.n_slots, N_GROUPS), NO_TIME, np.int64)
        self.counts = np.zeros((self.n_slots + 1, 1, self.columns), np.int32)
        self.retired = np.zeros((1, n_types), np.int64)
        #: (ring slot, chip slot, [sum of dataword, sum of its square]) of data packets
        self.adc_sums = np.zeros((self.n_slots + 1, 1, 2), np.int64)
        #: packed datawords (``metrics.packed``) not yet in ``adc_sums``, by (ring slot,
        #: chip slot), the ring slots they are in, and their rows
        self.pending_adc = np.zeros((self.n_slots + 1, 1), np.uint64)
        self._pending_slot = np.zeros(self.n_slots + 1, bool)
        self._pending_rows = 0

    @property
    def room(self) -> int:
        """Chip slots the arrays have rows for (the stride of a ring slot's keys)."""
        return self.counts.shape[1]

    def grow(self, capacity: int) -> None:
        """Make room for chip slots ``0 .. capacity-1``."""
        self.counts = grow_axis(self.counts, 1, capacity)
        self.retired = grow_axis(self.retired, 0, capacity)
        self.adc_sums = grow_axis(self.adc_sums, 1, capacity)
        self.pending_adc = grow_axis(self.pending_adc, 1, capacity)

    def checkpoint(self) -> State:
        """Packet totals by (chip slot, type) and the latest data second of each io_group;
        the ring (the window's gauges) refills from new data."""
        totals = sparse(self.retired + self._other_types(self.counts.sum(axis=0)))
        return {**totals, "latest": self.latest.copy()}

    def restore(self, state: State) -> None:
        self.retired = dense(state)
        self.counts = zeros((self.n_slots + 1, len(self.retired), self.columns), np.int32)
        self.adc_sums = zeros((self.n_slots + 1, len(self.retired), 2), np.int64)
        self.pending_adc = zeros((self.n_slots + 1, len(self.retired)), np.uint64)
        self._pending_slot[:] = False
        self._pending_rows = 0
        self.latest = np.array(state["latest"], np.int64)
        self.slot_second[:] = NO_TIME

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

    def count(self, keys: np.ndarray) -> None:
        """Count rows at flat (ring slot, chip slot, column) keys."""
        np.add.at(self.counts.reshape(-1), keys, np.int32(1))

    def fold_outside(self) -> None:
        """Empty the outside slot before its int32 counts could overflow."""
        self.retired += self._other_types(self.counts[self.outside])
        self.counts[self.outside] = 0
        self.adc_sums[self.outside] = 0

    def count_data(self, per_channel: np.ndarray) -> None:
        """Add a chunk's data rows, by flat channel (``chip slot * 64 + channel_id``; chip
        slot 0 is not a chip), to the totals."""
        per_chip = per_channel.reshape(-1, CHANNELS_PER_CHIP)[1:len(self.retired)].sum(axis=1)
        self.retired[1:len(per_chip) + 1, DATA] += per_chip

    def count_other_outside(self, slot: np.ndarray, kind: np.ndarray) -> None:
        """Count other rows (chip slot, type code) that fall outside the window."""
        key = slot.astype(np.intp)
        key += self.outside * self.counts.shape[1]
        key *= self.columns
        key += kind + CHANNELS_PER_CHIP
        self.count(key)

    def add_adc(self, key: np.ndarray, packed: np.ndarray, ring: np.ndarray) -> None:
        """Add packed datawords (``metrics.packed``; 0 for other rows) at flat (ring slot,
        chip slot) keys, all in the ring slots ``ring``; ``unpack_adc`` makes them sums."""
        if self._pending_rows + len(key) > PACKED_ROWS:
            self.unpack_adc()
        np.add.at(self.pending_adc.reshape(-1), key, packed)
        self._pending_slot[ring] = True
        self._pending_rows += len(key)

    def unpack_adc(self) -> None:
        """Move the packed datawords into ``adc_sums`` (before they are read or zeroed)."""
        for slot in np.flatnonzero(self._pending_slot).tolist():
            unpack_into(self.pending_adc[slot], self.adc_sums[slot, :, 0],
                        self.adc_sums[slot, :, 1])
        self._pending_slot[:] = False
        self._pending_rows = 0

    def _types(self, counts: np.ndarray) -> np.ndarray:
        """(..., column) counts -> (..., type) counts, data = sum of the channels."""
        types = counts[..., CHANNELS_PER_CHIP:].astype(np.int64)
        types[..., DATA] = counts[..., :CHANNELS_PER_CHIP].sum(axis=-1, dtype=np.int64)
        return types

    @staticmethod
    def _other_types(counts: np.ndarray) -> np.ndarray:
        """(..., column) counts -> (..., type) counts of other packets (the data column is
        0: data packets count by channel, and reach the totals by ``count_data``)."""
        return counts[..., CHANNELS_PER_CHIP:].astype(np.int64)

    def _claim(self, ring: np.ndarray, group: np.ndarray, second: np.ndarray,
               chip_group: np.ndarray) -> None:
        """Point ring slots at their new seconds, retiring what an older second left there.

        A (ring slot, io_group) pair changes second as its io_group's data time
        moves on; only the chips of that io_group are retired from that slot. A
        chunk that spans the window moves every pair on, so the work is done an
        io_group at a time, over all its changed slots at once.
        """
        wanted = np.full_like(self.slot_second, NO_TIME)
        wanted[ring, group] = second
        changed = (wanted != NO_TIME) & (wanted != self.slot_second)
        by_group = np.argsort(chip_group, kind="stable")
        bounds = np.searchsorted(chip_group, np.arange(N_GROUPS + 1), sorter=by_group)
        for io_group in np.flatnonzero(changed.any(axis=0)).tolist():
            chips = by_group[bounds[io_group]:bounds[io_group + 1]]
            slots = np.flatnonzero(changed[:, io_group])[:, None]
            other_types = self.counts[slots, chips, CHANNELS_PER_CHIP:]
            self.retired[chips] += other_types.sum(axis=0, dtype=np.int64)
            self.counts[slots, chips] = 0
            self.adc_sums[slots, chips] = 0
        self.slot_second[changed] = wanted[changed]

    def view(self, chip_group: np.ndarray) -> tuple[np.ndarray, WindowView]:
        """Rows ever counted by (chip slot, type), and the window gauges.

        One sum over the whole ring serves both: the window is that sum less
        the few slots outside it (the current second, the outside slot). Both
        cover the chip slots of ``chip_group`` (the arrays may have room for more).
        """
        n = len(chip_group)
        counts, adc_sums = self.counts[:, :n], self.adc_sums[:, :n]
        ring_total = counts.sum(axis=0, dtype=np.int64)
        totals = self.retired[:n] + self._other_types(ring_total)
        has_window = self.latest != NO_TIME
        in_window = ((self.slot_second != NO_TIME)
                     & (self.slot_second >= self.latest - self.width)
                     & (self.slot_second < self.latest))
        per_slot = ring_total - self._outside_window(counts, in_window, chip_group)
        per_channel = per_slot[:, :CHANNELS_PER_CHIP]
        types = self._types(per_slot)
        rate = np.stack([np.bincount(chip_group, weights=column, minlength=N_GROUPS)
                         for column in types.T], axis=1) / self.width
        active = np.bincount(chip_group, weights=(per_channel > 0).sum(axis=1),
                             minlength=N_GROUPS).astype(np.int64)
        hot_channels = (per_channel / self.width > self.hot_rate).sum(axis=1)
        hot = np.bincount(chip_group, weights=hot_channels, minlength=N_GROUPS).astype(np.int64)
        chip_adc = np.zeros(adc_sums.shape[1:], np.int64)
        for slot in range(self.n_slots):
            inside = in_window[slot, chip_group]
            chip_adc[inside] += adc_sums[slot, inside]
        return totals, WindowView(rate, active, hot, has_window, per_channel, chip_adc)

    def _outside_window(self, counts: np.ndarray, in_window: np.ndarray,
                        chip_group: np.ndarray) -> np.ndarray:
        """Sum over the ring slots outside each chip slot's window: (chip slot, column) of
        ``counts``, the ring's counts of the chip slots of ``chip_group``."""
        total = counts[self.outside].astype(np.int64)
        outside = ~in_window[:, chip_group]
        outside[:, 0] = False  # chip slot 0 is never counted in
        for slot in np.flatnonzero(outside.any(axis=1)).tolist():
            columns = outside[slot]
            if columns[1:].all():
                total += counts[slot]
            else:
                total[columns] += counts[slot, columns]
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

    def checkpoint(self) -> State:
        return {"pending": self.pending.copy(), "pending_synced": self.pending_synced.copy(),
                "gaps": self.gaps.copy()}

    def restore(self, state: State) -> None:
        self.pending = np.array(state["pending"], np.int64)
        self.pending_synced = np.array(state["pending_synced"], bool)
        self.gaps = np.array(state["gaps"], np.int64)

    def add(self, data_seconds: tuple[np.ndarray, np.ndarray],
            synced_seconds: tuple[np.ndarray, np.ndarray]) -> None:
        """Count one chunk: (io_group, second) of its timestamp packets and of its 'S' syncs."""
        keys = _fresh_keys(*data_seconds, self.pending)
        synced = _fresh_keys(*synced_seconds, self.pending)
        waiting = np.flatnonzero(self.pending != NO_TIME)
        old = _key(waiting, self.pending[waiting])
        keys = sorted_unique(keys, old)
        if len(keys) == 0:
            return
        group, second = keys >> 40, keys & ((1 << 40) - 1)
        # distinct keys all three: np.isin need not sort them apart first
        has_sync = (np.isin(keys, synced, assume_unique=True)
                    | np.isin(keys, old[self.pending_synced[waiting]], assume_unique=True))
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
    return sorted_unique(_key(group[timed], second[timed]))
