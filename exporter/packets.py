"""The one packet representation every part of the monitor speaks.

Readers normalise both LArPix file formats to ``PACKET_DTYPE`` (the
larpix-control hdf5format 2.4 ``packets`` dtype); metrics and plots only ever
see arrays of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from exporter.errors import InputError

PACKET_DTYPE = np.dtype(
    [
        ("io_group", "u1"),
        ("io_channel", "u1"),
        ("chip_id", "u1"),
        ("packet_type", "u1"),
        ("downstream_marker", "u1"),
        ("parity", "u1"),
        ("valid_parity", "u1"),
        ("channel_id", "u1"),
        ("timestamp", "u8"),
        ("dataword", "u1"),
        ("trigger_type", "u1"),
        ("local_fifo", "u1"),
        ("shared_fifo", "u1"),
        ("register_address", "u1"),
        ("register_data", "u1"),
        ("direction", "u1"),
        ("local_fifo_events", "u1"),
        ("shared_fifo_events", "u2"),
        ("counter", "u4"),
        ("fifo_diagnostics_enabled", "u1"),
        ("first_packet", "u1"),
        ("receipt_timestamp", "u4"),
    ]
)

DATA, TEST, CONFIG_WRITE, CONFIG_READ, TIMESTAMP, MESSAGE, SYNC, TRIGGER = range(8)

#: Label value of ``packet_type`` for each code, index = code.
PACKET_TYPE_NAMES: tuple[str, ...] = (
    "data",
    "test",
    "config_write",
    "config_read",
    "timestamp",
    "message",
    "sync",
    "trigger",
)

#: Packet types whose parity bit means something (LArPix UART words).
PARITY_TYPES = (DATA, TEST, CONFIG_WRITE, CONFIG_READ)

#: ``trigger_type`` of a sync packet: 'S' sync, 'H' heartbeat, 'C' clock switch.
SYNC_TYPE_NAMES = {ord("S"): "S", ord("H"): "H", ord("C"): "C"}

#: PACMAN clock ticks between two 'S' syncs (10 MHz, one per second).
SYNC_PERIOD_TICKS = 10_000_000

#: io_channels per tile on a LArPix anode tile.
CHANNELS_PER_TILE = 4


#: Word of a packed row (4 bytes) holding each field the hot paths read.
_ROW_WORDS = PACKET_DTYPE.itemsize // 4
_IDS, _FLAGS, STAMP_LOW, STAMP_HIGH, _WORD, _RECEIPT = 0, 1, 2, 3, 4, 8


def row_words(packets: np.ndarray) -> np.ndarray:
    """Packed rows as (row, word) uint32: each field the hot paths read is a column
    (``STAMP_LOW`` ...), or a byte of one."""
    return np.ascontiguousarray(packets).view(np.uint32).reshape(len(packets), _ROW_WORDS)


def _check_words() -> None:
    offsets = {name: PACKET_DTYPE.fields[name][1] for name in PACKET_DTYPE.names}
    expected = {"io_group": 0, "io_channel": 1, "chip_id": 2, "packet_type": 3,
                "downstream_marker": 4, "valid_parity": 6, "channel_id": 7, "timestamp": 8,
                "dataword": 16, "trigger_type": 17, "local_fifo": 18, "shared_fifo": 19,
                "receipt_timestamp": 32}
    if PACKET_DTYPE.itemsize != 36 or any(offsets[k] != v for k, v in expected.items()):
        raise ImportError("PACKET_DTYPE layout changed: update the word numbers in "
                          "exporter.packets")


_check_words()


#: Bits 0-1 of local_fifo (byte 2) and of shared_fifo (byte 3) of the dataword word.
FIFO_BITS = 0x0303_0000
#: Readout-delay buckets: ``le = 4**j - 1`` ticks for j = 0..12 (0 .. 1.7 s), then +Inf.
DELAY_BUCKETS = 14
DELAY_EDGES = tuple(4**j - 1 for j in range(DELAY_BUCKETS - 1))
#: Delay bucket of data packets from files without receipt times (not observed).
NO_DELAY = DELAY_BUCKETS
#: ``PacketWords.adc_delay`` of rows that are not data packets: past every io_group's.
NOT_DATA = 256 * (DELAY_BUCKETS + 1) * 256
_RECEIPT_MASK = (1 << 31) - 1
#: Rows of a step of ``WordsBuilder``: a step's packed rows (4.7 MB) stay in the CPU's
#: last-level cache. Fewer, larger steps also take the GIL less often beside a counting
#: thread (2**17 rows: 10 M packets ingested in ~0.50 s, against ~0.52 s with 2**16).
STEP_ROWS = 1 << 17
#: An allocator: ``empty(size, dtype)``, a one-dimensional array, contents undefined.
Empty = Callable[[int, type[np.generic]], np.ndarray]


@dataclass(frozen=True)
class PacketWords:
    """Contiguous copies of the words of packed rows that the hot paths read, and the
    facts about each row that need no other row.

    numpy works on a field of packed rows at a stride of 36 bytes, several
    times slower than on a contiguous array, so each word is copied out once
    per chunk; a reader does it on its helper thread while the previous chunk
    is being counted (``Chunk.words``).
    """

    #: io_group, io_channel, chip_id, packet_type (one byte each, high byte first: ``ids >>
    #: 8`` is the chip key ``chip_id | io_channel << 8 | io_group << 16``)
    ids: np.ndarray
    #: downstream_marker, parity, valid_parity, channel_id
    flags: np.ndarray
    #: dataword, trigger_type, local_fifo, shared_fifo
    word: np.ndarray
    #: Readout delay of data packets, ``receipt_timestamp mod 2**31 - timestamp`` (0 for
    #: other rows); None if the file has no receipt times. int32 when every timestamp is
    #: below 2**31 (LArPix v2 and PACMAN times are), so it cannot wrap; int64 otherwise.
    delay: np.ndarray | None
    #: (io_group, delay bucket, dataword) of data packets as one index, ``(io_group *
    #: (DELAY_BUCKETS + 1) + bucket) * 256 + dataword`` (bucket ``NO_DELAY`` without
    #: receipt times); ``NOT_DATA`` for other rows. Both ADC histograms count it.
    adc_delay: np.ndarray
    #: Rows that are not data packets (packet_type != 0), ascending.
    other: np.ndarray
    #: Rows with valid_parity == 0 or a FIFO flag set, ascending.
    flagged: np.ndarray

    @classmethod
    def of(cls, packets: np.ndarray, has_receipt: bool, empty: Empty = np.empty) -> PacketWords:
        """The words of ``packets``, copied into arrays from ``empty(size, dtype)``."""
        words = WordsBuilder(len(packets), has_receipt, empty)
        for start in range(0, len(packets), STEP_ROWS):
            words.add(start, packets[start:start + STEP_ROWS])
        return words.finish()


class WordsBuilder:
    """``PacketWords`` of a chunk, made a step of rows at a time: a reader adds each
    step right after reading it, while its packed rows are still in the CPU cache."""

    def __init__(self, n: int, has_receipt: bool, empty: Empty = np.empty) -> None:
        n_words = 5 if has_receipt else 4  # ids, flags, word, adc_delay, delay
        self._out = empty(n_words * n, np.uint32).reshape(n_words, n)
        self._empty = empty
        self._wide: np.ndarray | None = None  # int64 delays, once a timestamp needs them
        self._other: list[np.ndarray] = []
        self._flagged: list[np.ndarray] = []

    def add(self, start: int, packets: np.ndarray) -> None:
        """Rows ``start .. start + len(packets)`` of the chunk."""
        self.add_columns(start, row_words(packets).T)

    def add_columns(self, start: int, columns: np.ndarray) -> None:
        """The same rows given as ``(word, row)`` uint32 columns of their packed rows: the
        raw-file decoder has them contiguous (``row_words(packets).T`` is a strided view)."""
        n = columns.shape[1]
        ids, flags, word, adc_delay = (row[start:start + n] for row in self._out[:4])
        np.copyto(ids, columns[_IDS].view(">u4"))  # the bytes reversed, in the same pass
        np.copyto(flags, columns[_FLAGS])
        np.copyto(word, columns[_WORD])
        other = np.flatnonzero(ids.view(">u4") >= np.uint32(1 << 24))  # packet_type != 0
        self._other.append(other + start)
        self._flagged.append(_flagged(flags, word) + start)
        np.right_shift(ids, np.uint32(24), out=adc_delay)  # io_group
        adc_delay *= np.uint32(DELAY_BUCKETS + 1)
        if len(self._out) == 5:
            adc_delay += delay_bucket(self._add_delays(start, columns, other))
        else:
            adc_delay += np.uint32(NO_DELAY)
        adc_delay *= np.uint32(256)
        adc_delay += word & np.uint32(0xFF)
        adc_delay[other] = NOT_DATA

    def _add_delays(self, start: int, columns: np.ndarray, other: np.ndarray) -> np.ndarray:
        """``receipt_timestamp mod 2**31 - timestamp`` of the step: int32 while every
        timestamp is below 2**31, so that it cannot wrap, else int64 from then on."""
        n = columns.shape[1]
        low, high = columns[STAMP_LOW], columns[STAMP_HIGH]
        receipt = columns[_RECEIPT] & np.uint32(_RECEIPT_MASK)
        if self._wide is None and (high.any() or low.max(initial=0) > _RECEIPT_MASK):
            self._wide = self._empty(self._out.shape[1], np.int64)
            np.copyto(self._wide[:start], self._out[4, :start].view(np.int32))
        if self._wide is None:
            delay = self._out[4, start:start + n].view(np.int32)
            np.subtract(receipt.view(np.int32), low.view(np.int32), out=delay)
        else:
            delay = self._wide[start:start + n]
            np.subtract(receipt, low, out=delay, dtype=np.int64)
            delay -= high.astype(np.int64) << 32
        delay[other] = 0
        return delay

    def finish(self, n: int | None = None) -> PacketWords:
        """The words of the first ``n`` rows (all rows by default): the ones added."""
        out = self._out[:, :n]
        ids, flags, word, adc_delay = out[:4]
        delay = None
        if len(out) == 5:
            delay = out[4].view(np.int32) if self._wide is None else self._wide[:n]
        none = np.zeros(0, np.intp)
        return PacketWords(ids, flags, word, delay, adc_delay,
                           np.concatenate(self._other) if self._other else none,
                           np.concatenate(self._flagged) if self._flagged else none)


def delay_bucket(delay: np.ndarray) -> np.ndarray:
    """Bucket j of each delay (uint32): ``4**(j-1) <= delay <= 4**j - 1``, bucket 0 every
    delay <= 0.

    The bit length of a positive integer is read from the exponent of its
    float32 (exact: float32 holds every integer up to 2**24, and above that
    rounding cannot leave the overflow bucket); bucket j holds bit lengths
    2j-1 and 2j. The sign and exponent bits (9) index a table of buckets:
    negative delays have the sign bit set and map to bucket 0.
    """
    exponent = delay.astype(np.float32).view(np.uint32)
    exponent >>= np.uint32(23)
    return _BUCKET_OF_EXPONENT.take(exponent)


def _bucket_of_exponent() -> np.ndarray:
    """Bucket of each float32 sign and biased exponent (bit length + 126) of a delay."""
    exponent = np.arange(512)
    bucket = np.clip((exponent - 125) >> 1, 0, DELAY_BUCKETS - 1)
    bucket[exponent >= 256] = 0
    return bucket.astype(np.uint32)


_BUCKET_OF_EXPONENT = _bucket_of_exponent()


def _flagged(flags: np.ndarray, word: np.ndarray) -> np.ndarray:
    """Rows with valid_parity == 0 or a FIFO flag: ``valid_parity <= word & FIFO_BITS``
    holds exactly for them (a set FIFO bit makes the right side at least 2**16, above any
    byte)."""
    valid_parity = flags >> np.uint32(16)
    valid_parity &= np.uint32(0xFF)
    return np.flatnonzero(np.less_equal(valid_parity, word & np.uint32(FIFO_BITS)))


def tile_of(io_channel: np.ndarray) -> np.ndarray:
    """Tile number (1-based) of data packets, from their io_channel."""
    return (io_channel.astype(np.int64) - 1) // CHANNELS_PER_TILE + 1


def sync_type_label(code: int) -> str:
    return SYNC_TYPE_NAMES.get(int(code), str(int(code)))


@dataclass(frozen=True)
class Chunk:
    """New packets of one file, as one reader step produced them."""

    packets: np.ndarray
    #: Dataset rows this chunk consumed: packets (packet files) or messages (raw files).
    rows: int
    #: Bytes of file payload these rows occupy.
    nbytes: int
    #: ``packet`` or ``raw``.
    format: str
    #: Whether ``receipt_timestamp`` carries real values (raw files, packet files >= 2.3).
    has_receipt_timestamp: bool
    #: Raw messages skipped because they could not be decoded.
    malformed: int = 0
    #: Row ranges among this step's rows that could not be read and were skipped, one
    #: error each (reason ``corrupt_chunk``): the consumer logs and counts them.
    damaged: tuple[InputError, ...] = ()
    #: Dataset rows in those ranges (not in ``rows``).
    skipped: int = 0

    #: The packets' words, contiguous (copied from ``packets`` if not given)
    words: PacketWords | None = None

    def __post_init__(self) -> None:
        if self.packets.dtype != PACKET_DTYPE:
            raise TypeError(f"packets must have PACKET_DTYPE, got {self.packets.dtype}")
        if self.words is None:
            object.__setattr__(self, "words",
                               PacketWords.of(self.packets, self.has_receipt_timestamp))
