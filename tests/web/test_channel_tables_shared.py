"""More files written at once than the monitor keeps per-channel tables for (two): a table
served always covers its whole file. The third file waits for a table instead of taking one
whose file is still being written; once a file has had no rows for a while, the waiting
file gets its table and the rows it had so far are read again into it. A real ``larpix-monitor
serve``, live writers, every served table against a numpy recount of its file."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
from support.recount import channel_columns
from support.service import MonitorProcess, series
from support.waiting import wait_for

from exporter.metrics.channels import MAX_FILES
from exporter.simulate import LiveSimulation

EXACT = ("count", "parity_errors", "fifo_half", "fifo_full")
CLOSE = ("adc_mean", "adc_rms")


def recount(path: Path) -> dict[tuple[int, ...], dict]:
    with h5py.File(path, "r", locking=False) as f:
        return channel_columns(f["packets"][:])


def served(monitor: MonitorProcess, stem: str) -> tuple[int, dict]:
    """Status of ``/api/channels`` for the file, and its rows by channel (200) or the reason."""
    response = monitor.get(f"/api/channels?file={stem}&limit=0")
    if response.status_code != 200:
        return response.status_code, response.json()
    return 200, {(r["io_group"], r["io_channel"], r["chip_id"], r["channel_id"]): r
                 for r in response.json()["rows"]}


def equal(rows: dict, want: dict) -> bool:
    return rows.keys() == want.keys() and all(
        all(rows[k][c] == want[k][c] for c in EXACT)
        and all(rows[k][c] == pytest.approx(want[k][c], rel=1e-9, abs=1e-9) for c in CLOSE)
        for k in want)


def test_a_third_live_file_waits_for_a_table_and_gets_all_its_rows(tmp_path: Path) -> None:
    assert MAX_FILES == 2
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    first = LiveSimulation(data / "first.h5", "packet", rate=3000.0, io_groups=(1,), seed=61)
    later = [LiveSimulation(data / f"{name}.h5", "packet", rate=3000.0, io_groups=(group,),
                            seed=60 + group) for name, group in (("second", 2), ("third", 3))]
    everyone = [first, *later]

    def rows_written() -> int:
        return sum(sim.truth["rows"] for sim in everyone)

    # files are retired only after a minute unchanged: a table is given up for want of rows
    with MonitorProcess(data, plots, "--no-plots", "--flush_interval", "60") as monitor:
        def catch_up(what: str) -> None:
            wait_for(lambda: sum(series(monitor.scrape(), "larpix_monitor_rows_read_total")
                                 .values()) == rows_written(), 30, what, interval=0.05)

        first.append(1)
        catch_up("the first file's first second")
        for second in range(4):  # all three written and read in the same rounds
            for sim in everyone:
                sim.append(1)
            catch_up(f"second {second} of every file")
        tables = {sim.path.stem: served(monitor, sim.path.stem)[0] for sim in everyone}
        (waiting,) = [stem for stem, status in tables.items() if status == 404]
        assert tables["first"] == 200
        status, reason = served(monitor, waiting)
        assert "waits for a per-channel table" in reason["detail"]

        first.close()  # no more rows: after 10 s (IDLE_SECONDS) its table is free
        refilled = f"{waiting}.h5: a per-channel table is free; counting rows 0-"
        while refilled not in monitor.log_text():
            for sim in later:
                sim.append(1)
            catch_up("the two files still written")
        for sim in later:
            sim.append(2)
            sim.close()
        catch_up("every row")
        want = {sim.path.stem: recount(sim.path) for sim in everyone}
        wait_for(lambda: all(equal(served(monitor, sim.path.stem)[1], want[sim.path.stem])
                             for sim in later), 30, "the tables of the two later files")
        status, reason = served(monitor, "first")  # it gave its table up
        samples = monitor.scrape()
        log = monitor.log_text()

    assert status == 404 and "waits for a per-channel table" in reason["detail"]
    assert f"{waiting}.h5: replay done" in log
    assert "Traceback" not in log
    data_packets = sum(series(samples, "larpix_data_packets_total").values())
    assert data_packets == sum(sum(row["count"] for row in table.values())
                               for table in want.values())
