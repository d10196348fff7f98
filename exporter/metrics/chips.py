"""Chips numbered as they appear, and counts kept per chip slot.

A chip is (io_group, io_channel, chip_id), keyed ``chip_id | io_channel << 8 |
io_group << 16``: one detector's chips sit close together, and a flat table
over all 2**24 keys maps each to a compact slot.
"""

from __future__ import annotations

import numpy as np

from exporter.metrics.checkpoint import State, dense, sparse
from exporter.metrics.memory import zeros

#: chip_id | io_channel << 8 | io_group << 16: one detector's chips sit close together.
CHIP_KEYS = 1 << 24
#: Rows of a chip-slot lookup step: its temporaries stay in the CPU cache.
_LOOKUP_ROWS = 1 << 16
#: Slot-table mark of a chip first seen in the chunk being looked up (numbered at its end).
_NEW_IN_CHUNK = -1


def chip_keys(ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """chip_id | io_channel << 8 | io_group << 16 of ``PacketWords.ids`` (into ``out``, intp,
    if given)."""
    return np.right_shift(ids, np.uint32(8), out=out, dtype=np.intp)


class ChipSlots:
    """Compact numbering (1, 2, ...) of the (io_group, io_channel, chip_id) seen so far.

    Slot 0 is never a chip: keys send rows that must not count there.
    """

    def __init__(self) -> None:
        # Small pages, mapped lazily: only those keys touch are materialised.
        self._slot_of = zeros(CHIP_KEYS, np.int32)
        self.keys = np.zeros(1, np.int64)
        self._block_keys = np.empty(_LOOKUP_ROWS, np.intp)  # a fresh one would be new pages

    @property
    def capacity(self) -> int:
        return len(self.keys)

    def lookup(self, ids: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Slot of each row, from its first word (new chips get slots in key order),
        into ``out`` (int32) if given.

        Keys are made and looked up one block at a time, so that no temporary
        the size of the chunk is made (fresh pages cost more than the work).
        """
        slots = np.empty(len(ids), np.int32) if out is None else out
        incomplete, new = [], []
        for start in range(0, len(ids), _LOOKUP_ROWS):
            block = slice(start, start + _LOOKUP_ROWS)
            keys = chip_keys(ids[block], self._block_keys[:len(ids[block])])
            found = self._slot_of.take(keys, out=slots[block])
            if found.min() <= 0:  # 0: a new chip; _NEW_IN_CHUNK: one an earlier block found
                incomplete.append(block)
                unseen = keys[found == 0]
                if len(unseen):
                    new.append(self._distinct(unseen))
                    self._slot_of[new[-1]] = _NEW_IN_CHUNK
        if incomplete:
            added = np.sort(np.concatenate(new))
            self._slot_of[added] = np.arange(len(self.keys), len(self.keys) + len(added))
            self.keys = np.concatenate([self.keys, added])
            for block in incomplete:
                self._slot_of.take(chip_keys(ids[block]), out=slots[block])
        return slots

    def _distinct(self, keys: np.ndarray) -> np.ndarray:
        """The distinct values of ``keys`` (unseen so far), sorted, without sorting all of them.

        Every row writes its own (negative) index at its key; whichever row of
        a key wins, exactly that row reads its own index back.
        """
        rows = np.arange(len(keys), dtype=np.int32)
        self._slot_of[keys] = -1 - rows
        winners = keys[-1 - self._slot_of.take(keys) == rows]
        self._slot_of[winners] = 0
        return np.sort(winners)

    def checkpoint(self) -> State:
        return {"keys": self.keys.copy()}

    def restore(self, state: State) -> None:
        """Slots as numbered before, so counts kept per slot line up again."""
        self.keys = np.asarray(state["keys"], np.int64)
        self._slot_of = zeros(CHIP_KEYS, np.int32)
        self._slot_of[self.keys[1:]] = np.arange(1, len(self.keys), dtype=np.int32)

    @property
    def group(self) -> np.ndarray:
        return self.keys >> 16

    @property
    def channel(self) -> np.ndarray:
        return self.keys >> 8 & 0xFF

    @property
    def chip(self) -> np.ndarray:
        return self.keys & 0xFF


class Tally:
    """Counts at flat keys: int32 (cache-sized) while counting, folded into int64 totals.

    ``np.add.at`` into an int32 array is as fast as ``np.bincount`` (numpy
    2) and needs no temporary the size of the key space.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.recent = zeros(shape, np.int32)
        self.folded = zeros(shape, np.int64)

    def add(self, keys: np.ndarray) -> None:
        np.add.at(self.recent.reshape(-1), keys, np.int32(1))

    def fold(self) -> None:
        self.folded += self.recent
        self.recent[...] = 0

    def total(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Counts so far; of some indices of the first axis only, if given (a few rows of a
        large tally cost a few pages, not the whole array)."""
        if rows is None:
            return self.folded + self.recent
        return self.folded[rows] + self.recent[rows]

    def checkpoint(self) -> State:
        return sparse(self.total())

    def restore(self, state: State) -> None:
        self.folded = dense(state)
        self.recent = zeros(self.folded.shape, np.int32)

    def grow(self, size: int) -> None:
        """Extend the first axis to ``size``."""
        self.recent = grow_axis(self.recent, 0, size)
        self.folded = grow_axis(self.folded, 0, size)


def room_for(slots: int) -> int:
    """Chip slots to allocate for ``slots``: a power of two, so that chips turning up one
    by one (a flipped bit of a chip key) do not copy per-chip arrays every chunk."""
    return 1 << max(slots - 1, 1).bit_length()


def grow_axis(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``array`` zero-padded along ``axis`` to ``size`` (in small pages: see ``memory``)."""
    missing = size - array.shape[axis]
    if missing <= 0:
        return array
    shape = list(array.shape)
    shape[axis] = size
    grown = zeros(tuple(shape), array.dtype)
    grown[tuple(slice(0, n) for n in array.shape)] = array
    return grown
