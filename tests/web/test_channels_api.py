"""``/api/channels`` and ``/api/disable-list`` of a live service against the simulator's
truth, and the files ``once --channels/--disable-list`` write, loaded the way the 2x2 DAQ's
scripts load them."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix import Key
from support.service import MonitorProcess, wait_for

from exporter.simulate import detector_path, simulate_file

FLOATS = ("rate_hz", "adc_mean", "adc_rms")
INTS = ("io_group", "io_channel", "tile", "chip_id", "channel_id", "count", "parity_errors",
        "fifo_half", "fifo_full")


def truth_rows(truth: dict) -> dict[tuple, dict]:
    c = truth["channels"]
    rows = {}
    for i in range(len(c["count"])):
        row = {name: c[name][i] for name in ("io_group", "io_channel", "chip_id", "channel_id",
                                             "count", "adc_mean", "adc_rms", "parity_errors",
                                             "fifo_half", "fifo_full", "rate_hz")}
        row["tile"] = (row["io_channel"] - 1) // 4 + 1
        row["hot"] = c["hot"][i]
        rows[row["io_group"], row["io_channel"], row["chip_id"], row["channel_id"]] = row
    return rows


def key_of(row: dict) -> tuple:
    return row["io_group"], row["io_channel"], row["chip_id"], row["channel_id"]


def assert_row(row: dict, want: dict) -> None:
    for name in INTS:
        assert row[name] == want[name], name
    for name in FLOATS:
        assert row[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name
    assert (row["status"] == "hot") == want["hot"]


def simulated_hot(path: Path) -> dict[str, list[int]]:
    """The channels the simulator made hot, as chip key -> channels."""
    described = json.loads(detector_path(path).read_text())
    hot: dict[str, list[int]] = {}
    for g, group in described["io_groups"].items():
        for io_channel, chip, channel in group["hot"]:
            hot.setdefault(f"{g}-{io_channel}-{chip}", []).append(channel)
    return {k: sorted(v) for k, v in hot.items()}


def load_like_the_daq(path: Path) -> dict[str, list[int]]:
    """What 2x2-crs-daq's config_loader.parse_disabled_json and merge_disabled_to_config do:
    json -> chip key -> 64-channel mask, merged into each chip's channel_mask."""
    disabled = json.loads(path.read_text())
    merged = {}
    for chip_key, channels in disabled.items():
        Key(chip_key)        # a larpix-control chip key
        mask = [1 if channel in channels else 0 for channel in range(64)]
        config = {"CHIP_KEY": chip_key, "channel_mask": [0] * 64}
        combined = np.array(config["channel_mask"]) + np.array(mask)
        config["channel_mask"] = [1 if v > 0 else 0 for v in combined]
        merged[chip_key] = [ch for ch in range(64) if config["channel_mask"][ch]]
    return merged


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    data, plots = root / "data", root / "plots"
    data.mkdir()
    # an earlier run: the DAQ's files follow each other in data time
    first = simulate_file(data / "early.h5", "packet", seconds=6, seed=3, rate=3000.0,
                          start_time=1_699_999_000)
    path = data / "run.h5"
    truth = simulate_file(path, "packet", seconds=14, seed=9, rate=6000.0)
    with MonitorProcess(data, plots, "--no-plots", "--read-all") as monitor:
        wait_for(lambda: monitor.get("/api/channels?file=run").status_code == 200
                 and monitor.get("/api/channels?file=run&limit=0").json()["matched"]
                 == len(truth["channels"]["count"]), 60, "the table")
        yield monitor, path, truth, first


def test_every_row_and_column_equals_the_truth(served):
    monitor, _, truth, _ = served
    body = monitor.get("/api/channels?file=run&limit=0").json()
    want = truth_rows(truth)
    assert body["file"] == "run" and len(body["rows"]) == len(want) == body["matched"]
    for row in body["rows"]:
        assert_row(row, want[key_of(row)])
        assert set(row) >= {"x_mm", "y_mm", "status"}
    rates = [row["rate_hz"] for row in body["rows"]]
    assert rates == sorted(rates, reverse=True)          # default: rate_hz, descending


def test_sort_limit_filters_and_csv(served):
    monitor, _, truth, _ = served
    want = truth_rows(truth)
    rows = monitor.get("/api/channels?file=run&sort=adc_rms&order=asc&limit=7").json()["rows"]
    expected = sorted(want.values(), key=lambda r: r["adc_rms"])[:7]
    assert [r["adc_rms"] for r in rows] == pytest.approx([r["adc_rms"] for r in expected])
    assert len(monitor.get("/api/channels?file=run").json()["rows"]) == 100

    query = "file=run&io_group=2&tile=3&limit=0&sort=count"
    rows = monitor.get(f"/api/channels?{query}").json()["rows"]
    expected = {k for k, r in want.items() if r["io_group"] == 2 and r["tile"] == 3}
    assert {key_of(r) for r in rows} == expected and len(expected) > 50
    chip = rows[0]
    one = monitor.get(f"/api/channels?file=run&io_group=2&io_channel={chip['io_channel']}"
                      f"&chip_id={chip['chip_id']}&limit=0").json()["rows"]
    assert {key_of(r) for r in one} == {k for k in want if k[:3] == key_of(chip)[:3]}
    hot = monitor.get("/api/channels?file=run&status=hot&limit=0").json()["rows"]
    assert {key_of(r) for r in hot} == {k for k, r in want.items() if r["hot"]}

    response = monitor.get(f"/api/channels?{query}&format=csv")
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert len(table) == len(rows)
    for line, row in zip(table, rows, strict=True):
        assert {name: int(line[name]) for name in INTS} == {name: row[name] for name in INTS}
        assert {name: float(line[name]) for name in FLOATS} == {name: row[name] for name in FLOATS}


def test_default_file_and_other_files(served):
    monitor, _, _, first = served
    early = monitor.get("/api/channels?file=early&limit=0").json()
    assert early["file"] == "early" and early["matched"] == len(first["channels"]["count"])
    latest = monitor.get("/api/channels").json()["file"]
    assert latest in ("early", "run")  # whichever the monitor read last


@pytest.mark.parametrize(("query", "reason"), [
    ("sort=status", "sort must be one of"), ("sort=nope", "sort must be one of"),
    ("order=up", "order must be asc or desc"), ("limit=-1", "limit must be"),
    ("status=warm", "status must be one of"), ("io_group=x", "io_group"),
    ("format=xml", "format"),
])
def test_bad_queries_get_422_with_a_reason(served, query, reason):
    monitor = served[0]
    response = monitor.get(f"/api/channels?file=run&{query}")
    assert response.status_code == 422
    assert reason in response.text
    assert monitor.get("/api/channels?file=nosuch").status_code == 404
    assert monitor.get("/api/disable-list?key=io").status_code == 422
    assert monitor.get("/api/disable-list?window=3").status_code == 422


def test_disable_list_in_both_key_formats(served):
    monitor, path, truth, _ = served
    hot = simulated_hot(path)
    assert len(hot) == 6
    assert monitor.get("/api/disable-list?file=run").json() == hot
    assert monitor.get(f"/api/disable-list?file=run&window={truth['rate_window']:g}"
                       ).json() == hot
    assert monitor.get("/api/disable-list?file=run&window=run").json() == hot
    by_tile: dict[str, list[int]] = {}
    for chip_key, channels in hot.items():
        g, io_channel, chip = map(int, chip_key.split("-"))
        by_tile.setdefault(f"{g}-{(io_channel - 1) // 4 + 1}-{chip}", []).extend(channels)
    assert monitor.get("/api/disable-list?file=run&key=tile").json() == {
        k: sorted(v) for k, v in by_tile.items()}
    # a threshold below the normal channels' rates lists every channel of the window
    want = truth_rows(truth)
    listed = monitor.get("/api/disable-list?file=run&min_rate=0").json()
    assert sum(map(len, listed.values())) == sum(1 for r in want.values() if r["rate_hz"] > 0)


def test_once_writes_the_table_and_a_disable_list_the_daq_loads(tmp_path):
    path = tmp_path / "run.h5"
    truth = simulate_file(path, "raw", seconds=8, seed=12, rate=5000.0)
    out_csv, out_json = tmp_path / "channels.csv", tmp_path / "disable.json"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("larpix-monitor")), "once", str(path), "-o",
         str(tmp_path / "plots"), "--no-plots", "--channels", str(out_csv),
         "--disable-list", str(out_json)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    want = truth_rows(truth)
    lines = list(csv.DictReader(out_csv.open()))
    assert len(lines) == len(want)
    for line in lines:
        row = {name: int(line[name]) for name in INTS}
        row.update({name: float(line[name]) for name in FLOATS}, status=line["status"])
        assert_row(row, want[key_of(row)])
    with h5py.File(path, "r") as f:
        assert f["msg_headers"].shape[0] > 0
    assert load_like_the_daq(out_json) == simulated_hot(path)
