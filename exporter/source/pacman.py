"""Raw-file PACMAN messages -> packet rows, a block of messages at a time, no per-word Python.

The rows are the ones larpix-control's ``pacman_msg_format.parse`` +
``hdf5format.to_file`` write: one timestamp packet per message, then one packet
per data, sync or trigger word.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from exporter.packets import (
    PACKET_DTYPE,
    SYNC,
    TIMESTAMP,
    TRIGGER,
    Empty,
    PacketWords,
    WordsBuilder,
    row_words,
)

#: PACMAN message layout (larpix.format.pacman_msg_format).
HEADER_LEN = 8
WORD_LEN = 16
MSG_TYPE_DATA = ord("D")
WORD_DATA, WORD_SYNC, WORD_TRIGGER = ord("D"), ord("S"), ord("T")

#: One row of the decoding stream, 16 bytes: a word, or a message header padded with zeros.
_ROW = np.dtype(
    {
        "names": ["kind", "byte1", "byte2", "time", "header_time", "word_count"],
        "formats": ["u1", "u1", "u1", "<u4", "<u4", "<u2"],
        "offsets": [0, 1, 2, 4, 1, 6],
        "itemsize": WORD_LEN,
    }
)

_WORD_KINDS = np.zeros(256, bool)
_WORD_KINDS[[WORD_DATA, WORD_SYNC, WORD_TRIGGER]] = True

#: A data row's fields: ``field |= ((source >> right) & mask) << left``, where ``head``,
#: ``second``, ``low`` and ``high`` are the row's four 32-bit words: 'D', io_channel and
#: the receipt timestamp (bytes 2-5) in the first two, the LArPix packet in the last two
#: (bit n of the packet is bit n of ``low``, bit n-32 of ``high``: packet_v2's layout).
_DATA_FIELDS = (
    ("packet_type", "low", 0, 0x3, 0),
    ("chip_id", "low", 2, 0xFF, 0),
    ("channel_id", "low", 10, 0x3F, 0),
    ("register_address", "low", 10, 0xFF, 0),
    ("register_data", "low", 18, 0xFF, 0),
    ("timestamp", "low", 16, 0xFFFF, 0),
    ("timestamp", "high", 0, 0x7FFF, 16),
    ("first_packet", "high", 15, 0x1, 0),
    ("dataword", "high", 16, 0xFF, 0),
    ("trigger_type", "high", 24, 0x3, 0),
    ("local_fifo", "high", 26, 0x3, 0),
    ("shared_fifo", "high", 28, 0x3, 0),
    ("downstream_marker", "high", 30, 0x1, 0),
    ("parity", "high", 31, 0x1, 0),
    ("valid_parity", "odd", 0, 0x1, 0),
    ("io_channel", "head", 8, 0xFF, 0),
    ("receipt_timestamp", "head", 16, 0xFFFF, 0),
    ("receipt_timestamp", "second", 0, 0xFFFF, 16),
    ("io_group", "group", 0, 0xFF, 0),
)

#: Rows decoded per block: a block's buffers (~4 MB) stay in the CPU's last-level cache,
#: one field's column (128 KB) in its L2. Measured: a million rows decoded in ~34 ms,
#: against ~38 ms in blocks of 2**14 rows and ~50 ms in blocks of 2**13.
_BLOCK_ROWS = 1 << 15

#: Header rows are given this kind in the stream, to tell them from data words.
_HEADER_KIND = 0
#: packet_type of a header, sync or trigger row by its kind.
_MARKER_TYPE = np.zeros(256, np.uint8)
_MARKER_TYPE[[_HEADER_KIND, WORD_SYNC, WORD_TRIGGER]] = [TIMESTAMP, SYNC, TRIGGER]


def decode_messages(msgs: np.ndarray, io_groups: np.ndarray, empty: Empty = np.empty
                    ) -> tuple[np.ndarray, PacketWords, int]:
    """PACMAN DATA messages -> (packets, their words, number of malformed messages skipped).

    Every good message gives one timestamp packet (its header's unix time)
    followed by one packet per word, as larpix-control converts it. A message
    whose length disagrees with its word count, whose type is not DATA, or
    that holds a word other than data/sync/trigger is skipped whole. The
    packets' and words' arrays come from ``empty``.
    """
    lengths = np.fromiter((m.size for m in msgs), dtype=np.int64, count=len(msgs))
    sized = (lengths >= HEADER_LEN) & ((lengths - HEADER_LEN) % WORD_LEN == 0)
    rows_per_msg = np.where(sized, (lengths - HEADER_LEN) // WORD_LEN + 1, 0)
    decoder = _Decoder(int(rows_per_msg.sum()), empty)
    for block in _message_blocks(rows_per_msg):
        keep = sized[block]
        decoder.add(msgs[block][keep], lengths[block][keep], io_groups[block][keep])
    packets, words = decoder.finish()
    return packets, words, len(msgs) - decoder.messages


def _message_blocks(rows_per_msg: np.ndarray) -> Iterator[slice]:
    """Runs of messages holding at most ``_BLOCK_ROWS`` rows (or one bigger message)."""
    ends = np.cumsum(rows_per_msg)
    first, done = 0, 0
    while first < len(ends):
        last = max(first + 1, int(np.searchsorted(ends, done + _BLOCK_ROWS, side="right")))
        yield slice(first, last)
        first, done = last, int(ends[last - 1])


class _Decoder:
    """Blocks of messages -> one chunk's packets and words.

    Only the output is chunk-sized: each block of messages is laid out,
    checked and decoded in buffers reused from block to block, which stay in
    the CPU cache, where a chunk-sized layout of every message would
    first-touch tens of fresh megabytes a chunk.
    """

    def __init__(self, most_rows: int, empty: Empty) -> None:
        self._out = empty(most_rows, PACKET_DTYPE)
        self._words = WordsBuilder(most_rows, True, empty)
        self._packer = _Packer(min(most_rows, _BLOCK_ROWS))
        self._units = np.empty(2 * min(most_rows, _BLOCK_ROWS), np.uint64)
        self.rows = 0
        self.messages = 0

    def add(self, msgs: np.ndarray, lengths: np.ndarray, io_groups: np.ndarray) -> None:
        """Messages of one block, each of a whole number of words; malformed ones dropped."""
        while True:
            stream = _Stream(msgs, lengths, self._units)
            bad = stream.malformed()
            if not bad.any():
                break
            msgs, lengths, io_groups = msgs[~bad], lengths[~bad], io_groups[~bad]
        n = len(stream.rows)
        if not n:
            return
        self._words.add_columns(self.rows, self._packer.pack(
            stream.rows, np.repeat(io_groups.astype(np.uint32), stream.rows_per_msg),
            stream.kinds(), self._out[self.rows:self.rows + n]))
        self.rows += n
        self.messages += len(msgs)

    def finish(self) -> tuple[np.ndarray, PacketWords]:
        return self._out[:self.rows], self._words.finish(self.rows)


class _Stream:
    """A block's messages laid out as 16-byte rows in packet order: each header, then its
    words.

    Every message is 8 + 16 k bytes, so the concatenated bytes are whole 8-byte
    units; one zero unit inserted after each header aligns every row.
    """

    def __init__(self, msgs: np.ndarray, lengths: np.ndarray, units: np.ndarray) -> None:
        self.n_words = (lengths - HEADER_LEN) // WORD_LEN
        self.rows_per_msg = self.n_words + 1
        self.header_row = np.zeros(len(lengths), np.int64)
        np.cumsum(self.rows_per_msg[:-1], out=self.header_row[1:])
        n_rows = int(self.rows_per_msg.sum())
        units = units[:2 * n_rows] if len(units) >= 2 * n_rows else np.empty(2 * n_rows,
                                                                               np.uint64)
        if n_rows:
            filled = np.ones(units.size, bool)
            pads = 2 * self.header_row + 1
            filled[pads] = False
            units[filled] = np.concatenate(list(msgs)).view("<u8")
            units[pads] = 0
        self.rows = units.view(_ROW)

    def malformed(self) -> np.ndarray:
        """Per message: not a DATA header with the right word count, or an unknown word."""
        headers = self.rows[self.header_row]
        bad = (headers["kind"] != MSG_TYPE_DATA) | (headers["word_count"] != self.n_words)
        known = _WORD_KINDS[self.rows["kind"]]
        known[self.header_row] = True
        unknown = np.flatnonzero(~known)
        if unknown.size:
            bad[np.searchsorted(self.header_row, unknown, side="right") - 1] = True
        return bad

    def kinds(self) -> np.ndarray:
        """Each row's kind: its word's type, ``_HEADER_KIND`` for a header."""
        kind = self.rows["kind"].copy()
        kind[self.header_row] = _HEADER_KIND
        return kind


def _marker_packets(rows: np.ndarray, kind: np.ndarray, io_groups: np.ndarray) -> np.ndarray:
    """Timestamp (message header), sync and trigger rows: no io_channel, no parity."""
    out = np.zeros(len(rows), PACKET_DTYPE)
    out["io_group"] = io_groups
    out["packet_type"] = _MARKER_TYPE[kind]
    is_header = kind == _HEADER_KIND
    out["timestamp"] = np.where(is_header, rows["header_time"], rows["time"])
    out["trigger_type"] = np.where(is_header, 0, rows["byte1"])
    out["dataword"] = np.where(kind == WORD_SYNC, rows["byte2"] & 1, 0)
    return out


class _Packer:
    """Data rows -> PACKET_DTYPE records, one cache-sized block at a time.

    The fields that share a 32-bit word of the record are OR-ed into one
    contiguous row of a (words, block) array, which is then transposed into the
    records in one copy: numpy moves it blockwise, where writing each field
    into 36-byte records would cost a slow strided pass per field. All buffers
    are reused from block to block (grown for a message bigger than a block).
    """

    def __init__(self, block_rows: int) -> None:
        self._allocate(block_rows)

    def _allocate(self, block_rows: int) -> None:
        self.words = np.empty((4, block_rows), np.uint32)
        self.columns = np.zeros((PACKET_DTYPE.itemsize // 4, block_rows), np.uint32)
        self.odd = np.empty(block_rows, np.uint32)
        self.part = np.empty(block_rows, np.uint32)

    def pack(self, rows: np.ndarray, group: np.ndarray, kind: np.ndarray,
             out: np.ndarray) -> np.ndarray:
        """``out``'s records from the rows of a block (``kind``: their stream kinds, headers
        ``_HEADER_KIND``); returns the records' words as (word, row) columns."""
        n = len(rows)
        if n > len(self.odd):
            self._allocate(n)
        words, columns = self.words[:, :n], self.columns[:, :n]
        odd, part = self.odd[:n], self.part[:n]
        np.copyto(words, rows.view("<u4").reshape(n, 4).T)
        head, second, low, high = words
        np.bitwise_xor(low, high, out=odd)
        np.bitwise_count(odd, out=odd)  # bit 0: the parity of all 64 bits
        sources = {"head": head, "second": second, "low": low, "high": high, "group": group,
                   "odd": odd}
        filled = set()
        for name, source, right, mask, left in _DATA_FIELDS:
            index, byte = divmod(PACKET_DTYPE.fields[name][1], 4)
            target = part if index in filled else columns[index]
            bits = _shifted_bits(sources[source], right, mask, 8 * byte + left, target)
            if index in filled:
                np.bitwise_or(columns[index], bits, out=columns[index])
            elif bits is not target:
                np.copyto(target, bits)
            filled.add(index)
        markers = np.flatnonzero(kind != WORD_DATA)
        if len(markers):  # every column a marker row sets is written whole for each block
            columns[:, markers] = row_words(
                _marker_packets(rows[markers], kind[markers], group[markers])).T
        out.view("<u4").reshape(n, len(columns))[:] = columns.T
        return columns


def _shifted_bits(value: np.ndarray, right: int, mask: int, left: int, out: np.ndarray
                  ) -> np.ndarray:
    """``((value >> right) & mask) << left`` in 32 bits, skipping the steps that change nothing."""
    if right:
        value = np.right_shift(value, right, out=out)
    if mask < (1 << (32 - max(right, left))) - 1:
        value = np.bitwise_and(value, mask, out=out)
    if left:
        value = np.left_shift(value, left, out=out)
    return value

