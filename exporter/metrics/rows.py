"""From a chunk's packet words to the integers the metric model counts.

The words (``exporter.packets.PacketWords``) come contiguous, copied by the
reader's helper thread; arithmetic runs one cache-sized block of rows at a
time, so that every intermediate array stays in cache.
"""

from __future__ import annotations

import numpy as np

from exporter.metrics.window import CHANNELS_PER_CHIP
from exporter.packets import PACKET_DTYPE, Chunk, PacketWords

#: Bits 0-1 of local_fifo (byte 2) and of shared_fifo (byte 3) of the dataword word.
FIFO_BITS = 0x0303_0000
#: Readout-delay buckets: ``le = 4**j - 1`` ticks for j = 0..12 (0 .. 1.7 s), then +Inf.
DELAY_BUCKETS = 14
DELAY_EDGES = tuple(4**j - 1 for j in range(DELAY_BUCKETS - 1))
_RECEIPT_MASK = (1 << 31) - 1
_ROW_WORDS = PACKET_DTYPE.itemsize // 4


class Rows:
    """A chunk's words (whole), and a few fields of single rows from its packed rows."""

    def __init__(self, chunk: Chunk) -> None:
        packets = np.ascontiguousarray(chunk.packets)
        n = len(packets)
        self._words: PacketWords = chunk.words
        #: io_group, io_channel, chip_id, packet_type: contiguous, for whole-chunk passes
        self.ids = self._words.ids
        ids = self.ids.view(np.uint8).reshape(n, 4)
        self.group = ids[:, 0]
        self.packet_type = ids[:, 3]
        self._bytes = packets.view(np.uint8).reshape(n, PACKET_DTYPE.itemsize)
        self.trigger_type = self._bytes[:, 17]
        words = packets.view(np.uint32).reshape(n, _ROW_WORDS)
        self._stamp_low, self._stamp_high = words[:, 2], words[:, 3]

    def timestamp(self, rows: np.ndarray) -> np.ndarray:
        """Full 64-bit ``timestamp`` of some rows."""
        return self._stamp_low[rows] | self._stamp_high[rows].astype(np.uint64) << np.uint64(32)

    def downstream_marker(self, rows: np.ndarray) -> np.ndarray:
        return self._bytes[rows, 4]

    def dataword(self, rows: np.ndarray) -> np.ndarray:
        return self._bytes[rows, 16]

    def block(self, rows: slice) -> Block:
        """The words of ``rows`` (views: a block never writes them)."""
        words = self._words
        times = None if words.times is None else tuple(t[rows] for t in words.times)
        return Block(words.flags[rows], words.word[rows], times)


class Block:
    """The words of some consecutive rows."""

    def __init__(self, flags: np.ndarray, word: np.ndarray,
                 times: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> None:
        #: downstream_marker, parity, valid_parity, channel_id
        self.flags = flags
        #: dataword, trigger_type, local_fifo, shared_fifo
        self.word = word
        #: timestamp (low and high word) and receipt_timestamp, if the file has receipt times
        self.times = times

    def channel_id(self) -> np.ndarray:
        return self.flags >> np.uint32(24)

    def dataword(self) -> np.ndarray:
        return self.word & np.uint32(0xFF)

    def valid_parity(self, rows: np.ndarray) -> np.ndarray:
        return (self.flags[rows] >> np.uint32(16)) & np.uint32(0xFF)

    def rare(self) -> np.ndarray:
        """Rows with valid_parity == 0 or a FIFO flag set.

        ``valid_parity <= word & FIFO_BITS`` holds exactly for them: a set FIFO
        bit makes the right side at least 2**16, above any byte.
        """
        valid_parity = self.flags >> np.uint32(16)
        valid_parity &= np.uint32(0xFF)
        return np.flatnonzero(np.less_equal(valid_parity, self.word & np.uint32(FIFO_BITS)))

    def channels_into(self, slot: np.ndarray, other: np.ndarray, channel: np.ndarray,
                      adc: np.ndarray) -> None:
        """Flat channel (chip slot * 64 + channel_id) and dataword of the rows, into
        ``channel`` and ``adc``; ``other`` (non-data) rows go to chip slot 0, never a chip."""
        np.multiply(slot, CHANNELS_PER_CHIP, out=channel, casting="unsafe")
        channel += self.channel_id()
        channel[other] = 0
        np.bitwise_and(self.word, np.uint32(0xFF), out=adc)
        adc[other] = 0

    def rare_rows(self, slot: np.ndarray, packet_type: np.ndarray) -> tuple[np.ndarray, ...]:
        """Chip slot, type, valid_parity, word and channel_id of the rows with
        valid_parity == 0 or a FIFO flag (picked while the block is in the cache)."""
        rare = self.rare()
        return (slot[rare], packet_type[rare], self.valid_parity(rare), self.word[rare],
                self.flags[rare] >> np.uint32(24))

    def readout_delay(self) -> np.ndarray | None:
        """``receipt_timestamp mod 2**31 - timestamp``, or None if the file has no receipts.

        int32 when every timestamp of the rows is below 2**31 (LArPix v2 and
        PACMAN times are), so the difference cannot wrap; int64 otherwise.
        """
        if self.times is None:
            return None
        stamp_low, stamp_high, receipt = self.times
        delay = receipt & np.uint32(_RECEIPT_MASK)
        if stamp_high.any() or stamp_low.max(initial=0) > _RECEIPT_MASK:
            wide = delay.astype(np.int64)
            wide -= stamp_low
            wide -= stamp_high.astype(np.int64) << 32
            return wide
        delay = delay.view(np.int32)
        delay -= stamp_low.view(np.int32)
        return delay


def delay_bucket(delay: np.ndarray, scale: int = 1) -> np.ndarray:
    """``scale`` times bucket j of each delay (uint32).

    Bucket j holds ``4**(j-1) <= delay <= 4**j - 1``, bucket 0 every delay <= 0.
    The bit length of a positive integer is read from the exponent of its
    float32 (exact: float32 holds every integer up to 2**24, and above that
    rounding cannot leave the overflow bucket); bucket j holds bit lengths
    2j-1 and 2j. The sign and exponent bits (9) index a table of buckets:
    negative delays have the sign bit set and map to bucket 0.
    """
    exponent = delay.astype(np.float32).view(np.uint32)
    exponent >>= np.uint32(23)
    table = _BUCKET_OF_EXPONENT if scale == 1 else _BUCKET_OF_EXPONENT * np.uint32(scale)
    return table.take(exponent)


def _bucket_of_exponent() -> np.ndarray:
    """Bucket of each float32 sign and biased exponent (bit length + 126) of a delay."""
    exponent = np.arange(512)
    bucket = np.clip((exponent - 125) >> 1, 0, DELAY_BUCKETS - 1)
    bucket[exponent >= 256] = 0
    return bucket.astype(np.uint32)


_BUCKET_OF_EXPONENT = _bucket_of_exponent()


def fifo_code(word: np.ndarray) -> np.ndarray:
    """``local_fifo & 3 | (shared_fifo & 3) << 2`` from the dataword word."""
    return (word >> np.uint32(16) & np.uint32(3)) | (word >> np.uint32(22) & np.uint32(12))
