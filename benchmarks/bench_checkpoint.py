"""Checkpoint cost per ingest round at 2x2 scale.

    .venv/bin/python benchmarks/bench_checkpoint.py [--rounds 20]

The detector seen: 8 io_groups x 8 tiles (32 io_channels) x 100 chips x 64
channels, every channel with data. Each round counts one 2**18-row chunk (the
reader's step) and then commits: the parts' arrays gathered, one ``.npz``
written with the cursors and fsynced, the snapshot published. Reported: the
checkpoint's bytes, the commit's time, and as the baseline the time of
counting the chunk itself (same run, same machine), so the ratio says what
checkpointing adds to a round. Restore time (start-up) is reported too.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from exporter.checkpointer import Checkpointer
from exporter.metrics import DetectorMetrics, MonitorHealth
from exporter.packets import PACKET_DTYPE, TIMESTAMP, Chunk
from exporter.source.checkpoint import CheckpointStore
from exporter.source.cursor import Cursor
from exporter.watched import CHUNK_ROWS  # the service's reader step

IO_GROUPS, TILES, CHIPS, CHANNELS = 8, 8, 100, 64
IO_CHANNELS_PER_TILE = 4


def chunk(rng: np.random.Generator, second: int) -> Chunk:
    """Data packets over every (io_group, tile, chip, channel), one timestamp packet per
    1,000 rows."""
    rows = np.zeros(CHUNK_ROWS, PACKET_DTYPE)
    rows["io_group"] = rng.integers(1, IO_GROUPS + 1, CHUNK_ROWS)
    tile = rng.integers(0, TILES, CHUNK_ROWS)
    chip = rng.integers(0, CHIPS, CHUNK_ROWS)  # a tile's 100 chips over its 4 io_channels
    rows["io_channel"] = tile * IO_CHANNELS_PER_TILE + chip % IO_CHANNELS_PER_TILE + 1
    rows["chip_id"] = chip + 11
    rows["channel_id"] = rng.integers(0, CHANNELS, CHUNK_ROWS)
    rows["dataword"] = rng.integers(0, 256, CHUNK_ROWS)
    rows["valid_parity"] = rng.random(CHUNK_ROWS) > 1e-3
    stamps = np.arange(0, CHUNK_ROWS, 1000)
    rows["packet_type"][stamps] = TIMESTAMP
    rows["io_channel"][stamps] = 0
    rows["timestamp"][stamps] = 1_700_000_000 + second
    return Chunk(rows, CHUNK_ROWS, rows.nbytes, "packet", False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    chunks = [chunk(rng, second) for second in range(args.rounds)]
    detector, health = DetectorMetrics(gated=True), MonitorHealth(gated=True)
    cursors = [Cursor(f"/data/run-{i}.h5", i, 1 << 30, 1 << 20, "packet") for i in range(200)]
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as work:
        store = CheckpointStore(Path(work) / "checkpoint.npz")
        checkpointer = Checkpointer(store, {"detector": detector, "health": health})
        count_ms, commit_ms, sizes = [], [], []
        for n, data in enumerate(chunks):
            started = time.perf_counter()
            detector.update(data, "/data/run-0.h5")
            health.count_rows("packet", data.rows, data.nbytes)
            count_ms.append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            checkpointer.commit(cursors, (n,))
            commit_ms.append((time.perf_counter() - started) * 1e3)
            sizes.append(store.last_size)
        started = time.perf_counter()
        fresh = {"detector": DetectorMetrics(gated=True), "health": MonitorHealth(gated=True)}
        Checkpointer(store, fresh).restore()
        restore_ms = (time.perf_counter() - started) * 1e3
    chips = len(detector.snapshot().chip_id) - 1
    print(f"machine: {platform.machine()}, {platform.processor() or '?'}, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"chips seen: {chips}; rounds: {args.rounds} of {CHUNK_ROWS} rows; 200 cursors")
    later = slice(len(chunks) // 2, None)  # once every chip and channel has been seen
    print(f"checkpoint size: {statistics.median(sizes[later]) / 1e6:.2f} MB")
    print(f"commit per round: median {statistics.median(commit_ms[later]):.1f} ms, "
          f"max {max(commit_ms[later]):.1f} ms")
    print(f"counting the round's chunk (baseline): median "
          f"{statistics.median(count_ms[later]):.1f} ms")
    print(f"ratio commit / counting: "
          f"{statistics.median(commit_ms[later]) / statistics.median(count_ms[later]):.2f}")
    print(f"restore at start-up: {restore_ms:.0f} ms")


if __name__ == "__main__":
    main()
