"""Per-channel counts of one data file, kept under the detector's chip slots.

A channel is (chip slot, channel_id): flat index ``slot * 64 + channel_id``.
For every data packet ``DetectorMetrics.update`` hands over the flat channel
index and histogram key (dataword and channel); they are counted here with ``np.add.at`` into
dense arrays (no per-packet Python):

* ``count``, ``adc_sum``, ``adc_squares`` (int64): count, ADC mean and RMS
  without a pass over the histogram (the sums are added packed, see
  ``metrics.packed``, and unpacked at the end of each chunk);
* ``bins`` (uint16, 256 x 64 per chip slot): the ADC distribution of each
  channel, for estimators a signal tail cannot fool (medians, clipped means).
  It is stored by (dataword, channel): the channels of a chip sit side by
  side, so rows of one chip near its pedestals share cache lines (half the
  time of a (channel, dataword) layout). Every chunk is added with one
  ``np.add.at`` (a scattered add a row: the histogram is far bigger than the
  cache, so nothing that touches it twice a row is cheaper). A bin never
  wraps for good. Each channel's bins stay below
  ``2**15 + unchecked``, ``unchecked`` being its rows since its bins were last
  made smaller than 2**15. A channel whose ``unchecked`` could reach 2**15 in
  a chunk (a hot channel, every few chunks) is *settled*: its
  bins are read before and after the add; fewer than 2**16 rows of the chunk
  can have wrapped a bin at most once, so ``after - before`` (mod 2**16) is
  the exact increment. Every whole 2**15 of its bins then moves to ``spill``
  (a small dict of int64 counts). A channel with 2**16 rows or more in one
  chunk has its rows counted apart, exactly. These checks read small
  per-channel arrays and the settled channels' bins only;
* parity errors and FIFO flags from the few rows that have them.

Arrays are allocated for a power of two of chip slots; only the histogram
pages of the chips seen are mapped (at once, when a chip is first seen: see
``memory``), so memory follows the chips the file actually has.
"""

from __future__ import annotations

import numpy as np

from exporter.metrics.chips import grow_axis, room_for
from exporter.metrics.memory import populate, zeros
from exporter.metrics.packed import PACKED_ROWS, unpack_into
from exporter.packets import DATA

CHANNELS_PER_CHIP = 64
ADC_BINS = 256
_SPILL_AT = 1 << 15
#: A uint16 bin can wrap at most once while fewer rows than this are added to it.
_WRAP_AT = 1 << 16


class ChannelCounts:
    """Everything counted per channel of one file (see the module notes)."""

    def __init__(self, slots: int = 1) -> None:
        n = room_for(slots)
        self.bins = zeros((ADC_BINS, n * CHANNELS_PER_CHIP), np.uint16)
        self.spill: dict[int, int] = {}
        self.count = np.zeros(n * CHANNELS_PER_CHIP, np.int64)
        self.unchecked = np.zeros(n * CHANNELS_PER_CHIP, np.int64)
        self.adc_sum = np.zeros(n * CHANNELS_PER_CHIP, np.int64)
        self.adc_squares = np.zeros(n * CHANNELS_PER_CHIP, np.int64)
        self.parity_errors = np.zeros(n * CHANNELS_PER_CHIP, np.int64)
        self.fifo_half = np.zeros(n * CHANNELS_PER_CHIP, np.int64)
        self.fifo_full = np.zeros(n * CHANNELS_PER_CHIP, np.int64)
        #: window counts of this file's chips when another file took its io_group's window
        self.frozen_window = np.zeros(n * CHANNELS_PER_CHIP, np.int64)
        #: packed datawords not yet in ``adc_sum`` and ``adc_squares``, and their rows
        self.pending_sums = np.zeros(n * CHANNELS_PER_CHIP, np.uint64)
        self._pending_rows = 0
        self._mapped_slots = 0
        self._map_bins(slots)

    _SAVED = ("count", "adc_sum", "adc_squares", "parity_errors", "fifo_half", "fifo_full",
              "frozen_window")
    _PER_CHANNEL = ("unchecked", "pending_sums", *_SAVED)

    @property
    def slots(self) -> int:
        return len(self.count) // CHANNELS_PER_CHIP

    def grow(self, slots: int) -> None:
        """Make room for chip slots ``0 .. slots-1``, the chips seen so far."""
        if slots > self.slots:
            n = room_for(slots) * CHANNELS_PER_CHIP
            self.bins = grow_axis(self.bins, 1, n)  # the copy maps the old slots' pages
            for name in self._PER_CHANNEL:
                setattr(self, name, grow_axis(getattr(self, name), 0, n))
        self._map_bins(slots)

    def _map_bins(self, slots: int) -> None:
        """Map the bins of chips new since the last call all at once. A page holds one
        dataword's bins of 32 chips, so nearly every page of the chips seen is touched soon
        (all of them at 2x2 scale); a lone chip costs at most a page a dataword."""
        if slots <= self._mapped_slots:
            return
        row_bytes = self.bins.strides[0]
        row_start = np.arange(ADC_BINS)[:, None] * row_bytes
        chips = np.array([self._mapped_slots, slots]) * CHANNELS_PER_CHIP * self.bins.itemsize
        populate(self.bins, row_start + chips)
        self._mapped_slots = slots

    def add(self, channel: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Count a chunk's rows: flat channel index and ``bins`` key (``channel + dataword *
        len(count)``, intp) of each (non-data rows in channel 0); then unpack the sums
        ``add_sums`` took, block by block. Returns the rows added per flat channel.

        Counts are one bincount over the chunk; the histogram is one
        ``np.add.at`` (see the module notes for the channels that are settled
        after it, or whose rows are added exactly apart).
        """
        n = len(self.count)
        added = np.bincount(channel, minlength=n)
        self.unchecked += added  # in place: a per-channel temporary is fresh pages a chunk
        settle = np.flatnonzero(self.unchecked >= _SPILL_AT)
        if len(settle) and settle[0] == 0:  # the non-data rows' channel: never read, may wrap
            settle = settle[1:]
        self.count += added
        self._unpack_sums()
        flat = self.bins.reshape(-1)
        if not len(settle):
            np.add.at(flat, key, np.uint16(1))
            return added
        heavy = settle[added[settle] >= _WRAP_AT]
        if len(heavy):
            apart = np.zeros(n, bool)
            apart[heavy] = True
            apart = apart.take(key % n)
            self._add_exactly(key[apart], heavy)
            key = key[~apart]
            settle = settle[added[settle] < _WRAP_AT]
        before = self.rows(settle)
        np.add.at(flat, key, np.uint16(1))
        increment = self.rows(settle) - before  # uint16: exact below 2**16 rows
        self._settle(settle, before.astype(np.int64) + increment)
        return added

    def add_sums(self, channel: np.ndarray, packed: np.ndarray) -> None:
        """Add the packed datawords (``packed.packed_datawords``) of some rows to their
        channels' sums (a block at a time: the scattered add stays in the cache)."""
        if self._pending_rows + len(channel) > PACKED_ROWS:
            self._unpack_sums()
        np.add.at(self.pending_sums, channel, packed)
        self._pending_rows += len(channel)

    def _unpack_sums(self) -> None:
        unpack_into(self.pending_sums, self.adc_sum, self.adc_squares)  # dense: most have rows
        self._pending_rows = 0

    def rows(self, channels: np.ndarray) -> np.ndarray:
        """(channel, 256) uint16 bins of some flat channel indices (without ``spill``)."""
        return self.bins[:, channels].T

    def _add_exactly(self, key: np.ndarray, channels: np.ndarray) -> None:
        """Add rows (``bins`` keys) to ``channels``' bins (sorted) in int64, then settle them."""
        n = len(self.count)
        keys, counts = np.unique(key, return_counts=True)
        rows = self.rows(channels).astype(np.int64)
        at = np.searchsorted(channels, keys % n) * ADC_BINS + keys // n
        rows.reshape(-1)[at] += counts
        self._settle(channels, rows)

    def _settle(self, channels: np.ndarray, rows: np.ndarray) -> None:
        """Store the exact (channel, 256) int64 bins of ``channels``: each below 2**15, the
        rest in ``spill``; they are then checked."""
        rows = rows.reshape(-1)
        over = np.flatnonzero(rows >= _SPILL_AT)
        for i, value in zip(over.tolist(), rows[over].tolist(), strict=True):
            key_of_bin = int(channels[i // ADC_BINS]) * ADC_BINS + i % ADC_BINS
            self.spill[key_of_bin] = self.spill.get(key_of_bin, 0) + value - value % _SPILL_AT
        rows %= _SPILL_AT
        self.bins[:, channels] = rows.reshape(-1, ADC_BINS).T
        self.unchecked[channels] = 0

    def add_rare(self, slot: np.ndarray, packet_type: np.ndarray, valid_parity: np.ndarray,
                 word: np.ndarray, channel_id: np.ndarray) -> None:
        """The rows ``Rows.flagged`` picked (bad parity or a FIFO flag): chip slot, type,
        valid_parity, first data word and channel_id of each; only data rows count here."""
        data = packet_type == DATA
        fifo = (word[data] >> np.uint32(16) | word[data] >> np.uint32(24)) & np.uint32(3)
        self.add_flags(slot[data].astype(np.int64) * CHANNELS_PER_CHIP + channel_id[data],
                       valid_parity[data] == 0, fifo)

    def add_flags(self, channel: np.ndarray, bad_parity: np.ndarray, fifo: np.ndarray) -> None:
        """Data rows with bad parity or a FIFO flag: ``fifo`` is local | shared (2 bits)."""
        np.add.at(self.parity_errors, channel[bad_parity], 1)
        np.add.at(self.fifo_half, channel[(fifo & 1) > 0], 1)
        np.add.at(self.fifo_full, channel[(fifo & 2) > 0], 1)

    def histograms(self, channels: np.ndarray) -> np.ndarray:
        """(channel, 256) uint32 ADC counts of some flat channel indices (sorted, distinct)."""
        out = self.rows(channels).astype(np.uint32)
        if self.spill:
            bins = np.fromiter(self.spill, np.int64, len(self.spill))
            counts = np.fromiter(self.spill.values(), np.int64, len(self.spill))
            row = np.searchsorted(channels, bins // ADC_BINS)
            inside = row < len(channels)
            inside[inside] &= channels[row[inside]] == bins[inside] // ADC_BINS
            out[row[inside], bins[inside] % ADC_BINS] += counts[inside].astype(np.uint32)
        return out

    def nbytes(self) -> int:
        """Memory of the arrays (pages never touched are not resident)."""
        return self.bins.nbytes + sum(getattr(self, n).nbytes for n in self._PER_CHANNEL)

    # -- checkpoint: arrays of the channels that have data, by flat index ------------------

    def state(self) -> dict[str, np.ndarray]:
        seen = np.flatnonzero(self.count[CHANNELS_PER_CHIP:]) + CHANNELS_PER_CHIP  # slot 0: none
        state = {name: getattr(self, name)[seen] for name in self._SAVED}
        state["channel"] = seen
        state["histogram"] = self.histograms(seen)
        return state

    def load(self, state: dict[str, np.ndarray], channel: np.ndarray) -> None:
        """Add a ``state`` whose channels are now at the flat indices ``channel``."""
        self.grow(int(channel.max(initial=0)) // CHANNELS_PER_CHIP + 1)
        for name in self._SAVED:
            np.add.at(getattr(self, name), channel, state[name])
        self.unchecked[channel] = 0   # every bin below 2**15 again, below
        total = self.histograms(channel).astype(np.int64) + state["histogram"]
        low = total % _SPILL_AT
        self.bins[:, channel] = low.T
        if self.spill:  # now counted in ``total``
            loaded = set(channel.tolist())
            self.spill = {b: n for b, n in self.spill.items() if b // ADC_BINS not in loaded}
        for row, b in np.argwhere(total >= _SPILL_AT).tolist():
            self.spill[int(channel[row]) * ADC_BINS + b] = int(total[row, b] - low[row, b])


class UncountedChannels:
    """Stands in for the counts of a file waiting for a table (``ChannelTables``): its rows
    are counted per channel for the detector's totals, and kept nowhere."""

    def __init__(self, slots: int) -> None:
        # only its length is read: the stride of the histogram keys
        self.count = np.broadcast_to(np.int64(0), (room_for(slots) * CHANNELS_PER_CHIP,))

    def add(self, channel: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Rows added per flat channel, as ``ChannelCounts.add`` returns them."""
        return np.bincount(channel, minlength=len(self.count))

    def add_sums(self, channel: np.ndarray, packed: np.ndarray) -> None:
        """Nothing to keep."""

    def add_rare(self, *rows: np.ndarray) -> None:
        """Nothing to keep."""
