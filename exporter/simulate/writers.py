"""HDF5 writers that lay files out exactly as larpix-control 3.7.0 does.

``PacketFileWriter`` follows ``hdf5format.to_file`` (what the DAQ's ``HDF5Logger``
calls on every flush): open in mode 'a', create or resize ``packets``, write
the rows, close. ``RawFileWriter`` follows ``rawhdf5format.to_rawfile``: open with
``libver='latest'``, switch to SWMR, resize ``msgs`` and ``msg_headers``, write,
flush, close. Both may be given an already open file to write many flushes
quickly (static files); the on-disk layout is the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import h5py
import numpy as np
from h5py import h5s

from exporter.simulate.encode import PACKET_DTYPES

#: ``packet_types`` attribute text of each version, verbatim (typo included).
_PACKET_TYPES = """
0: 'data',
1: 'test',
2: 'config write',
3: 'config read',
4: 'timestamp',
5: 'message',
"""
_PACKET_TYPES_2_2 = _PACKET_TYPES + """6: 'sync',
7: 'trigger,
"""
MESSAGES_DTYPE = np.dtype([("message", "S64"), ("timestamp", "u8"), ("index", "u4")])
CONFIGS_DTYPE = np.dtype([("timestamp", "u8"), ("io_group", "u1"), ("io_channel", "u1"),
                          ("chip_id", "u1"), ("registers", "u1", (239,))])
RAW_MSGS_DTYPE = h5py.vlen_dtype(np.dtype("u1"))
RAW_HEADERS_DTYPE = np.dtype([("io_groups", "u1")])
RAW_VERSION = "0.0"
PACMAN_IO_VERSION = "0.0"


#: How long a write waits for a reader of the same process to close the file.
OPEN_TIMEOUT_SECONDS = 10.0


def _open_for_writing(path: Path, **kwargs) -> h5py.File:
    """``h5py.File(path, 'a')``, retried while the file is open read-only in this process.

    HDF5 keeps one handle per file per process: a reader thread holding the file
    open makes the writer's open fail until it closes. A reader in another
    process (``locking=False``) never does, so the DAQ itself need not retry.
    """
    deadline = time.monotonic() + OPEN_TIMEOUT_SECONDS
    while True:
        try:
            return h5py.File(path, "a", **kwargs)
        except OSError as error:
            if "already open" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.002)


@contextmanager
def _held_or_opened(f: h5py.File | None, opened: Callable[[], AbstractContextManager[h5py.File]]
                    ) -> Iterator[h5py.File]:
    """``f`` when the caller holds the file open across appends, else one open for this one."""
    if f is not None:
        yield f
        return
    with opened() as f:
        yield f


class PacketFileWriter:
    """A LArPix+HDF5 packet file of one format version, appended flush by flush."""

    def __init__(self, path: str | Path, version: str = "2.4") -> None:
        if version not in PACKET_DTYPES:
            raise ValueError(f"unsupported packet file version {version!r}")
        self.path = Path(path)
        self.version = version

    @contextmanager
    def opened(self) -> Iterator[h5py.File]:
        with _open_for_writing(self.path) as f:
            yield f

    def append(self, rows: np.ndarray, messages: list[tuple[str, int]] = (),
               f: h5py.File | None = None) -> None:
        """One flush: ``rows`` in this version's dtype; ``messages`` (text, time) of type-5 rows."""
        with _held_or_opened(f, self.opened) as f:
            self._append(f, rows, messages)

    def _append(self, f: h5py.File, rows: np.ndarray, messages) -> None:
        if "_header" not in f:
            header = f.create_group("_header")
            header.attrs["version"] = self.version
            header.attrs["created"] = time.time()
        f["_header"].attrs["modified"] = time.time()
        if "packets" not in f:
            packets = f.create_dataset("packets", shape=(len(rows),), maxshape=(None,),
                                       dtype=PACKET_DTYPES[self.version])
            packets.attrs["packet_types"] = (
                _PACKET_TYPES_2_2 if self.version == "2.2" else _PACKET_TYPES)
            start = 0
        else:
            packets = f["packets"]
            start = packets.shape[0]
            packets.resize(start + len(rows), axis=0)
        if "messages" not in f:
            f.create_dataset("messages", shape=(0,), maxshape=(None,), dtype=MESSAGES_DTYPE)
        if self.version >= "2.4" and "configs" not in f:
            f.create_dataset("configs", shape=(0,), maxshape=(None,), dtype=CONFIGS_DTYPE)
        if len(rows):
            packets[start:] = rows
        if messages:
            dset = f["messages"]
            first = dset.shape[0]
            table = np.zeros(len(messages), MESSAGES_DTYPE)
            table["message"] = [text.encode() for text, _ in messages]
            table["timestamp"] = [stamp for _, stamp in messages]
            table["index"] = np.arange(first, first + len(messages))
            dset.resize(first + len(messages), axis=0)
            dset[first:] = table


class RawFileWriter:
    """A raw PACMAN message file (rawhdf5format 0.0), appended the SWMR way."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def opened(self) -> Iterator[h5py.File]:
        with _open_for_writing(self.path, libver="latest") as f:
            yield f

    def append(self, messages: list[np.ndarray], io_groups: np.ndarray,
               f: h5py.File | None = None) -> None:
        with _held_or_opened(f, self.opened) as f:
            self._append(f, messages, io_groups)

    def _append(self, f: h5py.File, messages: list[np.ndarray], io_groups: np.ndarray) -> None:
        now = time.time()
        if "meta" not in f:
            meta = f.create_group("meta")
            meta.attrs["version"] = RAW_VERSION
            meta.attrs["created"] = now
            meta.attrs["modified"] = now
            meta.attrs["io_version"] = PACMAN_IO_VERSION
            f.create_dataset("msgs", shape=(0,), maxshape=(None,), compression="gzip",
                             dtype=RAW_MSGS_DTYPE)
            f.create_dataset("msg_headers", shape=(0,), maxshape=(None,), compression="gzip",
                             dtype=RAW_HEADERS_DTYPE)
            f.swmr_mode = True
        else:
            if not f.swmr_mode:
                f.swmr_mode = True
            f["meta"].attrs["modified"] = now
        msgs, headers = f["msgs"], f["msg_headers"]
        start = len(msgs)
        msgs.resize((start + len(messages),))
        headers.resize((start + len(messages),))
        stored = np.empty(len(messages), dtype=RAW_MSGS_DTYPE)
        for i, message in enumerate(messages):
            stored[i] = message
        table = np.zeros(len(messages), RAW_HEADERS_DTYPE)
        table["io_groups"] = io_groups
        if len(messages):
            _write_vlen(msgs, start, stored)
            headers[start:] = table
        msgs.flush()
        headers.flush()


def _write_vlen(dset: h5py.Dataset, start: int, values: np.ndarray) -> None:
    """Write an object array of byte arrays at ``start``.

    Through the low-level call: h5py's ``dset[a:b] = values`` turns messages that
    all have the same length into a 2-D array and refuses to write it.
    """
    file_space = dset.id.get_space()
    file_space.select_hyperslab((start,), (len(values),))
    dset.id.write(h5s.create_simple((len(values),)), file_space, values)
