"""The one packet representation every part of the monitor speaks.

Readers normalise both LArPix file formats to ``PACKET_DTYPE`` (the
larpix-control hdf5format 2.4 ``packets`` dtype); metrics and plots only ever
see arrays of it.
"""

from __future__ import annotations

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
