"""The two LArPix HDF5 layouts: recognising them and turning their rows into packets.

The format is told by the file's contents, never by its name. Packet files
(``larpix.format.hdf5format`` 2.0-2.4) are matched to ``PACKET_DTYPE`` by field
name, because larpix-control's own "2.0" and "2.1" dtypes already carry later
fields. Raw files (``larpix.format.rawhdf5format`` 0.0) hold PACMAN messages
that are decoded here, whole chunks at a time, into the same rows that
larpix-control's ``pacman_msg_format.parse`` + ``hdf5format.to_file`` write.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from exporter.errors import InputError
from exporter.packets import PACKET_DTYPE, SYNC, TIMESTAMP, TRIGGER

PACKET_FORMAT = "packet"
RAW_FORMAT = "raw"

PACKET_VERSIONS = ("2.0", "2.1", "2.2", "2.3", "2.4")
RAW_VERSIONS = ("0.0",)

#: Fields a packet file may lack (added in 2.1 and 2.3); they read as 0.
OPTIONAL_PACKET_FIELDS = ("first_packet", "receipt_timestamp")
REQUIRED_PACKET_FIELDS = tuple(n for n in PACKET_DTYPE.names if n not in OPTIONAL_PACKET_FIELDS)

#: PACMAN message layout (larpix.format.pacman_msg_format).
HEADER_LEN = 8
WORD_LEN = 16
MSG_TYPE_DATA = ord("D")
WORD_DATA, WORD_SYNC, WORD_TRIGGER = ord("D"), ord("S"), ord("T")

#: 16 bytes seen from any byte offset: a message header (first 8 bytes) or a word.
_RECORD = np.dtype(
    {
        "names": ["kind", "byte1", "byte2", "receipt", "time", "packet",
                  "header_time", "word_count"],
        "formats": ["u1", "u1", "u1", "<u4", "<u4", "<u8", "<u4", "<u2"],
        "offsets": [0, 1, 2, 2, 4, 8, 1, 6],
        "itemsize": WORD_LEN,
    }
)

#: Odd/even parity of every byte value.
_BYTE_PARITY = (np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1) & 1
                ).astype(np.uint8)


@dataclass(frozen=True)
class Layout:
    """What a file holds and where: enough to read its rows without looking again."""

    format: str
    version: str
    #: dtype of the ``packets`` dataset (packet files only).
    packet_dtype: np.dtype | None
    has_receipt_timestamp: bool

    @property
    def native(self) -> bool:
        """Rows can be read straight into ``PACKET_DTYPE`` (same fields, same layout)."""
        return self.packet_dtype == PACKET_DTYPE


def _version(attrs: h5py.AttributeManager) -> str | None:
    value = attrs.get("version")
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value)


def detect(f: h5py.File, path: str) -> Layout:
    """Recognise a packet or raw file from its groups, datasets and version attributes."""
    if "_header" in f and isinstance(f["_header"], h5py.Group):
        return _packet_layout(f, path)
    if "meta" in f and isinstance(f["meta"], h5py.Group) and "msgs" in f:
        return _raw_layout(f, path)
    raise InputError(path, "no_packet_dataset",
                     "no LArPix data: neither a 'packets' dataset (packet file) "
                     "nor 'msgs' (raw file)")


def _unsupported(path: str, version: str | None, supported: tuple[str, ...], kind: str
                 ) -> InputError:
    need = f"{supported[0]}-{supported[-1]}" if len(supported) > 1 else supported[0]
    found = "no format version" if version is None else f"format version {version}"
    return InputError(path, "unsupported_version",
                      f"unsupported {kind} {found} (need {need})")


def _packet_layout(f: h5py.File, path: str) -> Layout:
    version = _version(f["_header"].attrs)
    if version not in PACKET_VERSIONS:
        raise _unsupported(path, version, PACKET_VERSIONS, "packet file")
    dset = f.get("packets")
    if not isinstance(dset, h5py.Dataset):
        raise InputError(path, "no_packet_dataset",
                         f"packet file (version {version}) has no 'packets' dataset")
    dtype = dset.dtype
    if dtype.names is None or dset.ndim != 1:
        raise InputError(path, "bad_fields",
                         f"'packets' is not a one-dimensional table of fields ({dtype})")
    _check_fields(path, dtype)
    return Layout(PACKET_FORMAT, version, dtype, "receipt_timestamp" in dtype.names)


def _check_fields(path: str, dtype: np.dtype) -> None:
    names = set(dtype.names)
    missing = [n for n in REQUIRED_PACKET_FIELDS if n not in names]
    extra = sorted(names - set(PACKET_DTYPE.names))
    wrong = [f"{n} is {dtype[n]} (need {PACKET_DTYPE[n]})"
             for n in dtype.names if n in PACKET_DTYPE.names and dtype[n] != PACKET_DTYPE[n]]
    problems = []
    if missing:
        problems.append("missing fields " + ", ".join(missing))
    if extra:
        problems.append("unexpected fields " + ", ".join(extra))
    if wrong:
        problems.append("field types " + ", ".join(wrong))
    if problems:
        raise InputError(path, "bad_fields", "'packets' has " + "; ".join(problems))


def _raw_layout(f: h5py.File, path: str) -> Layout:
    version = _version(f["meta"].attrs)
    if version not in RAW_VERSIONS:
        raise _unsupported(path, version, RAW_VERSIONS, "raw file")
    msgs, headers = f.get("msgs"), f.get("msg_headers")
    if not isinstance(headers, h5py.Dataset):
        raise InputError(path, "no_packet_dataset", "raw file has 'msgs' but no 'msg_headers'")
    if not isinstance(msgs, h5py.Dataset) or h5py.check_vlen_dtype(msgs.dtype) != np.uint8:
        raise InputError(path, "bad_fields",
                         f"'msgs' is not variable-length bytes ({getattr(msgs, 'dtype', msgs)})")
    if headers.dtype.names is None or "io_groups" not in headers.dtype.names:
        raise InputError(path, "bad_fields", "'msg_headers' has no 'io_groups' field")
    return Layout(RAW_FORMAT, version, None, True)


def normalise_packets(rows: np.ndarray) -> np.ndarray:
    """Rows of any supported packet-file dtype as ``PACKET_DTYPE`` (absent fields 0)."""
    if rows.dtype == PACKET_DTYPE:
        return rows
    out = np.zeros(rows.shape, dtype=PACKET_DTYPE)
    for name in rows.dtype.names:
        out[name] = rows[name]
    return out


def decode_messages(msgs: np.ndarray, io_groups: np.ndarray) -> tuple[np.ndarray, int]:
    """PACMAN DATA messages -> (packets, number of malformed messages skipped).

    Every good message gives one timestamp packet (its header's unix time)
    followed by one packet per word, as larpix-control converts it. A message
    whose length disagrees with its word count, whose type is not DATA, or
    that holds a word other than data/sync/trigger is skipped whole.
    """
    n_msgs = len(msgs)
    if n_msgs == 0:
        return np.zeros(0, PACKET_DTYPE), 0
    lengths = np.fromiter((m.size for m in msgs), dtype=np.int64, count=n_msgs)
    flat = np.concatenate([*msgs, np.zeros(WORD_LEN, np.uint8)])
    starts = np.zeros(n_msgs, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    records = np.ndarray((flat.size - WORD_LEN + 1,), _RECORD, flat, 0, (1,))

    good = _well_formed(records, starts, lengths)
    good_idx = np.flatnonzero(good)
    n_words = (lengths[good_idx] - HEADER_LEN) // WORD_LEN
    good_idx, n_words = _without_unknown_words(flat, starts, good_idx, n_words)
    packets = _decode_rows(records, starts[good_idx], n_words, io_groups[good_idx])
    return packets, n_msgs - good_idx.size


def _well_formed(records: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Messages whose header is a DATA header announcing exactly the words that follow."""
    has_header = lengths >= HEADER_LEN
    headers = records[np.where(has_header, starts, 0)]
    return (has_header
            & (headers["kind"] == MSG_TYPE_DATA)
            & ((lengths - HEADER_LEN) % WORD_LEN == 0)
            & (headers["word_count"] == (lengths - HEADER_LEN) // WORD_LEN))


def _without_unknown_words(flat: np.ndarray, starts: np.ndarray, good_idx: np.ndarray,
                           n_words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop messages holding any word whose type is not data, sync or trigger."""
    word_pos = _word_positions(starts[good_idx], n_words)
    kinds = flat[word_pos]
    unknown = (kinds != WORD_DATA) & (kinds != WORD_SYNC) & (kinds != WORD_TRIGGER)
    if not unknown.any():
        return good_idx, n_words
    owner = np.repeat(np.arange(good_idx.size), n_words)
    keep = np.bincount(owner[unknown], minlength=good_idx.size) == 0
    return good_idx[keep], n_words[keep]


def _word_positions(starts: np.ndarray, n_words: np.ndarray) -> np.ndarray:
    """Byte offset of every word of the given messages, in order."""
    first_word = np.zeros(n_words.size, np.int64)
    np.cumsum(n_words[:-1], out=first_word[1:])
    rank = np.arange(int(n_words.sum()), dtype=np.int64) - np.repeat(first_word, n_words)
    return np.repeat(starts + HEADER_LEN, n_words) + WORD_LEN * rank


def _decode_rows(records: np.ndarray, starts: np.ndarray, n_words: np.ndarray,
                 io_groups: np.ndarray) -> np.ndarray:
    """One timestamp row per message, then its words, all fields filled column by column."""
    rows_per_msg = n_words + 1
    n_rows = int(rows_per_msg.sum())
    header_row = np.zeros(starts.size, np.int64)
    np.cumsum(rows_per_msg[:-1], out=header_row[1:])
    rank = np.arange(n_rows, dtype=np.int64) - np.repeat(header_row, rows_per_msg)
    source = np.repeat(starts, rows_per_msg) + np.where(rank > 0, WORD_LEN * rank - HEADER_LEN, 0)
    rec = records[source]

    is_header = rank == 0
    kind = rec["kind"]
    is_data = (kind == WORD_DATA) & ~is_header
    is_sync = kind == WORD_SYNC
    is_trigger = kind == WORD_TRIGGER
    is_marker = is_sync | is_trigger
    word = np.where(is_data, rec["packet"], np.uint64(0))

    out = np.zeros(n_rows, PACKET_DTYPE)
    out["io_group"] = np.repeat(io_groups, rows_per_msg)
    packet_type = (word & 3).astype(np.uint8)
    packet_type[is_header] = TIMESTAMP
    packet_type[is_sync] = SYNC
    packet_type[is_trigger] = TRIGGER
    out["packet_type"] = packet_type
    out["io_channel"] = np.where(is_data, rec["byte1"], 0)
    out["receipt_timestamp"] = np.where(is_data, rec["receipt"], 0)
    out["chip_id"] = word >> 2
    out["channel_id"] = (word >> 10) & 0x3F
    out["register_address"] = word >> 10
    out["register_data"] = word >> 18
    out["first_packet"] = (word >> 47) & 1
    out["dataword"] = np.where(is_sync, rec["byte2"] & 1, word >> 48)
    out["trigger_type"] = np.where(is_marker, rec["byte1"], (word >> 56) & 3)
    out["local_fifo"] = (word >> 58) & 3
    out["shared_fifo"] = (word >> 60) & 3
    out["downstream_marker"] = (word >> 62) & 1
    out["parity"] = word >> 63
    out["valid_parity"] = _odd_parity(word)
    out["timestamp"] = np.where(is_header, rec["header_time"],
                                np.where(is_data, (word >> 16) & 0x7FFFFFFF, rec["time"]))
    return out


def _odd_parity(words: np.ndarray) -> np.ndarray:
    """1 where a 64-bit word has an odd number of set bits (a LArPix packet's valid parity)."""
    folded = words ^ (words >> 32)
    folded ^= folded >> 16
    folded ^= folded >> 8
    return _BYTE_PARITY[(folded & 0xFF).astype(np.uint8)]
