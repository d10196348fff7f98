"""Restart without loss: SIGKILL and SIGTERM of a real ``larpix-monitor serve``, then a
second process on the same directories. Counters restart from zero in a new process, so
the check is that the processes' counts add up to the ground truth exactly."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
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

from exporter.packets import PACKET_TYPE_NAMES
from exporter.simulate import LiveSimulation, simulate_file
from exporter.simulate.detector import SimConfig
from exporter.simulate.generate import SecondGenerator

STATE = ".larpix-monitor-state.json"


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    return data, plots


def saved_rows(plots: Path) -> dict[str, int]:
    try:
        document = json.loads((plots / STATE).read_text())
    except FileNotFoundError:
        return {}
    return {Path(f["path"]).name: f["rows"] for f in document["files"]}


def rows_read(samples: Samples) -> float:
    return sum(series(samples, "larpix_monitor_rows_read_total").values())


def added(a: Samples, b: Samples) -> Samples:
    return {key: a.get(key, 0.0) + b.get(key, 0.0) for key in a.keys() | b.keys()}


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
    counted_by_first = first.scrape()
    assert rows_read(counted_by_first) == sum(paused.values())
    first.kill()

    with MonitorProcess(data, plots, "--no-plots") as second:
        for _ in range(after):
            for sim in live.values():
                sim.append(1)
            time.sleep(0.05)
        truths = [sim.close() for sim in live.values()]
        total = sum(t["rows"] for t in truths)
        wait_for(lambda: rows_read(second.scrape()) == total - sum(paused.values()), 15,
                 "the second process to read the rest")
        counted_by_second = second.scrape()
    assert all_mismatches(added(counted_by_first, counted_by_second), truths,
                          [*COUNTERS, *HISTOGRAMS]) == []
    # Gauges describe the end of the files: the second process alone has seen it.
    assert all_mismatches(counted_by_second, truths, GAUGES) == []
    assert f"run-packet.h5: resuming after row {paused['packet']}" in second.log_text()


def expected_counts(packets: np.ndarray) -> dict[str, dict[tuple, int]]:
    """Counter values of a slice of a 2.4 packet file, computed here with numpy."""
    def tally(*columns: np.ndarray) -> dict[tuple, int]:
        keys = np.zeros(len(columns[0]), np.int64)
        for column in columns:
            keys = keys << 8 | column.astype(np.int64)
        unique, counts = np.unique(keys, return_counts=True)
        return {tuple(str(k >> 8 * (len(columns) - 1 - i) & 255) for i in range(len(columns))):
                n for k, n in zip(unique.tolist(), counts.tolist(), strict=True)}

    g, ch, kind = packets["io_group"], packets["io_channel"], packets["packet_type"]
    data = kind == 0
    bad = (kind <= 3) & (packets["valid_parity"] == 0)
    return {
        "larpix_packets_total": tally(g, ch, kind),
        "larpix_data_packets_total": tally(g[data], ch[data], packets["chip_id"][data]),
        "larpix_parity_errors_total": tally(g[bad], ch[bad]),
        "adc": tally(g[data], packets["dataword"][data]),
    }


def scraped_counts(samples: Samples) -> dict[str, dict[tuple, int]]:
    def keyed(name: str, labels: tuple[str, ...]) -> dict[tuple, int]:
        return {tuple(dict(k)[label] for label in labels): int(v)
                for k, v in series(samples, name).items() if v}

    types = {name: str(code) for code, name in enumerate(PACKET_TYPE_NAMES)}
    packets = {(gr, ch, types[t]): v for (gr, ch, t), v in keyed(
        "larpix_packets_total", ("io_group", "io_channel", "packet_type")).items()}
    return {
        "larpix_packets_total": packets,
        "larpix_data_packets_total": keyed("larpix_data_packets_total",
                                           ("io_group", "io_channel", "chip_id")),
        "larpix_parity_errors_total": keyed("larpix_parity_errors_total",
                                            ("io_group", "io_channel")),
    }


def adc_bucket_mismatches(samples: Samples, adc: dict[tuple, int]) -> list[str]:
    wrong = []
    for labels, got in series(samples, "larpix_adc_bucket").items():
        group, le = dict(labels)["io_group"], float(dict(labels)["le"])
        want = sum(n for (g, v), n in adc.items() if g == group and int(v) <= le)
        if want != got:
            wrong.append(f"io_group={group} le={le}: expected {want}, got {got}")
    return wrong


def test_sigkill_in_the_middle_of_a_large_file_resumes_at_the_saved_row(dirs) -> None:
    data, plots = dirs
    path = data / "large.h5"
    truth = simulate_file(path, "packet", n_packets=2_000_000, seed=31, io_groups=(1, 2))
    first = MonitorProcess(data, plots, "--no-plots").start(wait=False)
    consumed = wait_for(lambda: saved_rows(plots).get("large.h5"), 60,
                        "the first saved step", interval=0.005)
    first.kill()
    assert 0 < consumed < truth["rows"], "the file was read before it could be interrupted"
    assert saved_rows(plots)["large.h5"] == consumed  # nothing saved after the kill

    with MonitorProcess(data, plots, "--no-plots") as second:
        wait_for(lambda: rows_read(second.scrape()) == truth["rows"] - consumed, 30,
                 "the rest of the file")
        time.sleep(1.0)  # nothing more arrives later
        samples = second.scrape()
    assert rows_read(samples) == truth["rows"] - consumed
    with h5py.File(path, "r", locking=False) as f:
        rest = f["packets"][consumed:]
    expected = expected_counts(rest)
    assert scraped_counts(samples) == {k: v for k, v in expected.items() if k != "adc"}
    assert adc_bucket_mismatches(samples, expected["adc"]) == []


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_saves_the_state_and_exits_cleanly(dirs, stop_signal) -> None:
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
    assert "stopped; state saved" in first.log_text()
    assert "Traceback" not in first.log_text()

    with MonitorProcess(data, plots, "--no-plots") as second:
        time.sleep(1.0)
        assert rows_read(second.scrape()) == 0  # nothing is read twice
        live.append(3)
        truth = live.close()
        wait_for(lambda: rows_read(second.scrape()) == truth["rows"] - written, 10,
                 "the new seconds only")


def test_a_state_file_that_cannot_be_written_is_reported_once(dirs) -> None:
    data, plots = dirs
    (plots / STATE).mkdir(parents=True)  # a directory where the state file should go
    live = LiveSimulation(data / "run.h5", "packet", rate=1000, io_groups=(2,), seed=51)
    with MonitorProcess(data, plots, "--no-plots") as monitor:
        for _ in range(4):
            live.append(1)
            time.sleep(0.3)
        truth = live.close()
        wait_for(lambda: rows_read(monitor.scrape()) == truth["rows"], 10, "every row")
        log = monitor.log_text()
    assert log.count("cannot save the state") == 1
    assert "cannot read the saved state" in log
    assert "Traceback" not in log
