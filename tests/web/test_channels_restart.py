"""The per-channel table after a restart still covers the whole file: a resumed file's rows
counted before the stop are replayed into its table (never into the counters, which continue
from the checkpoint). Real ``larpix-monitor serve`` processes, a live writer, real signals;
every column against a numpy recount of the whole file."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import h5py
import pytest
from support.larpix import convert_raw_file
from support.recount import channel_columns
from support.service import (
    COUNTERS,
    HISTOGRAMS,
    MonitorProcess,
    Samples,
    all_mismatches,
    series,
)
from support.waiting import wait_for

from exporter.simulate import LiveSimulation, simulate_file

COLUMNS = ("count", "adc_mean", "adc_rms", "parity_errors", "fifo_half", "fifo_full")
EXACT = ("count", "parity_errors", "fifo_half", "fifo_full")


def counters(samples: Samples) -> Samples:
    return {key: v for key, v in samples.items() if key[0] in COUNTERS}


def rows_read(monitor: MonitorProcess) -> float:
    return sum(series(monitor.scrape(), "larpix_monitor_rows_read_total").values())


def every_row(path: Path, fmt: str, workdir: Path):
    if fmt == "packet":
        with h5py.File(path, "r", locking=False) as f:
            return f["packets"][:]
    return convert_raw_file(path, workdir)[0]  # larpix-control's own conversion


def served_table(monitor: MonitorProcess, stem: str) -> dict[tuple[int, ...], dict]:
    response = monitor.get(f"/api/channels?file={stem}&limit=0")
    if response.status_code != 200:
        return {}
    return {(r["io_group"], r["io_channel"], r["chip_id"], r["channel_id"]):
            {name: r[name] for name in COLUMNS} for r in response.json()["rows"]}


def differences(served: dict, want: dict) -> list[str]:
    wrong = [f"{key}: missing" for key in want.keys() - served.keys()]
    wrong += [f"{key}: not in the file" for key in served.keys() - want.keys()]
    for key in served.keys() & want.keys():
        for name in COLUMNS:
            got, expected = served[key][name], want[key][name]
            if got != (expected if name in EXACT else pytest.approx(expected, rel=1e-9,
                                                                     abs=1e-9)):
                wrong.append(f"{key} {name}: {got} != {expected}")
    return wrong


@pytest.mark.parametrize(("fmt", "stop_signal", "plots", "written_lately"), [
    ("packet", signal.SIGKILL, ("--no-plots",), False),
    ("raw", signal.SIGTERM, ("--plots", "AdcSpectrum"), True),
], ids=["packet-kill-idle", "raw-term-live"])
def test_the_table_covers_the_whole_file_after_a_restart(tmp_path, fmt, stop_signal, plots,
                                                         written_lately):
    data, plots_dir = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    # A finished file: read by the first process, never replayed by the second.
    old = simulate_file(data / "old.h5", fmt, n_packets=20_000, seed=81, io_groups=(3,))
    name, stem = f"run-{fmt}.h5", f"run-{fmt}"
    live = LiveSimulation(data / name, fmt, rate=20_000, io_groups=(1, 2), seed=82)
    args = ("--read-all", "--flush_interval", "60", *plots)

    first = MonitorProcess(data, plots_dir, *args).start()
    live.append(5)
    written = live.truth["rows"]
    wait_for(lambda: rows_read(first) == written + old["rows"], 30,
             "the first process to count the first seconds")
    counted_by_first = first.scrape()
    first.stop(stop_signal)

    # The old file is idle; the run file was written just now (replayed at start), or is
    # idle too until new rows come (replayed then).
    an_hour_ago = time.time() - 3600
    os.utime(data / "old.h5", (an_hour_ago, an_hour_ago))
    if written_lately:  # however long the first process took to count the first seconds
        os.utime(data / name)
    else:
        os.utime(data / name, (an_hour_ago, an_hour_ago))
    with MonitorProcess(data, plots_dir, *args) as second:
        if written_lately:
            wait_for(lambda: f"{name}: replay done" in second.log_text(), 30, "the replay")
        else:
            assert f"{name}: replaying" not in second.log_text()
        # the counters are the checkpoint's: the replay never counts into them
        assert counters(second.scrape()) == counters(counted_by_first)
        for _ in range(3):
            live.append(1)
        truth = live.close()
        wait_for(lambda: rows_read(second) == truth["rows"] + old["rows"], 30, "every row")
        want = channel_columns(every_row(data / name, fmt, tmp_path))
        wait_for(lambda: differences(served_table(second, stem), want) == [], 30,
                 "the table of the whole file", interval=0.5)
        samples = second.scrape()
        log = second.log_text()
    assert f"{name}: replaying rows 0-{written} for its channel table" in log
    assert f"{name}: replay done" in log
    assert "old.h5: replaying" not in log
    assert "Traceback" not in log
    assert all_mismatches(samples, [truth, old], [*COUNTERS, *HISTOGRAMS]) == []
