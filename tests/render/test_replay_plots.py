"""Plots continue after a restart: a resumed file's figures cover the whole file again.

A real ``larpix-monitor serve`` is stopped (SIGKILL or SIGTERM) while a live file is being
written, a second process continues, and the writer goes on. A plugin in ``--plugin-dir``
writes what it accumulated to a side file: rows seen, their ADC sum and an order-sensitive
sum (position seen x dataword), compared with a numpy recount of the whole file. The
built-in figures are compared byte for byte with those of an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix import Packet_v2
from support.larpix import raw_file_packets
from support.service import MonitorProcess, series
from support.waiting import wait_for

from exporter.simulate import LiveSimulation

PLUGIN = '''
import json
import os

import numpy as np
from matplotlib.figure import Figure


class RowTotals:
    """What this plot was given of its file, written to a side file after every call."""

    def __init__(self):
        self.rows = self.adc = self.weighted = 0

    def __call__(self, filename, fh, fig):
        packets = fh["packets"]
        adc = np.where(packets["packet_type"] == 0, packets["dataword"], 0).astype(np.int64)
        seen = np.arange(self.rows, self.rows + len(packets), dtype=np.int64)
        self.rows += len(packets)
        self.adc += int(adc.sum())
        self.weighted += int((seen * adc).sum())
        totals = {"rows": self.rows, "adc": self.adc, "weighted": self.weighted}
        side = os.path.join(os.environ["ROW_TOTALS_DIR"], os.path.basename(filename) + ".json")
        with open(side + ".tmp", "w") as out:
            json.dump(totals, out)
        os.replace(side + ".tmp", side)
        fig = fig or Figure(figsize=(3, 1), dpi=50)
        fig.clear()
        fig.text(0.02, 0.5, " ".join(str(v) for v in totals.values()), fontsize=6)
        return fig
'''

BUILT_IN = ["AdcSpectrum", "PacketRate", "HotPixels", "TimestampHist", "ChipMeanAdc"]


def recount(path: Path, fmt: str) -> dict[str, int]:
    """The plugin's totals for the whole file, in file order, computed here with numpy."""
    if fmt == "packet":
        with h5py.File(path, "r", locking=False) as f:
            packets = f["packets"][:]
        adc = np.where(packets["packet_type"] == 0, packets["dataword"], 0).astype(np.int64)
    else:  # larpix-control's own parsing (its to_file would only add half a minute)
        objects = raw_file_packets(path)  # timestamp, sync ... packets are other classes
        adc = np.fromiter((p.dataword if isinstance(p, Packet_v2) and p.packet_type == 0
                           else 0 for p in objects), np.int64, len(objects))
    return {"rows": len(adc), "adc": int(adc.sum()),
            "weighted": int((np.arange(len(adc), dtype=np.int64) * adc).sum())}


def rows_read(monitor: MonitorProcess) -> float:
    return sum(series(monitor.scrape(), "larpix_monitor_rows_read_total").values())


def side_totals(side_dir: Path, name: str) -> dict | None:
    path = side_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def figures(plots: Path, stem: str) -> dict[str, bytes]:
    return {p.stem.removeprefix(f"{stem}_"): p.read_bytes()
            for p in sorted((plots / f"{stem}_dqm").glob("*.png"))}


@pytest.mark.parametrize(("fmt", "stop_signal"), [("packet", signal.SIGKILL),
                                                  ("raw", signal.SIGTERM)], ids=["kill", "term"])
def test_figures_after_a_restart_equal_those_of_an_uninterrupted_run(
        tmp_path: Path, monkeypatch, fmt: str, stop_signal: int) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "row_totals.py").write_text(PLUGIN)
    data, plots, side = tmp_path / "data", tmp_path / "plots", tmp_path / "side"
    for folder in (data, side):
        folder.mkdir()
    monkeypatch.setenv("ROW_TOTALS_DIR", str(side))
    args = ("--plugin-dir", str(plugins), "--plots", *BUILT_IN, "RowTotals")
    name = f"run-{fmt}.h5"
    # more packets than one replay share, so that the replay spans several rounds
    live = LiveSimulation(data / name, fmt, rate=100_000, io_groups=(1, 2), seed=71)

    first = MonitorProcess(data, plots, *args).start()
    live.append(8)
    written = live.truth["rows"]
    wait_for(lambda: rows_read(first) == written and (side_totals(side, name) or {}).get(
        "rows", 0) > 0, 30, "the first process to count and plot the first seconds")
    first.stop(stop_signal)
    before_restart = figures(plots, f"run-{fmt}")
    assert set(before_restart) == {*BUILT_IN, "RowTotals"}

    with MonitorProcess(data, plots, *args) as second:
        live.append(2)  # written while the second process replays
        for _ in range(4):
            live.append(1)
        truth = live.close()
        wait_for(lambda: rows_read(second) == truth["rows"], 30, "every row")
        want = recount(data / name, fmt)
        wait_for(lambda: side_totals(side, name) == want, 60,
                 "the plugin to have been given the whole file, once, in order")
        log = second.log_text()
    assert f"{name}: replaying rows 0-{written} for its channel table and plots" in log
    assert f"{name}: replay done" in log
    assert "Traceback" not in log
    restarted = figures(plots, f"run-{fmt}")

    # An uninterrupted run of the same file, from its start to its end.
    other_data, other_plots = tmp_path / "other-data", tmp_path / "other-plots"
    other_data.mkdir()
    shutil.copy(data / name, other_data / name)
    (side / f"{name}.json").unlink()
    with MonitorProcess(other_data, other_plots, *args):
        wait_for(lambda: side_totals(side, name) == want, 60, "the uninterrupted run's plots")
    assert figures(other_plots, f"run-{fmt}") == restarted
    assert restarted["RowTotals"] != before_restart["RowTotals"]
