"""The ingest loop in-process: the hook that runs after rows were counted.

The service hands it the collector's ``prepare`` (exposition built ahead of the
next scrape); the end-to-end behaviour is in test_service.py.
"""

from __future__ import annotations

import os
import threading
import time

from exporter.config import MonitorConfig
from exporter.ingest import Ingest
from exporter.metrics import DetectorMetrics, MonitorHealth
from exporter.simulate import simulate_file
from exporter.source.checkpoint import CheckpointStore
from exporter.source.watcher import DirectoryWatcher


def wait_for(condition, timeout: float = 20.0) -> None:
    """Poll with a deadline: the condition, not a fixed pause, decides."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_on_counted_runs_after_rounds_that_counted_rows(tmp_path):
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    plots.mkdir()
    detector = DetectorMetrics()
    calls: list[tuple[int, str]] = []
    ingest = Ingest(MonitorConfig(data, plots, read_all=True), DirectoryWatcher(data, "*.h5"),
                    detector, MonitorHealth(), CheckpointStore.in_plot_dir(plots),
                    on_counted=lambda: calls.append(
                        (detector.version, threading.current_thread().name)))
    simulate_file(data / "first.h5", "packet", n_packets=5_000, seed=1)
    ingest.start()
    try:
        wait_for(lambda: calls)
        after_first = list(calls)
        rounds = ingest.rounds
        wait_for(lambda: ingest.rounds >= rounds + 3)  # three idle rounds: no call
        assert calls == after_first
        simulate_file(data / "second.h5", "raw", n_packets=5_000, seed=2)
        wait_for(lambda: len(calls) > len(after_first))
        wait_for(lambda: detector.snapshot().packets.sum() == 10_000)
        rounds = ingest.rounds
        wait_for(lambda: ingest.rounds >= rounds + 2)
    finally:
        ingest.stop()
    assert calls[-1][0] == detector.version  # the last call saw every row counted
    threads = {name for _, name in calls}
    assert len(threads) == 1 and "MainThread" not in threads  # the ingest thread's own


def test_ingest_lag_is_the_wait_of_uncounted_rows_not_the_age_of_a_file(tmp_path):
    """Catching up on a day-old file is no lag once it is counted, and an idle monitor
    reports 0, not the time since the last write."""
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    plots.mkdir()
    old = data / "yesterday.h5"
    simulate_file(old, "packet", n_packets=5_000, seed=3)
    day_ago = time.time() - 86_400
    os.utime(old, (day_ago, day_ago))
    health = MonitorHealth()
    ingest = Ingest(MonitorConfig(data, plots, read_all=True), DirectoryWatcher(data, "*.h5"),
                    DetectorMetrics(), health, CheckpointStore.in_plot_dir(plots))
    ingest.start()
    try:
        wait_for(lambda: health.snapshot().rows.get("packet") == 5_000)
        rounds = ingest.rounds
        wait_for(lambda: ingest.rounds >= rounds + 2)
        assert health.snapshot().ingest_lag == 0.0
    finally:
        ingest.stop()
