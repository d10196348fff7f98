"""Simulated records -> the bytes and rows larpix-control would store.

``packet_rows`` gives the ``packets`` rows larpix-control's conversion
(``pacman_msg_format.parse`` then ``hdf5format.to_file``) makes of the same
messages; ``raw_messages`` gives the PACMAN message bytes
(``pacman_msg_format`` layout) and their io_groups for a raw file.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.recfunctions import repack_fields

from exporter.packets import MESSAGE, PACKET_DTYPE, SYNC, TIMESTAMP, TRIGGER
from exporter.simulate.generate import HEADER, LARPIX, SYNC_WORD, TRIGGER_WORD, take_rows

PACKET_VERSIONS = ("2.2", "2.3", "2.4")

#: Fields of the ``packets`` dtype per format version (hdf5format's documentation).
_OLD_FIELDS = [name for name in PACKET_DTYPE.names if name != "receipt_timestamp"]
PACKET_DTYPES = {
    "2.2": np.dtype([(name, PACKET_DTYPE[name]) for name in _OLD_FIELDS]),
    "2.3": PACKET_DTYPE,
    "2.4": PACKET_DTYPE,
}

HEADER_BYTES = 8
WORD_BYTES = 16


def _bits(words: np.ndarray, shift: int, width: int) -> np.ndarray:
    return (words >> np.uint64(shift)) & np.uint64((1 << width) - 1)


#: packet_type of each record kind other than LArPix words (which carry their own).
_TYPE_OF_KIND = np.zeros(4, np.uint8)
_TYPE_OF_KIND[[HEADER, SYNC_WORD, TRIGGER_WORD]] = (TIMESTAMP, SYNC, TRIGGER)


def packet_rows(records: np.ndarray, version: str = "2.4") -> np.ndarray:
    """``packets`` rows of ``records`` as the given hdf5format version fills them (2.4 dtype).

    LArPix words give every field from their bits whatever their packet type,
    as ``Packet_v2`` attributes do; other records have a zero word.
    """
    kind = records["kind"]
    word = records["word"]
    larpix = kind == LARPIX
    sync = kind == SYNC_WORD
    rows = np.zeros(len(records), PACKET_DTYPE)
    rows["io_group"] = records["io_group"]
    rows["io_channel"] = records["io_channel"]
    rows["packet_type"] = np.where(larpix, _bits(word, 0, 2), _TYPE_OF_KIND[kind])
    rows["chip_id"] = _bits(word, 2, 8)
    rows["channel_id"] = _bits(word, 10, 6)
    rows["timestamp"] = np.where(larpix, _bits(word, 16, 31), records["stamp"])
    rows["first_packet"] = _bits(word, 47, 1)
    rows["dataword"] = np.where(sync, records["clk_source"] & 1, _bits(word, 48, 8))
    rows["trigger_type"] = np.where(larpix, _bits(word, 56, 2), records["code"])
    rows["local_fifo"] = _bits(word, 58, 2)
    rows["shared_fifo"] = _bits(word, 60, 2)
    rows["downstream_marker"] = _bits(word, 62, 1)
    rows["parity"] = _bits(word, 63, 1)
    rows["register_address"] = _bits(word, 10, 8)
    rows["register_data"] = _bits(word, 18, 8)
    rows["valid_parity"] = larpix & (np.bitwise_count(word) & 1 == 1)
    rows["receipt_timestamp"] = np.where(larpix, records["stamp"], 0)
    if version not in ("2.3", "2.4"):
        _as_old_version(rows)
    return rows


def repack_for_version(rows: np.ndarray, version: str) -> np.ndarray:
    """``rows`` (2.4 dtype) in the dtype of the given version (fields it lacks dropped)."""
    if PACKET_DTYPES[version] == PACKET_DTYPE:
        return rows
    return repack_fields(rows[list(PACKET_DTYPES[version].names)])


def _as_old_version(rows: np.ndarray) -> None:
    """What hdf5format's pre-2.3 encoders (from ``Packet.export``) leave in each field."""
    rows["io_group"][rows["packet_type"] == TIMESTAMP] = 0
    kind = rows["packet_type"]
    data = kind == 0
    for name in ("register_address", "register_data"):
        rows[name][data] = 0
    config = (kind == 2) | (kind == 3)
    for name in ("channel_id", "timestamp", "dataword", "trigger_type", "local_fifo",
                 "shared_fifo", "first_packet"):
        rows[name][config] = 0
    test = kind == 1
    for name in ("channel_id", "timestamp", "dataword", "trigger_type", "local_fifo",
                 "shared_fifo", "first_packet", "register_address", "register_data"):
        rows[name][test] = 0


def message_rows(timestamps: list[int]) -> np.ndarray:
    """Rows of run-control message packets (io_group 0; hdf5format leaves ``counter`` 0)."""
    rows = np.zeros(len(timestamps), PACKET_DTYPE)
    rows["packet_type"] = MESSAGE
    rows["timestamp"] = timestamps
    return rows


def raw_messages(records: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """PACMAN data messages (``uint8`` arrays) and their io_groups, one per header record."""
    kind = records["kind"]
    is_header = kind == HEADER
    header_at = np.flatnonzero(is_header)
    if len(records) and not is_header[0]:
        raise ValueError("records must start with a message header")
    n_words = np.diff(np.append(header_at, len(records))) - 1
    # Headers and words are whole multiples of 8 bytes: fill the messages 8 bytes at a time.
    sizes = HEADER_BYTES + WORD_BYTES * n_words
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    buffer = np.zeros(int(sizes.sum()) // 8, "<u8")

    headers = take_rows(records, header_at)
    head = np.zeros((len(headers), HEADER_BYTES), np.uint8)
    head[:, 0] = ord("D")
    head[:, 1:5] = _le_bytes(headers["stamp"], "<u4")
    head[:, 6:8] = _le_bytes(n_words, "<u2")
    buffer[starts // 8] = head.view("<u8")[:, 0]

    word_at = np.flatnonzero(~is_header)
    msg_of_word = np.cumsum(is_header)[word_at] - 1
    index_in_msg = word_at - header_at[msg_of_word] - 1
    slot = (starts[msg_of_word] + HEADER_BYTES) // 8 + 2 * index_in_msg
    words = _word_bytes(take_rows(records, word_at)).view("<u8")
    buffer[slot] = words[:, 0]
    buffer[slot + 1] = words[:, 1]
    messages = np.split(buffer.view(np.uint8), starts[1:])
    return messages, headers["io_group"].copy()


def _le_bytes(values: np.ndarray, dtype: str) -> np.ndarray:
    width = np.dtype(dtype).itemsize
    return np.ascontiguousarray(values, dtype=dtype).view(np.uint8).reshape(-1, width)


def _word_bytes(words: np.ndarray) -> np.ndarray:
    """16-byte words: data '<cBLxx8s', trigger '<2cxxL8x', sync '<2cBxL8x'."""
    out = np.zeros((len(words), WORD_BYTES), np.uint8)
    kind = words["kind"]
    larpix = kind == LARPIX
    out[larpix, 0] = ord("D")
    out[larpix, 1] = words["io_channel"][larpix]
    out[larpix, 2:6] = _le_bytes(words["stamp"][larpix], "<u4")
    out[larpix, 8:16] = _le_bytes(words["word"][larpix], "<u8")
    trigger = kind == TRIGGER_WORD
    out[trigger, 0] = ord("T")
    out[trigger, 1] = words["code"][trigger]
    out[trigger, 4:8] = _le_bytes(words["stamp"][trigger], "<u4")
    sync = kind == SYNC_WORD
    out[sync, 0] = ord("S")
    out[sync, 1] = words["code"][sync]
    out[sync, 2] = words["clk_source"][sync]
    out[sync, 4:8] = _le_bytes(words["stamp"][sync], "<u4")
    return out
