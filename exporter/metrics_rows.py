"""From packed packet rows to the integers the metric model counts.

The 2.4 dtype is packed (36 bytes a row, 4-byte aligned), so the fields the
metrics need sit in six 32-bit words: bytes 0-3 (io_group, io_channel,
chip_id, packet_type), 4-7 (downstream_marker, parity, valid_parity,
channel_id), 8-15 (timestamp), 16-19 (dataword, trigger_type, local_fifo,
shared_fifo) and 32-35 (receipt_timestamp). Copying those words out with one
``take`` reads every row once; copying one field at a time would stream the
whole chunk from memory once per field.
"""

from __future__ import annotations

import numpy as np

from exporter.packets import PACKET_DTYPE

#: chip_id | io_channel << 8 | io_group << 16: one detector's chips sit close together.
CHIP_KEYS = 1 << 24
#: Bits 0-1 of local_fifo (byte 2) and of shared_fifo (byte 3) of the dataword word.
FIFO_BITS = 0x0303_0000
#: Readout-delay buckets: ``le = 4**j - 1`` ticks for j = 0..12 (0 .. 1.7 s), then +Inf.
DELAY_BUCKETS = 14
DELAY_EDGES = tuple(4**j - 1 for j in range(DELAY_BUCKETS - 1))
_RECEIPT_MASK = (1 << 31) - 1
#: The 32-bit words of a row that hold what the metrics read.
_WORDS = (0, 1, 2, 3, 4, 8)


def _check_layout() -> None:
    offsets = {name: PACKET_DTYPE.fields[name][1] for name in PACKET_DTYPE.names}
    expected = {"io_group": 0, "io_channel": 1, "chip_id": 2, "packet_type": 3,
                "valid_parity": 6, "channel_id": 7, "timestamp": 8, "dataword": 16,
                "trigger_type": 17, "local_fifo": 18, "shared_fifo": 19,
                "receipt_timestamp": 32}
    if PACKET_DTYPE.itemsize != 36 or any(offsets[k] != v for k, v in expected.items()):
        raise ImportError("PACKET_DTYPE layout changed: update exporter.metrics_rows")


_check_layout()


class Rows:
    """The six words of a chunk's rows, copied out in one pass; fields are views into them."""

    def __init__(self, packets: np.ndarray, has_receipt: bool) -> None:
        n = len(packets)
        table = packets.view(np.uint32).reshape(n, PACKET_DTYPE.itemsize // 4).take(_WORDS, axis=1)
        self.has_receipt = has_receipt
        #: io_group, io_channel, chip_id, packet_type: contiguous, for whole-chunk passes
        self.ids = np.ascontiguousarray(table[:, 0])
        flags = np.ascontiguousarray(table[:, 1]).view(np.uint8).reshape(n, 4)
        self.word = table[:, 4]
        self._stamp_low, self._stamp_high, self._receipt = table[:, 2], table[:, 3], table[:, 5]
        ids = self.ids.view(np.uint8).reshape(n, 4)
        raw = table.view(np.uint8).reshape(n, 4 * len(_WORDS))
        self.group = ids[:, 0]
        self.packet_type = ids[:, 3]
        self.valid_parity = flags[:, 2]
        self.channel_id = flags[:, 3]
        self.dataword = raw[:, 16]
        self.trigger_type = raw[:, 17]
        self.local_fifo = raw[:, 18]
        self.shared_fifo = raw[:, 19]

    def chip_keys(self) -> np.ndarray:
        """chip_id | io_channel << 8 | io_group << 16 of every row (bytes 2, 1, 0)."""
        return np.right_shift(self.ids.byteswap(), 8, dtype=np.intp)

    def timestamp(self, rows: np.ndarray) -> np.ndarray:
        """Full 64-bit ``timestamp`` of some rows."""
        return self._stamp_low[rows] | self._stamp_high[rows].astype(np.uint64) << np.uint64(32)

    def readout_delay(self, rows: slice) -> np.ndarray | None:
        """``receipt_timestamp mod 2**31 - timestamp``, or None if the file has no receipts.

        int32 when every timestamp of the rows is below 2**31 (LArPix v2 and
        PACMAN times are), so the difference cannot wrap; int64 otherwise.
        """
        if not self.has_receipt:
            return None
        low, high = self._stamp_low[rows], self._stamp_high[rows]
        delay = self._receipt[rows] & np.uint32(_RECEIPT_MASK)
        if high.any() or low.max(initial=0) > _RECEIPT_MASK:
            wide = delay.astype(np.int64)
            wide -= low
            wide -= high.astype(np.int64) << 32
            return wide
        delay = delay.view(np.int32)
        delay -= low.view(np.int32)
        return delay


def delay_bucket(delay: np.ndarray) -> np.ndarray:
    """Bucket j of each delay: ``4**(j-1) <= delay <= 4**j - 1``; 0 for delay <= 0.

    The bit length of a positive integer is read from the exponent of its
    float32 (exact: float32 holds every integer up to 2**24, and above that
    rounding cannot leave the overflow bucket); bucket j holds bit lengths
    2j-1 and 2j. Negative delays have the sign bit set and land in bucket 0.
    """
    exponent = delay.astype(np.float32).view(np.int32)
    exponent >>= 23                      # biased exponent: bit length + 126, 0 for 0
    exponent -= 125
    exponent >>= 1
    np.maximum(exponent, 0, out=exponent)
    np.minimum(exponent, DELAY_BUCKETS - 1, out=exponent)
    return exponent


class ChipSlots:
    """Compact numbering (1, 2, ...) of the (io_group, io_channel, chip_id) seen so far.

    Slot 0 is never a chip: keys send rows that must not count there.
    """

    def __init__(self) -> None:
        # np.zeros maps pages lazily: only those keys touch are materialised.
        self._slot_of = np.zeros(CHIP_KEYS, np.int32)
        self.keys = np.zeros(1, np.int64)

    @property
    def capacity(self) -> int:
        return len(self.keys)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        slots = self._slot_of.take(keys)
        if not slots.all():
            missing = np.flatnonzero(slots == 0)
            new = self._distinct(keys[missing])
            self._slot_of[new] = np.arange(len(self.keys), len(self.keys) + len(new))
            self.keys = np.concatenate([self.keys, new])
            slots[missing] = self._slot_of.take(keys[missing])
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

    ``np.add.at`` with intp keys into an int32 array is as fast as
    ``np.bincount`` and needs no temporary the size of the key space.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.recent = np.zeros(shape, np.int32)
        self.folded = np.zeros(shape, np.int64)

    def add(self, keys: np.ndarray) -> None:
        np.add.at(self.recent.reshape(-1), keys, np.int32(1))

    def fold(self) -> None:
        self.folded += self.recent
        self.recent[...] = 0

    def total(self) -> np.ndarray:
        return self.folded + self.recent

    def grow(self, size: int) -> None:
        """Extend the first axis to ``size``."""
        self.recent = grow_axis(self.recent, 0, size)
        self.folded = grow_axis(self.folded, 0, size)


def grow_axis(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``array`` zero-padded along ``axis`` to ``size``."""
    missing = size - array.shape[axis]
    if missing <= 0:
        return array
    pad = [(0, 0)] * array.ndim
    pad[axis] = (0, missing)
    return np.pad(array, pad)
