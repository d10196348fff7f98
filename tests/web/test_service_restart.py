"""Restart without loss: SIGKILL and SIGTERM of a real ``larpix-monitor serve``, then a
second process on the same directories. Counters continue across restarts (DESIGN.md), so
the second process starts at no less than the first one's last scrape and ends at exactly
the ground truth."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import h5py
import pytest
from support.recount import adc_bucket_mismatches, expected_counts, scraped_counts
from support.service import (
    COUNTERS,
    GAUGES,
    HISTOGRAMS,
    MonitorProcess,
    Samples,
    all_mismatches,
    series,
    value,
)
from support.waiting import wait_for

from exporter.simulate import LiveSimulation, simulate_file
from exporter.simulate.detector import SimConfig
from exporter.simulate.generate import SecondGenerator
from exporter.source.checkpoint import CHECKPOINT_FILE_NAME, CheckpointStore

STATE = CHECKPOINT_FILE_NAME


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    return data, plots


def saved_rows(plots: Path) -> dict[str, int]:
    """Rows of each file the checkpoint on disk covers (read as a restart reads it)."""
    if not (plots / STATE).is_file():
        return {}
    return {Path(path).name: cursor.rows
            for path, cursor in CheckpointStore(plots / STATE).load().cursors.items()}


def rows_read(samples: Samples) -> float:
    return sum(series(samples, "larpix_monitor_rows_read_total").values())


def decreased(before: Samples, after: Samples, names: list[str]) -> list[str]:
    """Counter series of ``names`` that ``after`` shows lower than ``before`` (or not at all)."""
    return [f"{key}: {v} -> {after.get(key)}" for key, v in before.items()
            if key[0] in names and not after.get(key, -1.0) >= v]


COUNTER_SAMPLES = [*COUNTERS, "larpix_monitor_rows_read_total", "larpix_monitor_bytes_read_total",
                   *(f"{h}_bucket" for h in HISTOGRAMS), *(f"{h}_count" for h in HISTOGRAMS)]


def test_sigkill_then_restart_counts_every_row_exactly_once(dirs) -> None:
    data, plots = dirs
    before, after = 8, 12
    configs = {"packet": dict(rate=2000, io_groups=(1, 2), seed=21),
               "raw": dict(rate=2000, io_groups=(3, 4), seed=22)}
    # A second is counted as a sync gap once a later one is seen; the last second
    # before the restart is seen by neither process, so it must have its syncs.
    for params in configs.values():
        generator = SecondGenerator(SimConfig(**params))
        assert all(generator.has_sync(g, before - 1) for g in params["io_groups"])
    live = {fmt: LiveSimulation(data / f"run-{fmt}.h5", fmt, **params)
            for fmt, params in configs.items()}

    first = MonitorProcess(data, plots, "--no-plots").start()
    for sim in live.values():
        sim.append(before)
    paused = {fmt: sim.truth["rows"] for fmt, sim in live.items()}
    wait_for(lambda: saved_rows(plots) == {f"run-{fmt}.h5": n for fmt, n in paused.items()},
             15, "the first process to save everything written so far")
    # published just after the checkpoint is on disk
    counted_by_first = wait_for(lambda: (s := first.scrape()) and rows_read(s) == sum(
        paused.values()) and s, 15, "the first process to publish what it saved")
    first.kill()

    with MonitorProcess(data, plots, "--no-plots") as second:
        resumed = second.scrape()
        assert decreased(counted_by_first, resumed, COUNTER_SAMPLES) == []
        for _ in range(after):
            for sim in live.values():
                sim.append(1)
        truths = [sim.close() for sim in live.values()]
        total = sum(t["rows"] for t in truths)
        wait_for(lambda: rows_read(second.scrape()) == total, 15,
                 "the second process to read the rest")
        counted_by_second = second.scrape()
    assert all_mismatches(counted_by_second, truths, [*COUNTERS, *HISTOGRAMS, *GAUGES]) == []
    assert f"run-packet.h5: resuming after row {paused['packet']}" in second.log_text()


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM])
def test_stop_in_the_middle_of_a_large_file_counts_every_row_once(dirs, stop_signal) -> None:
    """A stop while a big file is being read: the next process continues the counters
    from the checkpoint and reads on from exactly the row it covers."""
    data, plots = dirs
    path = data / "large.h5"
    truth = simulate_file(path, "packet", n_packets=6_000_000, seed=31, io_groups=(1, 2))
    first = MonitorProcess(data, plots, "--no-plots").start()
    last = wait_for(lambda: (lambda s: s if 0 < rows_read(s) else None)(first.scrape()), 60,
                    "the first counted rows", interval=0.005)
    first.stop(stop_signal)
    consumed = saved_rows(plots)["large.h5"]
    assert rows_read(last) <= consumed < truth["rows"], "read before it could be interrupted"

    with MonitorProcess(data, plots, "--no-plots") as second:
        resumed = second.scrape()
        assert rows_read(resumed) >= consumed  # the checkpoint's counts are published at start
        assert decreased(last, resumed, COUNTER_SAMPLES) == []
        wait_for(lambda: rows_read(second.scrape()) == truth["rows"], 60, "the rest of the file")
        samples = second.scrape()
    assert f"large.h5: resuming after row {consumed}" in second.log_text()
    with h5py.File(path, "r", locking=False) as f:
        every_row = f["packets"][:]
    expected = expected_counts(every_row)
    assert scraped_counts(samples) == {k: v for k, v in expected.items() if k != "adc"}
    assert adc_bucket_mismatches(samples, expected["adc"]) == []


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_checkpoints_and_exits_cleanly(dirs, stop_signal) -> None:
    data, plots = dirs
    live = LiveSimulation(data / "run.h5", "raw", rate=2000, io_groups=(5,), seed=41)
    first = MonitorProcess(data, plots, "--no-plots").start()
    live.append(4)
    written = live.truth["rows"]
    wait_for(lambda: value(first.scrape(), "larpix_monitor_rows_read_total", format="raw")
             == written, 10, "the first seconds")
    started = time.monotonic()
    assert first.stop(stop_signal) == 0
    assert time.monotonic() - started < 10
    assert saved_rows(plots) == {"run.h5": written}
    assert "stopped; checkpoint written" in first.log_text()
    assert "Traceback" not in first.log_text()

    with MonitorProcess(data, plots, "--no-plots") as second:
        assert rows_read(second.scrape()) == written  # continued, and nothing read twice
        live.append(3)
        truth = live.close()
        wait_for(lambda: rows_read(second.scrape()) == truth["rows"], 10, "the new seconds")
        assert all_mismatches(second.scrape(), [truth], [*COUNTERS, *HISTOGRAMS]) == []


def test_a_checkpoint_that_cannot_be_written_is_reported_once(dirs) -> None:
    data, plots = dirs
    (plots / STATE).mkdir(parents=True)  # a directory where the checkpoint should go
    live = LiveSimulation(data / "run.h5", "packet", rate=1000, io_groups=(2,), seed=51)
    with MonitorProcess(data, plots, "--no-plots") as monitor:
        for _ in range(4):
            live.append(1)
        truth = live.close()
        wait_for(lambda: rows_read(monitor.scrape()) == truth["rows"], 10, "every row")
        log = monitor.log_text()
    assert log.count("cannot write the checkpoint") == 1
    assert "cannot read the checkpoint" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_unreadable_checkpoint_counts_from_zero_in_one_line(dirs, damage) -> None:
    data, plots = dirs
    truth = simulate_file(data / "run.h5", "raw", n_packets=20_000, seed=61)
    with MonitorProcess(data, plots, "--no-plots") as first:
        wait_for(lambda: rows_read(first.scrape()) == truth["rows"], 20, "every row")
    content = (plots / STATE).read_bytes()
    (plots / STATE).write_bytes(b"garbage" if damage == "garbage" else content[:len(content) // 2])
    with MonitorProcess(data, plots, "--no-plots", "--read-all") as second:
        wait_for(lambda: rows_read(second.scrape()) == truth["rows"], 20, "every row again")
        log = second.log_text()
    assert log.count("counting from zero") == 1
    assert "Traceback" not in log
