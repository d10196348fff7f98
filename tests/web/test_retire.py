"""A finished file is retired after ``--flush_interval`` (it leaves the gallery, its
data-time carry is dropped) and, should it grow again, it is read on from exactly where it
stopped: retiring never loses or repeats a row."""

from __future__ import annotations

from pathlib import Path

from support.service import MonitorProcess, all_mismatches, value
from support.waiting import wait_for

from exporter.simulate import LiveSimulation


def rows_read(monitor: MonitorProcess) -> float:
    return value(monitor.scrape(), "larpix_monitor_rows_read_total", format="raw")


def test_a_retired_file_that_grows_again_is_read_on_exactly_once(tmp_path: Path) -> None:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    with MonitorProcess(data, plots, "--no-plots", "--flush_interval", "1") as monitor:
        live = LiveSimulation(data / "run.h5", "raw", rate=1500, io_groups=(3,), seed=81)
        live.append(2)
        first = live.truth["rows"]
        wait_for(lambda: rows_read(monitor) == first, 20, "the first seconds")
        assert 'id="file-run"' in monitor.get("/").text
        wait_for(lambda: 'id="file-run"' not in monitor.get("/").text, 30,
                 "the finished file to leave the gallery")

        live.append(2)  # the run goes on after all
        truth = live.close()
        wait_for(lambda: rows_read(monitor) == truth["rows"], 20, "the new seconds")
        assert 'id="file-run"' in monitor.get("/").text
        samples = monitor.scrape()
    assert all_mismatches(samples, [truth]) == []
    assert "run.h5: resuming" not in monitor.log_text()
    assert "Traceback" not in monitor.log_text()
