"""Simulated LArPix runs: realistic files in both formats, with their ground truth.

``simulate_file`` writes a whole file at once; ``LiveSimulation`` appends to a
file the way the DAQ does, as fast as asked (``append``) or in real time
(``run``). Either way ``<file>.truth.json`` beside the file holds what the
monitor must show after reading it (see ``exporter.simulate.truth``).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from pathlib import Path

import numpy as np

from exporter.simulate.detector import SimConfig, describe_detector
from exporter.simulate.encode import (
    PACKET_VERSIONS,
    message_rows,
    packet_rows,
    raw_messages,
    repack_for_version,
)
from exporter.simulate.faults import write_daq_configs
from exporter.simulate.generate import HEADER, RECORD_DTYPE, SecondGenerator, concat_rows
from exporter.simulate.truth import (
    TruthTally,
    detector_path,
    truth_path,
    write_json,
    write_truth,
)
from exporter.simulate.writers import PacketFileWriter, RawFileWriter

FORMATS = ("packet", "raw")
RUN_START_MESSAGE = "run start"
RUN_END_MESSAGE = "run end"
#: Records generated before they are encoded and written, bounding memory.
_BATCH_RECORDS = 1 << 18


class _Run:
    """One simulated run: generator, encoder, file writer and truth tally together."""

    def __init__(self, path: str | Path, fmt: str, config: SimConfig, version: str,
                 rate_window: float, hot_rate: float) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
        if version not in PACKET_VERSIONS:
            raise ValueError(f"packet file version must be one of {PACKET_VERSIONS}")
        self.path = Path(path)
        self.fmt = fmt
        self.version = version
        self.config = config
        self.generator = SecondGenerator(config)
        self.next_second = 0
        self.started = False
        self.tally = TruthTally(fmt, rate_window, hot_rate,
                                has_receipt_timestamp=fmt == "raw" or version >= "2.3")
        self.writer = (PacketFileWriter(self.path, version) if fmt == "packet"
                       else RawFileWriter(self.path))
        self.path.unlink(missing_ok=True)
        truth_path(self.path).unlink(missing_ok=True)
        write_json(detector_path(self.path), describe_detector(config))

    def generate(self, n_seconds: int) -> np.ndarray:
        parts = [self.generator.second(self.next_second + i) for i in range(n_seconds)]
        self.next_second += n_seconds
        return concat_rows(parts) if parts else np.zeros(0, RECORD_DTYPE)

    def write(self, records: np.ndarray, f=None, final: bool = False,
              flush_rows: int | None = None) -> None:
        """Encode and count a batch of records; append it in flushes of ~``flush_rows`` rows."""
        rows = packet_rows(records, self.version if self.fmt == "packet" else "2.4")
        seconds = self._data_seconds(records, rows)
        cuts = _flush_cuts(records, flush_rows) if flush_rows else np.zeros(0, np.int64)
        if self.fmt == "raw":
            messages, io_groups = raw_messages(records)
            message_cuts = np.searchsorted(np.flatnonzero(records["kind"] == HEADER), cuts)
            for lo, hi in _pairs(message_cuts, len(messages)):
                self.writer.append(messages[lo:hi], io_groups[lo:hi], f)
            self.tally.add(rows, seconds, len(messages))
            return
        head = [] if self.started else [(RUN_START_MESSAGE, self.config.start_time)]
        tail = [(RUN_END_MESSAGE, self.config.start_time + self.next_second)] if final else []
        rows = concat_rows([message_rows([t for _, t in head]), rows,
                            message_rows([t for _, t in tail])])
        seconds = np.concatenate([np.full(len(head), -1), seconds, np.full(len(tail), -1)])
        self.started = True
        stored = repack_for_version(rows, self.version)
        pairs = _pairs(cuts + len(head), len(rows))
        for i, (lo, hi) in enumerate(pairs):
            notes = (head if i == 0 else []) + (tail if i == len(pairs) - 1 else [])
            self.writer.append(stored[lo:hi], notes, f)
        self.tally.add(rows, seconds, len(rows))

    def _data_seconds(self, records: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Data second of each row: its message's, if its io_group has timestamp packets."""
        if self.fmt == "packet" and self.version < "2.3":
            # Before 2.3, hdf5format stores timestamp packets with io_group 0, so
            # only those rows have a data time (their own).
            return np.where(records["kind"] == HEADER, records["second"], -1)
        return records["second"]

    def save_truth(self) -> dict:
        truth = self.tally.snapshot()
        write_truth(self.path, truth)
        return truth


def _pairs(cuts: np.ndarray, n: int) -> list[tuple[int, int]]:
    """(start, stop) of the pieces ``cuts`` splits ``range(n)`` into."""
    bounds = [0, *cuts.tolist(), n]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _flush_cuts(records: np.ndarray, flush_rows: int) -> np.ndarray:
    """Message boundaries that split ``records`` into flushes of about ``flush_rows`` rows."""
    headers = np.flatnonzero(records["kind"] == HEADER)
    targets = np.arange(flush_rows, len(records), flush_rows)
    cuts = headers[np.minimum(np.searchsorted(headers, targets), len(headers) - 1)]
    return np.unique(cuts[cuts > 0])


def simulate_file(path: str | Path, fmt: str = "packet", *, n_packets: int | None = None,
                  seconds: int | None = None, version: str = "2.4",
                  rate_window: float = 10.0, hot_rate: float = 20.0,
                  flush_rows: int = 10_000, config: SimConfig | None = None,
                  **params) -> dict:
    """Write a whole simulated file; return its ground truth (also saved beside it).

    Give either ``n_packets`` (exact number of packets, i.e. rows of a packet
    file or decoded packets of a raw file) or ``seconds`` of data. ``params``
    override fields of ``SimConfig`` (seed, rate, io_groups, ...).
    """
    config = dataclasses.replace(config or SimConfig(), **params)
    if (n_packets is None) == (seconds is None):
        raise ValueError("give exactly one of n_packets and seconds")
    if seconds is not None and seconds < 1:
        raise ValueError("seconds must be at least 1")
    run = _Run(path, fmt, config, version, rate_window, hot_rate)
    messages = 2 if fmt == "packet" else 0
    budget = None if n_packets is None else n_packets - messages
    if budget is not None and budget < 1:
        raise ValueError(f"n_packets must be at least {messages + 1} for {fmt} files")
    written = 0
    with run.writer.opened() as f:
        while True:
            batch, done = [], False
            size = 0
            while size < _BATCH_RECORDS and not done:
                if seconds is not None:
                    done = run.next_second + 1 >= seconds
                batch.append(run.generate(1))
                size += len(batch[-1])
                if budget is not None:
                    done = written + size >= budget
            records = concat_rows(batch)
            if budget is not None:
                records = records[:budget - written]
            written += len(records)
            run.write(records, f, final=done, flush_rows=flush_rows)
            if done:
                break
    if config.faults is not None:
        write_daq_configs(run.path, config)
    return run.save_truth()


class LiveSimulation:
    """A file that grows the way the DAQ grows it, one data second per flush.

    ``append(n)`` writes the next ``n`` data seconds immediately; ``run()`` writes
    one per wall-clock second with data time = wall-clock time. With
    ``flush_rows`` a second goes out in flushes of about that many rows (at
    message boundaries), as the DAQ's logger flushes its buffer. After every
    second the ground truth beside the file is replaced atomically. ``close()``
    ends the run (packet files get their run-end message). Usable from a
    thread; ``stop`` (a ``threading.Event``) ends ``run`` early.
    """

    def __init__(self, path: str | Path, fmt: str = "packet", *, version: str = "2.4",
                 rate_window: float = 10.0, hot_rate: float = 20.0,
                 flush_rows: int | None = None, config: SimConfig | None = None,
                 **params) -> None:
        self._config = dataclasses.replace(config or SimConfig(), **params)
        self._args = (path, fmt, version, rate_window, hot_rate)
        self._flush_rows = flush_rows
        self._run = self._new_run(self._config)
        self.closed = False

    def _new_run(self, config: SimConfig) -> _Run:
        path, fmt, version, rate_window, hot_rate = self._args
        return _Run(path, fmt, config, version, rate_window, hot_rate)

    @property
    def path(self) -> Path:
        return self._run.path

    @property
    def seconds_written(self) -> int:
        return self._run.next_second

    @property
    def truth(self) -> dict:
        return self._run.tally.snapshot()

    def append(self, n_seconds: int = 1) -> int:
        """Write the next ``n_seconds`` data seconds; return the packets written."""
        if self.closed:
            raise RuntimeError(f"{self.path}: simulation already closed")
        before = self._run.tally.packets
        for _ in range(n_seconds):
            self._run.write(self._run.generate(1), flush_rows=self._flush_rows)
            self._run.save_truth()
        return self._run.tally.packets - before

    def close(self) -> dict:
        """End the run: last flush (run-end message in packet files); return the final truth."""
        if not self.closed:
            if self._run.fmt == "packet":
                self._run.write(np.zeros(0, RECORD_DTYPE), final=True)
            self.closed = True
        return self._run.save_truth()

    def run(self, duration: float | None = None, stop: threading.Event | None = None) -> dict:
        """Write in real time for ``duration`` seconds (None: until ``stop``), then close."""
        if self._run.next_second == 0 and not self._run.started:
            self._config = dataclasses.replace(self._config, start_time=int(time.time()))
            self._run = self._new_run(self._config)
        stop = stop or threading.Event()
        while duration is None or self._run.next_second < duration:
            due = self._config.start_time + self._run.next_second + 1
            if stop.wait(max(0.0, due - time.time())):
                break
            self.append(1)
        return self.close()

    def __enter__(self) -> LiveSimulation:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def simulate_command(args) -> int:
    """``larpix-monitor simulate OUT.h5 --format F [--packets N] [--rate HZ --duration S]``."""
    path = Path(args.path)
    if not path.parent.is_dir():
        print(f"larpix-monitor simulate: {path}: directory {path.parent} does not exist",
              file=sys.stderr)
        return 2
    if path.is_dir():
        print(f"larpix-monitor simulate: {path}: is a directory", file=sys.stderr)
        return 2
    params = {"seed": args.seed}
    if args.rate is not None:
        params["rate"] = args.rate
    try:
        if args.rate is not None and args.packets is None:
            live = LiveSimulation(path, args.format, **params)
            print(f"appending {args.format} data to {path} at {args.rate:g} packets/s"
                  + (f" for {args.duration:g} s" if args.duration else " (Ctrl-C stops)"))
            try:
                truth = live.run(duration=args.duration)
            except KeyboardInterrupt:
                truth = live.close()
        elif args.duration is not None and args.packets is None:
            truth = simulate_file(path, args.format, seconds=int(np.ceil(args.duration)),
                                  **params)
        else:
            n = args.packets if args.packets is not None else 100_000
            truth = simulate_file(path, args.format, n_packets=n, **params)
    except (ValueError, OSError) as error:
        print(f"larpix-monitor simulate: {path}: {error}", file=sys.stderr)
        return 2
    print(f"wrote {truth['packets']} packets ({truth['rows']} rows, {args.format} format) "
          f"to {path}; ground truth in {truth_path(path)}")
    return 0
