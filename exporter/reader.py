"""Incremental reading of one LArPix HDF5 file while the DAQ may still be writing it.

Each chunk is read in its own short open: ``h5py.File(path, 'r', locking=False)``
(SWMR read mode when a raw writer has the file open), read, close. A reader
that held the file open, or took HDF5's file lock, would make the DAQ's next
append fail.
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import h5py
import numpy as np

from exporter.errors import InputError, TransientReadError
from exporter.formats import (
    HEADER_LEN,
    PACKET_FORMAT,
    RAW_FORMAT,
    WORD_LEN,
    Layout,
    decode_messages,
    detect,
    normalise_packets,
)
from exporter.packets import PACKET_DTYPE, Chunk

#: Pauses before the second, third, ... attempt at a file caught mid-write.
RETRY_DELAYS = (0.01, 0.03, 0.1)

#: First guess of packets per raw message, before a file has shown its own.
_INITIAL_PACKETS_PER_MESSAGE = 256

#: Raw messages per h5py read: bounds a chunk's overshoot when message sizes jump.
_MAX_MESSAGES_PER_READ = 4096

#: Largest block read when looking backwards for the last filled row.
_MAX_TAIL_BLOCK = 1 << 16


@dataclass
class Cursor:
    """What has been consumed of one file (persisted by the state store)."""

    path: str
    inode: int
    size: int
    #: Dataset rows consumed: packets (packet files) or messages (raw files).
    rows: int
    format: str | None


@dataclass
class _Batch:
    """Rows fetched from the file, still undecoded; the file is closed by now."""

    layout: Layout
    rows: int
    data: np.ndarray
    io_groups: np.ndarray | None = None


class FileReader:
    """Reads only the rows of one file that earlier calls have not consumed."""

    def __init__(self, path: str | os.PathLike, cursor: Cursor | None = None,
                 chunk_rows: int = 1 << 20) -> None:
        self.path = str(path)
        self.cursor = cursor if cursor is not None else Cursor(self.path, 0, 0, 0, None)
        self.chunk_rows = max(1, int(chunk_rows))
        self.resets = 0
        self._packets_per_message = float(_INITIAL_PACKETS_PER_MESSAGE)

    def read_new(self) -> Iterator[Chunk]:
        """New rows in chunks; a chunk is consumed once the next one is asked for."""
        info = self._stat()
        if self.cursor.inode and info.st_ino != self.cursor.inode:
            self._reset()
        elif info.st_size < self.cursor.size:
            self._reset()
        self.cursor.inode, self.cursor.size = info.st_ino, info.st_size
        while True:
            batch = self._fetch_retrying()
            if batch is None:
                return
            chunk = self._chunk(batch)
            yield chunk
            self.cursor.rows += batch.rows

    def _reset(self) -> None:
        self.cursor.rows = 0
        self.cursor.format = None
        self.resets += 1

    def _stat(self) -> os.stat_result:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            if os.path.islink(self.path):
                raise InputError(self.path, "unreadable",
                                 f"broken symbolic link (to {os.readlink(self.path)})") from None
            raise InputError(self.path, "vanished", "file no longer exists") from None
        except OSError as error:
            raise InputError(self.path, "unreadable", f"cannot stat file ({error.strerror})"
                             ) from None
        if stat.S_ISDIR(info.st_mode):
            raise InputError(self.path, "not_a_file", "is a directory, not a data file")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(self.path, "not_a_file",
                             "is not a regular file (fifo, socket or device)")
        if info.st_size == 0:
            raise InputError(self.path, "empty_file", "file is empty (0 bytes)")
        return info

    def _fetch_retrying(self) -> _Batch | None:
        """One chunk's rows, retrying a file caught mid-write before giving up."""
        before = _signature(self.path)
        for delay in (*RETRY_DELAYS, None):
            try:
                return self._fetch()
            except InputError as error:
                failure = error
            except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:
                failure = _classify(self.path, error)
            if failure.reason in ("vanished", "not_a_file", "unreadable"):
                raise failure
            if delay is not None:
                time.sleep(delay)
        if isinstance(failure, TransientReadError) or _signature(self.path) != before:
            raise TransientReadError(
                self.path, "busy",
                f"file is being written; {len(RETRY_DELAYS) + 1} reads failed ({failure.detail})")
        raise failure

    def _fetch(self) -> _Batch | None:
        with _open(self.path) as f:
            opened = os.fstat(f.id.get_vfd_handle())
            if opened.st_ino != self.cursor.inode:  # replaced since read_new looked
                self._reset()
            self.cursor.inode, self.cursor.size = opened.st_ino, opened.st_size
            layout = detect(f, self.path)
            if self.cursor.format not in (None, layout.format):
                self._reset()
            self.cursor.format = layout.format
            if layout.format == PACKET_FORMAT:
                return self._fetch_packets(f["packets"], layout)
            return self._fetch_messages(f["msgs"], f["msg_headers"], layout)

    def _first_row(self, available: int) -> int:
        """Where to continue: past the consumed rows, unless the file now holds fewer."""
        if available < self.cursor.rows:
            self._reset()
        return self.cursor.rows

    def _fetch_packets(self, dset: h5py.Dataset, layout: Layout) -> _Batch | None:
        start = self._first_row(dset.shape[0])
        end = _filled_end(dset, start, dset.shape[0], _zero_rows)
        stop = min(end, start + self.chunk_rows)
        if stop <= start:
            return None
        if layout.native:
            rows = np.empty(stop - start, PACKET_DTYPE)
            dset.read_direct(rows, np.s_[start:stop])
        else:
            rows = dset[start:stop]
        return _Batch(layout, stop - start, rows)

    def _fetch_messages(self, msgs: h5py.Dataset, headers: h5py.Dataset, layout: Layout
                        ) -> _Batch | None:
        """Messages holding about ``chunk_rows`` packets, read in blocks sized by the
        packets per message seen so far (a block is at most ``_MAX_MESSAGES_PER_READ``)."""
        available = min(msgs.shape[0], headers.shape[0])
        start = self._first_row(available)
        end = _filled_end(msgs, start, available, _empty_messages)
        end = _headers_written_end(headers, start, end)
        blocks, stop, packets = [], start, 0
        while stop < end and stop - start < self.chunk_rows and packets < self.chunk_rows:
            wanted = math.ceil((self.chunk_rows - packets) / self._packets_per_message)
            step = min(end - stop, self.chunk_rows - (stop - start), _MAX_MESSAGES_PER_READ,
                       wanted)
            block = msgs[stop:stop + step]
            block_packets = sum((m.size + HEADER_LEN) // WORD_LEN for m in block)
            self._packets_per_message = max(1.0, block_packets / step)
            blocks.append(block)
            packets += block_packets
            stop += step
        if stop == start:
            return None
        data = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        return _Batch(layout, stop - start, data, headers[start:stop]["io_groups"])

    def _chunk(self, batch: _Batch) -> Chunk:
        layout = batch.layout
        if layout.format == PACKET_FORMAT:
            return Chunk(normalise_packets(batch.data), batch.rows,
                         batch.rows * batch.data.dtype.itemsize, PACKET_FORMAT,
                         layout.has_receipt_timestamp)
        packets, malformed = decode_messages(batch.data, batch.io_groups)
        nbytes = int(sum(m.size for m in batch.data)) + batch.io_groups.nbytes
        return Chunk(packets, batch.rows, nbytes, RAW_FORMAT, True, malformed)


def _open(path: str) -> h5py.File:
    """Open without HDF5's file lock; in SWMR read mode if a raw writer has it open."""
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as error:
        if "already open for write" not in str(error):
            raise
    return h5py.File(path, "r", locking=False, swmr=True)


def _signature(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _filled_end(dset: h5py.Dataset, start: int, end: int,
                empty: Callable[[np.ndarray], np.ndarray]) -> int:
    """End of the rows before the trailing allocated-but-unwritten ones."""
    block = 1
    while end > start:
        low = max(start, end - block)
        filled = np.flatnonzero(~empty(dset[low:end]))
        if filled.size:
            return low + int(filled[-1]) + 1
        end = low
        block = min(block * 16, _MAX_TAIL_BLOCK)
    return start


def _headers_written_end(headers: h5py.Dataset, start: int, end: int) -> int:
    """to_rawfile writes ``msgs`` before ``msg_headers``: in a file whose messages carry
    io_groups, trailing zero headers are not written yet, so their messages wait."""
    header_end = _filled_end(headers, start, end, _zero_rows)
    if header_end > start or (start > 0 and headers[start - 1]["io_groups"] != 0):
        return header_end
    return end


def _zero_rows(rows: np.ndarray) -> np.ndarray:
    return ~np.ascontiguousarray(rows).view(np.uint8).reshape(rows.size, -1).any(axis=1)


def _empty_messages(msgs: np.ndarray) -> np.ndarray:
    return np.fromiter((m.size == 0 for m in msgs), dtype=bool, count=len(msgs))


def _classify(path: str, error: BaseException) -> InputError:
    """An h5py/OS failure as the reason a person (and the error metric) sees."""
    text = " ".join(str(error).split())
    if isinstance(error, PermissionError):
        return InputError(path, "unreadable", "permission denied")
    if isinstance(error, FileNotFoundError):
        return InputError(path, "vanished", "file no longer exists")
    if isinstance(error, IsADirectoryError):
        return InputError(path, "not_a_file", "is a directory, not a data file")
    if "file signature not found" in text:
        return InputError(path, "not_hdf5", "not an HDF5 file (no HDF5 signature)")
    if "already open for write" in text or "already open for SWMR" in text:
        return TransientReadError(path, "busy", "another process has the file open for writing")
    if "truncated file" in text:
        return InputError(path, "truncated", "truncated HDF5 file (" + _inner(text) + ")")
    return InputError(path, "truncated", "damaged or truncated HDF5 file (" + _inner(text) + ")")


def _inner(text: str) -> str:
    """The library's own reason, without h5py's 'Unable to ...' preamble."""
    start, end = text.find("("), text.rfind(")")
    return text[start + 1:end] if 0 <= start < end else text
