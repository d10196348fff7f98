"""larpix-control's own writers append in another process while FileReader polls.

The writers must never fail (the DAQ is never disturbed) and the reader must
end with every row exactly once. The negative cases hold the file open the
way a careless reader would (HDF5 file locking on) and show that the same
checks then catch the writer's failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
from support.larpix import convert_raw_file

from exporter.errors import InputError
from exporter.packets import PACKET_DTYPE
from exporter.source.reader import FileReader

#: The packet logger: record() batches, its flush thread appends with to_file.
LOGGER_WRITER = r"""
import json, random, sys, threading, time
from larpix import Packet_v2, SyncPacket, TimestampPacket
from larpix.logger import HDF5Logger

path, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
failures = []
threading.excepthook = lambda hook: failures.append(repr(hook.exc_value))
rng = random.Random(batches * size)
logger = HDF5Logger(filename=path, buffer_length=10 * size)
logger.enable()
logger.flush(block=True)
print("ready", flush=True)
sys.stdin.readline()
recorded = 0
for i in range(batches):
    packets = [TimestampPacket(timestamp=1_700_000_000 + i)]
    for _ in range(size):
        p = Packet_v2(rng.randbytes(8))
        p.io_group, p.io_channel = rng.randint(1, 4), rng.randint(1, 32)
        packets.append(p)
    packets.append(SyncPacket(sync_type=b"S", clk_source=0, timestamp=i, io_group=1))
    logger.record(packets)
    recorded += len(packets)
    logger.flush(block=False)
    time.sleep(0.01)
deadline = time.monotonic() + 60
while logger._worker_queue.unfinished_tasks and not failures and time.monotonic() < deadline:
    time.sleep(0.01)
pending = logger._worker_queue.unfinished_tasks
print(json.dumps({"recorded": recorded, "failures": failures, "pending": pending}), flush=True)
sys.exit(1 if failures or pending else 0)
"""

#: The PACMAN raw writer: to_rawfile in a loop (SWMR mode), as its file worker does.
RAW_WRITER = r"""
import json, random, sys, time
from larpix import Packet_v2, SyncPacket, TriggerPacket
from larpix.format import pacman_msg_format, rawhdf5format

path, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(batches * size)
rawhdf5format.to_rawfile(path, msgs=[], msg_headers={"io_groups": []})
print("ready", flush=True)
sys.stdin.readline()
written = 0
for i in range(batches):
    msgs, groups = [], []
    for _ in range(4):
        words = []
        for _ in range(rng.randint(0, size)):
            p = Packet_v2(rng.randbytes(8))
            p.io_channel, p.receipt_timestamp = rng.randint(1, 32), rng.getrandbits(32)
            words.append(p)
        words.append(SyncPacket(sync_type=b"S", clk_source=1, timestamp=i))
        words.append(TriggerPacket(trigger_type=b"\x02", timestamp=i))
        msgs.append(pacman_msg_format.format(words, msg_type="DATA"))
        groups.append(rng.randint(1, 4))
    rawhdf5format.to_rawfile(path, msgs=msgs, msg_headers={"io_groups": groups})
    written += len(msgs)
    time.sleep(0.01)
print(json.dumps({"written": written}), flush=True)
"""

#: A reader done wrong: holds the file open with HDF5's default file locking.
LOCKING_HOLDER = r"""
import sys, h5py
f = h5py.File(sys.argv[1], "r", swmr=sys.argv[2] == "swmr")
print("holding", flush=True)
sys.stdin.readline()
f.close()
"""


def clean_env() -> dict[str, str]:
    """Our environment without the lock switch that importing rawhdf5format sets."""
    return {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}


def start(script: str, *args: object) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())
    first = proc.stdout.readline().strip()
    assert first in ("ready", "holding"), proc.communicate(timeout=30)
    return proc


def go(writer: subprocess.Popen) -> None:
    """Let a writer that reported 'ready' start appending."""
    writer.stdin.write("go\n")
    writer.stdin.flush()


def poll_until_done(writer: subprocess.Popen, reader: FileReader) -> tuple[list, int, list]:
    """Read in a loop while the writer runs; then once more after it exits."""
    chunks, polls_with_rows, errors = [], 0, []
    deadline = time.monotonic() + 300
    while True:
        if time.monotonic() > deadline:
            writer.kill()
            raise AssertionError("the writer did not finish within 300 s")
        done = writer.poll() is not None
        try:
            new = list(reader.read_new())
        except InputError as error:
            errors.append(error.reason)
            new = []
        chunks += new
        polls_with_rows += bool(new)
        if done:
            return chunks, polls_with_rows, errors
        time.sleep(0.005)


def finish(writer: subprocess.Popen) -> tuple[int, dict]:
    out, err = writer.communicate(timeout=120)
    lines = out.strip().splitlines()
    return writer.returncode, (json.loads(lines[-1]) if lines else {"stderr": err[-2000:]})


def all_packets(chunks: list) -> np.ndarray:
    return np.concatenate([c.packets for c in chunks]) if chunks else np.zeros(0, PACKET_DTYPE)


def read_while_written(script: str, path: Path, batches: int, per_batch: int, chunk_rows: int
                       ) -> tuple[FileReader, list, int, int, dict]:
    """Start a writer, poll the file while it appends; only transient errors are allowed."""
    writer = start(script, path, batches, per_batch)
    reader = FileReader(path, chunk_rows=chunk_rows)
    go(writer)
    chunks, polls_with_rows, errors = poll_until_done(writer, reader)
    code, report = finish(writer)
    assert set(errors) <= {"busy"}, errors
    return reader, chunks, polls_with_rows, code, report


def test_packet_logger_appends_undisturbed_while_we_read(tmp_path):
    path = tmp_path / "datalog.h5"
    reader, chunks, polls_with_rows, code, report = read_while_written(
        LOGGER_WRITER, path, 150, 300, chunk_rows=1000)
    assert code == 0 and report["failures"] == [] and report["pending"] == 0, report
    with h5py.File(path, "r") as f:
        final = f["packets"][:]
    assert len(final) == report["recorded"] == 150 * 302
    np.testing.assert_array_equal(all_packets(chunks), final)
    assert reader.cursor.rows == len(final) and reader.resets == 0
    assert polls_with_rows >= 3, "the reader never saw the file grow"


def test_raw_writer_appends_undisturbed_while_we_read(tmp_path):
    path = tmp_path / "raw.h5"
    reader, chunks, polls_with_rows, code, report = read_while_written(
        RAW_WRITER, path, 150, 12, chunk_rows=200)
    assert code == 0 and report.get("written") == 600, report
    assert reader.cursor.rows == 600 and reader.resets == 0
    assert sum(c.malformed for c in chunks) == 0
    np.testing.assert_array_equal(all_packets(chunks), convert_raw_file(path, tmp_path)[0])
    assert polls_with_rows >= 3, "the reader never saw the file grow"


def write_against_locking_reader(script: str, path: Path, batches: int, per_batch: int,
                                 mode: str) -> tuple[int, str, str]:
    """Run a writer while another process holds the file open with HDF5 locking on."""
    writer = start(script, path, batches, per_batch)
    holder = start(LOCKING_HOLDER, path, mode)
    go(writer)
    try:
        out, err = writer.communicate(timeout=120)
        return writer.returncode, out, err
    finally:
        holder.communicate("done\n", timeout=30)


def test_locking_reader_kills_the_packet_logger(tmp_path):
    code, out, _ = write_against_locking_reader(LOGGER_WRITER, tmp_path / "datalog.h5", 100, 50,
                                                "plain")
    report = json.loads(out.strip().splitlines()[-1])
    assert code != 0
    assert any("unable to lock file" in failure for failure in report["failures"]), report


def test_locking_swmr_reader_stops_the_raw_writer(tmp_path):
    code, _, err = write_against_locking_reader(RAW_WRITER, tmp_path / "raw.h5", 100, 5, "swmr")
    assert code != 0
    assert "unable to lock file" in err
