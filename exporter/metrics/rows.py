"""From a chunk's packet words to the integers the metric model counts.

The words (``exporter.packets.PacketWords``) come contiguous, copied by the
reader's helper thread; arithmetic runs one cache-sized block of rows at a
time, so that every intermediate array stays in cache.
"""

from __future__ import annotations

import numpy as np

from exporter.metrics.window import CHANNELS_PER_CHIP
from exporter.packets import PACKET_DTYPE, Chunk, PacketWords

#: Readout-delay buckets: ``le = 4**j - 1`` ticks for j = 0..12 (0 .. 1.7 s), then +Inf.
DELAY_BUCKETS = 14
DELAY_EDGES = tuple(4**j - 1 for j in range(DELAY_BUCKETS - 1))
_ROW_WORDS = PACKET_DTYPE.itemsize // 4


class Rows:
    """A chunk's words (whole), and a few fields of single rows from its packed rows."""

    def __init__(self, chunk: Chunk) -> None:
        packets = np.ascontiguousarray(chunk.packets)
        n = len(packets)
        self._words: PacketWords = chunk.words
        #: io_group, io_channel, chip_id, packet_type: contiguous, for whole-chunk passes
        self.ids = self._words.ids
        #: non-data rows, ascending
        self.other = self._words.other
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
        delay = None if words.delay is None else words.delay[rows]
        return Block(words.flags[rows], words.word[rows], delay)

    def flagged(self, slot: np.ndarray) -> tuple[np.ndarray, ...]:
        """Chip slot (from ``slot``, one per row), type, valid_parity, data word and
        channel_id of the rows with valid_parity == 0 or a FIFO flag."""
        rows = self._words.flagged
        flags = self._words.flags[rows]
        return (slot[rows], self.packet_type[rows], flags >> np.uint32(16) & np.uint32(0xFF),
                self._words.word[rows], flags >> np.uint32(24))


class Block:
    """The words of some consecutive rows."""

    def __init__(self, flags: np.ndarray, word: np.ndarray, delay: np.ndarray | None) -> None:
        #: downstream_marker, parity, valid_parity, channel_id
        self.flags = flags
        #: dataword, trigger_type, local_fifo, shared_fifo
        self.word = word
        #: readout delay of data rows (0 for others; see ``PacketWords.delay``), if known
        self.delay = delay

    def channel_id(self) -> np.ndarray:
        return self.flags >> np.uint32(24)

    def dataword(self) -> np.ndarray:
        return self.word & np.uint32(0xFF)

    def channels_into(self, slot: np.ndarray, other: np.ndarray, channel: np.ndarray,
                      key: np.ndarray, stride: int) -> None:
        """Flat channel (chip slot * 64 + channel_id) of the rows into ``channel``, and
        ``channel + dataword * stride`` (a histogram key) into ``key``; ``other``
        (non-data) rows go to chip slot 0, never a chip."""
        np.multiply(slot, CHANNELS_PER_CHIP, out=channel, casting="unsafe")
        channel += self.channel_id()
        channel[other] = 0
        np.multiply(self.dataword(), np.intp(stride), out=key)
        key += channel


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
