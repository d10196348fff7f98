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
_IDS, _FLAGS, _STAMP_LOW, _STAMP_HIGH, _WORD, _RECEIPT = 0, 1, 2, 3, 4, 8


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


@dataclass(frozen=True)
class PacketWords:
    """Contiguous copies of the words of packed rows that the hot paths read.

    numpy works on a field of packed rows at a stride of 36 bytes, several
    times slower than on a contiguous array, so each word is copied out once
    per chunk; a reader does it on its helper thread while the previous chunk
    is being counted (``Chunk.words``).
    """

    #: io_group, io_channel, chip_id, packet_type (one byte each, low byte first)
    ids: np.ndarray
    #: downstream_marker, parity, valid_parity, channel_id
    flags: np.ndarray
    #: dataword, trigger_type, local_fifo, shared_fifo
    word: np.ndarray
    #: timestamp (low and high word) and receipt_timestamp, if the file has receipt times
    times: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    @classmethod
    def of(cls, packets: np.ndarray, has_receipt: bool,
           empty: Callable[[int, type[np.generic]], np.ndarray] = np.empty) -> PacketWords:
        """The words of ``packets``, copied into one array from ``empty(size, dtype)``."""
        columns = [_IDS, _FLAGS, _WORD] + ([_STAMP_LOW, _STAMP_HIGH, _RECEIPT] if has_receipt
                                           else [])
        n = len(packets)
        words = np.ascontiguousarray(packets).view(np.uint32).reshape(n, _ROW_WORDS)
        out = empty(len(columns) * n, np.uint32).reshape(len(columns), n)
        for row, column in zip(out, columns, strict=True):
            np.copyto(row, words[:, column])
        ids, flags, word, *times = out
        return cls(ids, flags, word, tuple(times) if times else None)


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
