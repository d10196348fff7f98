"""A backlog does not hold back the run in progress: with ten large old files still being
read (``--read-all``), each new second of the live file is counted before the backlog is
done, because every round serves the live file first and reads at most a bounded share of
each old one."""

from __future__ import annotations

import shutil
from pathlib import Path

from support.service import MonitorProcess, Samples, series, value
from support.waiting import wait_for

from exporter.simulate import LiveSimulation, simulate_file

BACKLOG_FILES = 10
LIVE_SECONDS = 2  # the backlog (30 M rows) takes only a few seconds to read


def packets_of_group(samples: Samples, io_group: str) -> float:
    return sum(n for labels, n in series(samples, "larpix_packets_total").items()
               if dict(labels)["io_group"] == io_group)


def truth_packets_of_group(truth: dict, io_group: str) -> float:
    return sum(s["value"] for s in truth["metrics"]["larpix_packets_total"]
               if s["labels"]["io_group"] == io_group)


def test_a_live_file_is_counted_while_ten_old_files_wait(tmp_path: Path) -> None:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    template = tmp_path / "old.h5"
    old = simulate_file(template, "packet", n_packets=3_000_000, seed=61, io_groups=(1, 2))
    for n in range(BACKLOG_FILES):
        shutil.copy(template, data / f"old-{n}.h5")
    backlog = BACKLOG_FILES * old["rows"]
    live = LiveSimulation(data / "live.h5", "packet", rate=2000, io_groups=(5,), seed=62)
    live.append(1)

    backlog_left = []
    with MonitorProcess(data, plots, "--no-plots", "--read-all") as monitor:
        for _ in range(LIVE_SECONDS):
            expected = truth_packets_of_group(live.truth, "5")
            samples = wait_for(lambda n=expected: (s := monitor.scrape()) and
                               packets_of_group(s, "5") == n and s, 60, "the live second",
                               interval=0.01)
            backlog_left.append(backlog - value(samples, "larpix_monitor_rows_read_total",
                                                format="packet") + live.truth["rows"])
            live.append(1)
        truth = live.close()
        wait_for(lambda: value(monitor.scrape(), "larpix_monitor_rows_read_total",
                               format="packet") == backlog + truth["rows"], 120, "everything")
    # every live second was counted while old rows still waited
    assert all(left > 0 for left in backlog_left), backlog_left
