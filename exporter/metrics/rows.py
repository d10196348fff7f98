"""From a chunk's packet words to the integers the metric model counts.

The words (``exporter.packets.PacketWords``) come contiguous, copied by the
reader's helper thread; arithmetic runs one cache-sized block of rows at a
time, so that every intermediate array stays in cache.
"""

from __future__ import annotations

import numpy as np

from exporter.metrics.window import CHANNELS_PER_CHIP
from exporter.packets import PACKET_DTYPE, STAMP_HIGH, STAMP_LOW, Chunk, PacketWords, row_words


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
        self.group = ids[:, 3]
        self.packet_type = ids[:, 0]
        self._bytes = packets.view(np.uint8).reshape(n, PACKET_DTYPE.itemsize)
        self.trigger_type = self._bytes[:, 17]
        words = row_words(packets)
        self._stamp_low, self._stamp_high = words[:, STAMP_LOW], words[:, STAMP_HIGH]

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
        return Block(words.flags[rows], words.word[rows], delay, words.adc_delay[rows])

    def flagged(self, slot: np.ndarray) -> tuple[np.ndarray, ...]:
        """Chip slot (from ``slot``, one per row), type, valid_parity, data word and
        channel_id of the rows with valid_parity == 0 or a FIFO flag."""
        rows = self._words.flagged
        flags = self._words.flags[rows]
        return (slot[rows], self.packet_type[rows], flags >> np.uint32(16) & np.uint32(0xFF),
                self._words.word[rows], flags >> np.uint32(24))


class Block:
    """The words of some consecutive rows."""

    def __init__(self, flags: np.ndarray, word: np.ndarray, delay: np.ndarray | None,
                 adc_delay: np.ndarray) -> None:
        #: downstream_marker, parity, valid_parity, channel_id
        self.flags = flags
        #: dataword, trigger_type, local_fifo, shared_fifo
        self.word = word
        #: readout delay of data rows (0 for others; see ``PacketWords.delay``), if known
        self.delay = delay
        #: (io_group, delay bucket, dataword) index of data rows (``PacketWords.adc_delay``)
        self.adc_delay = adc_delay

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


def fifo_code(word: np.ndarray) -> np.ndarray:
    """``local_fifo & 3 | (shared_fifo & 3) << 2`` from the dataword word."""
    return (word >> np.uint32(16) & np.uint32(3)) | (word >> np.uint32(22) & np.uint32(12))
