"""Incremental reading of one LArPix HDF5 file while the DAQ may still be writing it.

Each chunk is read in its own short open: ``h5py.File(path, 'r', locking=False)``
(SWMR read mode when a raw writer has the file open), read, close. A reader
that held the file open, or took HDF5's file lock, would make the DAQ's next
append fail.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import h5py
import numpy as np

from exporter.errors import InputError, TransientReadError
from exporter.packets import PACKET_DTYPE, STEP_ROWS, Chunk, PacketWords, WordsBuilder
from exporter.source.buffers import CHUNK_ARRAYS
from exporter.source.chunk_map import ChunkMap, worth_mapping
from exporter.source.cursor import Cursor
from exporter.source.formats import (
    PACKET_FORMAT,
    RAW_FORMAT,
    Layout,
    created_time,
    detect,
    normalise_packets,
)
from exporter.source.global_heap import read_messages
from exporter.source.opening import (
    classify,
    open_file,
    signature,
    stat_data_file,
    uncached_dataset,
)
from exporter.source.pacman import HEADER_LEN, WORD_LEN, decode_messages
from exporter.source.slabs import Damage, merge_damage, read_slab, unreadable_mask

#: Pauses before the second, third, ... attempt at a file caught mid-write.
RETRY_DELAYS = (0.01, 0.03, 0.1)

#: First guess of packets per raw message, before a file has shown its own.
_INITIAL_PACKETS_PER_MESSAGE = 256

#: Raw messages per read: bounds a chunk's overshoot when message sizes jump.
_MAX_MESSAGES_PER_READ = 4096

#: A file unchanged this long is not being written: a raw file has every header written
#: that it will get, and a chunk that will not read is damage, not a writer's work in
#: progress (an HDF5 writer's chunks can point past the end it has flushed so far).
SETTLE_SECONDS = 2.0

#: Rows that have read as unreadable, the same way at the same place, for this long are
#: damage even in a file that keeps changing: no writer leaves a chunk half-written that
#: long, and a live run must not stop being monitored at one bad chunk.
PERSIST_SECONDS = 10.0

#: Largest block read when looking backwards for the last filled row.
_MAX_TAIL_BLOCK = 1 << 16


@dataclass
class _Batch:
    """Rows fetched from the file, decoded, and what the open showed of the file."""

    #: Row the batch starts at: the cursor's, or 0 if the file must be read again.
    start: int
    rows: int
    reset: bool
    inode: int
    size: int
    layout: Layout
    #: Whether filled rows are left after this batch (worth reading ahead).
    more: bool
    #: Whether the file had not changed for ``SETTLE_SECONDS`` when it was opened.
    settled: bool
    created: float | None = None
    #: Rows of the batch that could not be read (skipped, said once).
    damage: list[Damage] = field(default_factory=list)
    chunk: Chunk | None = None


class FileReader:
    """Reads only the rows of one file that earlier calls have not consumed.

    While a chunk is with its consumer, the next one (if the file holds more)
    is read and decoded on a helper thread: h5py and numpy release the GIL,
    so catching up on a backlog costs about the larger of reading and
    counting, not their sum. The helper also copies the chunk's words
    (``Chunk.words``), a step of rows at a time right after reading it, into
    arrays reused once no one holds them (``buffers``). At most two chunks are
    in memory besides those a consumer keeps.

    Rows that will not read are skipped as damage once two reads find them so
    at the same place in a file that has settled (``SETTLE_SECONDS``), in a
    file still changing once reads have found them so for ``PERSIST_SECONDS``,
    or at once with ``at_rest``: a finished file (once mode, a reference run).
    """

    def __init__(self, path: str | os.PathLike, cursor: Cursor | None = None,
                 chunk_rows: int = 1 << 20, read_ahead: bool = True,
                 at_rest: bool = False) -> None:
        self.path = str(path)
        self.at_rest = at_rest
        self.cursor = cursor if cursor is not None else Cursor(self.path, 0, 0, 0, None)
        self.chunk_rows = max(1, int(chunk_rows))
        self.read_ahead = read_ahead
        self.resets = 0
        #: The next chunk being read while the consumer holds one (None: nothing ahead).
        self.ahead: Future[_Batch] | None = None
        self._packets_per_message = float(_INITIAL_PACKETS_PER_MESSAGE)
        #: The damage the last reads found, and when a read first found it (monotonic).
        self._damage_since: tuple[list[Damage], float] | None = None
        #: Where this pass's packet chunks lie (None: HDF5 reads each chunk), made when a
        #: pass has enough of a file to read (``worth_mapping``) and dropped when it ends.
        self.chunk_map: ChunkMap | None = None

    def read_new(self) -> Iterator[Chunk]:
        """New rows in chunks. The cursor covers a chunk as soon as it is handed out: the
        consumer counts it before anything saves the cursor (same thread), so stopping
        after any chunk never leaves a counted chunk unclaimed."""
        info = stat_data_file(self.path)
        if self.cursor.inode and info.st_ino != self.cursor.inode:
            self._reset()
        elif info.st_size < self.cursor.size:
            self._reset()
        self.cursor.inode, self.cursor.size = info.st_ino, info.st_size
        # With read-ahead every read of the pass, the first too, runs on the one helper
        # thread: glibc gives each thread its own heap, and a chunk read on another thread
        # than the last would first-touch a fresh heap's worth of pages.
        ahead = ThreadPoolExecutor(1, thread_name_prefix="read-ahead") if self.read_ahead else None
        try:
            following = (self.cursor.rows, self.cursor.inode, self.cursor.format,
                         self.cursor.created)
            pending = ahead.submit(self._fetch_retrying, *following) if ahead else None
            while True:
                batch = pending.result() if pending else self._fetch_retrying(*following)
                self._observe(batch)
                if batch.chunk is None:
                    return
                following = (batch.start + batch.rows, batch.inode, batch.layout.format,
                             batch.created)
                pending = None
                if batch.more and ahead is not None:
                    pending = ahead.submit(self._fetch_retrying, *following)
                self.ahead = pending
                self.cursor.rows = following[0]
                yield batch.chunk
        finally:
            if ahead is not None:
                ahead.shutdown(cancel_futures=True)
            self.chunk_map = None  # trusted for one pass only

    def _reset(self) -> None:
        self.cursor.rows = 0
        self.cursor.format = self.cursor.created = None
        self.resets += 1

    def _observe(self, batch: _Batch) -> None:
        """Bring the cursor up to what the batch's open found (the consumer's thread)."""
        if batch.reset:
            self._reset()
        self.cursor.rows = batch.start
        self.cursor.inode, self.cursor.size = batch.inode, batch.size
        self.cursor.format = batch.layout.format
        self.cursor.created = batch.created

    def _fetch_retrying(self, start: int, inode: int, known_format: str | None,
                        created: float | None) -> _Batch:
        """The chunk from row ``start`` of the file last seen as ``inode`` holding
        ``known_format``, made at ``created``, retrying a file caught mid-write before
        giving up. Unreadable chunks are skipped only once a second read finds them
        unreadable at the same place, in a file at rest: a chunk a writer is still
        writing is not damage (the service reads the file again next round)."""
        before = signature(self.path)
        seen: list | None = None
        for delay in (*RETRY_DELAYS, None):
            try:
                batch = self._fetch(start, inode, known_format, created)
                if not batch.damage or (batch.damage == seen and (
                        batch.settled or self.at_rest or self._persisted(batch.damage))):
                    return batch
                seen = batch.damage
                failure = TransientReadError(self.path, "busy", "; ".join(
                    d.text for d in batch.damage))
            except InputError as error:
                failure = error
            except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:
                failure = classify(self.path, error)
            if failure.reason in ("vanished", "not_a_file", "unreadable"):
                raise failure
            if delay is not None:
                time.sleep(delay)
        if isinstance(failure, TransientReadError) or signature(self.path) != before:
            raise TransientReadError(
                self.path, "busy",
                f"file is being written; {len(RETRY_DELAYS) + 1} reads failed ({failure.detail})")
        raise failure

    def _persisted(self, damage: list[Damage]) -> bool:
        """Whether reads have found ``damage`` since at least ``PERSIST_SECONDS`` ago."""
        now = time.monotonic()
        if self._damage_since is None or self._damage_since[0] != damage:
            self._damage_since = (damage, now)
        return now - self._damage_since[1] >= PERSIST_SECONDS

    def _fetch(self, start: int, inode: int, known_format: str | None,
               created: float | None) -> _Batch:
        """Leaves the cursor alone: it may run while the consumer holds the previous chunk."""
        with open_file(self.path) as f:
            opened = os.fstat(f.id.get_vfd_handle())
            layout = detect(f, self.path)
            made = created_time(f, layout)
            # replaced or rewritten since the cursor's last look, or now in the other format
            reset = (opened.st_ino != inode or known_format not in (None, layout.format)
                     or (created is not None and made != created))
            packets = layout.format == PACKET_FORMAT
            # packets are read once, in order (``uncached_dataset``); raw files keep HDF5's
            # cache, so that a gzip chunk is decompressed once for several reads
            datasets = ((uncached_dataset(f, "packets"),) if packets
                        else (f["msgs"], f["msg_headers"]))
            available = min(dataset.shape[0] for dataset in datasets)
            reset = reset or available < start  # the file now holds fewer rows
            if reset:
                start = 0
                self.chunk_map = None  # of the file as it was
            damage: list[Damage] = []
            settled = time.time() - opened.st_mtime > SETTLE_SECONDS
            if packets:
                rows, data, words, more = self._fetch_packets(datasets[0], layout, start,
                                                              damage, opened)
                io_groups = None
            else:
                rows, data, io_groups, more = self._fetch_messages(*datasets, start, available,
                                                                   settled, damage,
                                                                   opened.st_size)
                words = None
        batch = _Batch(start, rows, reset, opened.st_ino, opened.st_size, layout, more,
                       settled, made, damage)
        if rows:
            batch.chunk = self._chunk(layout, data, io_groups, damage, start, words)
        return batch

    def _fetch_packets(self, dset: h5py.Dataset, layout: Layout, start: int,
                       damage: list[Damage], opened: os.stat_result
                       ) -> tuple[int, np.ndarray | None, PacketWords | None, bool]:
        """Rows read, the rows, their words (None: to be made from the rows), whether
        filled rows remain."""
        end = _filled_end(dset, start, dset.shape[0], _zero_rows)
        stop = min(end, start + self.chunk_rows)
        if stop <= start:
            return 0, None, None, False
        if not layout.native:
            slab = read_slab(dset, start, stop, None, end)
            damage += slab.damage
            return len(slab.rows), slab.rows, None, start + len(slab.rows) < end
        chunk_map = self._map(dset, start, end, opened)
        fd = dset.file.id.get_vfd_handle() if chunk_map is not None else -1
        # a step at a time, its words copied while its rows are in the CPU cache
        rows = CHUNK_ARRAYS.empty(stop - start, PACKET_DTYPE)
        words = WordsBuilder(stop - start, layout.has_receipt_timestamp, CHUNK_ARRAYS.empty)
        for low, high in _steps(dset, start, stop):
            step = rows[low - start:high - start]
            if chunk_map is not None and chunk_map.read_into(fd, step, low, high):
                if words is not None:
                    words.add(low - start, step)
                continue
            slab = read_slab(dset, low, high, PACKET_DTYPE, end if high == stop else None,
                             lambda n, dtype, step=step: step)  # into the chunk's array
            if slab.damage:  # its rows go: the words are made from the rows kept
                for new in slab.damage:
                    merge_damage(damage, new)
                words = None
                if len(slab.rows) > high - low:  # the last chunk, unreadable, skipped whole
                    rows = np.concatenate([rows, slab.rows[high - low:]])
            elif words is not None:
                words.add(low - start, step)
        return len(rows), rows, words.finish() if words else None, start + len(rows) < end

    def _map(self, dset: h5py.Dataset, start: int, end: int,
             opened: os.stat_result) -> ChunkMap | None:
        """This pass's chunk map of the packets, made if the rows left to read are worth it."""
        known = self.chunk_map
        if known is not None and known.fits(dset, opened.st_ino, opened.st_size):
            return known
        self.chunk_map = None
        if worth_mapping(dset, start, end):
            self.chunk_map = ChunkMap.of(dset, PACKET_DTYPE, opened.st_ino, opened.st_size)
        return self.chunk_map

    def _fetch_messages(self, msgs: h5py.Dataset, headers: h5py.Dataset, start: int,
                        available: int, settled: bool, damage: list[Damage], file_size: int
                        ) -> tuple[int, np.ndarray | None, np.ndarray | None, bool]:
        """Messages holding about ``chunk_rows`` packets, read in blocks sized by the
        packets per message seen so far (a block is at most ``_MAX_MESSAGES_PER_READ``):
        messages read, the messages, their io_groups, whether filled messages remain.
        A block is read from the heap's bytes where it can be, through HDF5 otherwise."""
        end = _filled_end(msgs, start, available, _empty_messages)
        end = _headers_written_end(headers, start, end, settled)
        blocks, stop, packets = [], start, 0
        fd = msgs.file.id.get_vfd_handle()
        while stop < end and stop - start < self.chunk_rows and packets < self.chunk_rows:
            wanted = math.ceil((self.chunk_rows - packets) / self._packets_per_message)
            step = min(end - stop, self.chunk_rows - (stop - start), _MAX_MESSAGES_PER_READ,
                       wanted)
            block = read_messages(msgs, stop, stop + step, fd, file_size)
            if block is None:
                slab = read_slab(msgs, stop, stop + step, limit=end)
                block = slab.rows
                damage += slab.damage
            step = len(block)
            block_packets = sum((m.size + HEADER_LEN) // WORD_LEN for m in block)
            self._packets_per_message = max(1.0, block_packets / step)
            blocks.append(block)
            packets += block_packets
            stop += step
        if stop == start:
            return 0, None, None, False
        data = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        header_slab = read_slab(headers, start, stop)
        damage += header_slab.damage
        return stop - start, data, header_slab.rows["io_groups"], stop < end

    def _chunk(self, layout: Layout, data: np.ndarray, io_groups: np.ndarray | None,
               damage: list[Damage], start: int, words: PacketWords | None) -> Chunk:
        """The readable rows of a batch; ``Chunk.rows`` counts only those."""
        keep, skipped = unreadable_mask(damage, start, len(data)), 0
        if keep is not None:
            data, skipped = data[keep], len(data) - int(keep.sum())
            io_groups = None if io_groups is None else io_groups[keep]
        errors = tuple(InputError(self.path, "corrupt_chunk", d.text) for d in damage)
        if layout.format == PACKET_FORMAT:
            packets = normalise_packets(data)
            words = words or PacketWords.of(packets, layout.has_receipt_timestamp,
                                            CHUNK_ARRAYS.empty)
            return Chunk(packets, len(data), data.nbytes, PACKET_FORMAT,
                         layout.has_receipt_timestamp, damaged=errors, skipped=skipped,
                         words=words)
        packets, words, malformed = decode_messages(data, io_groups, CHUNK_ARRAYS.empty)
        nbytes = int(sum(m.size for m in data)) + io_groups.nbytes
        return Chunk(packets, len(data), nbytes, RAW_FORMAT, True, malformed, errors, skipped,
                     words)


def _steps(dset: h5py.Dataset, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """Rows ``start:stop`` in steps of about ``STEP_ROWS`` that end on the dataset's stored
    chunks (a damaged chunk lies within one step, so it is read and reported once)."""
    stored = dset.chunks[0] if dset.chunks else 1
    size = max(stored, STEP_ROWS - STEP_ROWS % stored)
    low = start
    while low < stop:
        high = min(low - low % size + size, stop)
        yield low, high
        low = high


def _filled_end(dset: h5py.Dataset, start: int, end: int,
                empty: Callable[[np.ndarray], np.ndarray]) -> int:
    """End of the rows before the trailing allocated-but-unwritten ones."""
    block = 1
    while end > start:
        low = max(start, end - block)
        slab = read_slab(dset, low, end)
        blank = empty(slab.rows)
        keep = slab.readable(low)
        filled = np.flatnonzero(~(blank if keep is None else blank & keep))  # bad: written
        if filled.size:
            return low + int(filled[-1]) + 1
        end = low
        block = min(block * 16, _MAX_TAIL_BLOCK)
    return start


def _headers_written_end(headers: h5py.Dataset, start: int, end: int, settled: bool) -> int:
    """to_rawfile writes ``msgs`` before ``msg_headers``: trailing zero headers are not
    written yet, so their messages wait, from row 0 on. Zero headers are final in a file
    whose earlier headers were zero too, or once the file has not changed for
    ``SETTLE_SECONDS`` (a writer fills the headers milliseconds after the messages)."""
    header_end = _filled_end(headers, start, end, _zero_rows)
    if header_end > start:
        return header_end
    if settled or (start > 0 and read_slab(headers, start - 1, start).rows[0]["io_groups"] == 0):
        return end
    return start


def _zero_rows(rows: np.ndarray) -> np.ndarray:
    return ~np.ascontiguousarray(rows).view(np.uint8).reshape(rows.size, -1).any(axis=1)


def _empty_messages(msgs: np.ndarray) -> np.ndarray:
    return np.fromiter((m.size == 0 for m in msgs), dtype=bool, count=len(msgs))
