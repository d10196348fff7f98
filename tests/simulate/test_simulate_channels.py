"""The simulated detector per channel and per chip, and its truth, against larpix-control.

Expected values are counted here with plain Python from larpix-control's own
packet objects (``from_rawfile`` + ``pacman_msg_format.parse``), never from the
simulator's tally.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest
from larpix import Packet_v2, SyncPacket, TimestampPacket
from support.larpix import raw_file_packets

from exporter.simulate import detector_path, simulate_file

SECONDS = 12
WINDOW = 10.0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "run.raw.h5"
    truth = simulate_file(path, "raw", seconds=SECONDS, seed=5, rate=4000.0)
    return path, truth, raw_file_packets(path)


def table(columns: dict, *key_names: str) -> dict[tuple, dict]:
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(),
                                                                        strict=True)]
    return {tuple(row[k] for k in key_names): row for row in rows}


def test_channel_truth_equals_a_recount_of_larpix_packets(run):
    _, truth, packets = run
    adc = defaultdict(list)
    counts = defaultdict(Counter)
    second, per_second = {}, defaultdict(Counter)
    for p in packets:
        if isinstance(p, TimestampPacket):
            second[p.io_group] = p.timestamp
        elif isinstance(p, Packet_v2) and p.packet_type == 0:
            key = (p.io_group, p.io_channel, p.chip_id, p.channel_id)
            adc[key].append(p.dataword)
            counts[key]["parity"] += not p.has_valid_parity()
            flags = p.local_fifo | p.shared_fifo
            counts[key]["half"] += bool(flags & 1)
            counts[key]["full"] += bool(flags & 2)
            per_second[p.io_group, second[p.io_group]][key] += 1
    got = table(truth["channels"], "io_group", "io_channel", "chip_id", "channel_id")
    assert set(got) == set(adc)
    for key, values in adc.items():
        row = got[key]
        g = key[0]
        end = second[g]     # the latest data second of the io_group
        in_window = sum(per_second[g, s][key] for s in range(end - int(WINDOW), end))
        assert row["count"] == len(values)
        assert row["adc_mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert row["adc_rms"] == pytest.approx(np.std(values), rel=1e-9, abs=1e-9)
        assert (row["parity_errors"], row["fifo_half"], row["fifo_full"]) == (
            counts[key]["parity"], counts[key]["half"], counts[key]["full"])
        assert row["rate_hz"] == in_window / WINDOW
        assert row["hot"] == (in_window / WINDOW > truth["hot_rate"])


def test_chip_truth_equals_a_recount_of_larpix_packets(run):
    _, truth, packets = run
    chips = defaultdict(Counter)
    clock = {}
    for p in packets:
        if isinstance(p, SyncPacket):
            clock[p.io_group] = p.clk_source
        if not isinstance(p, Packet_v2):
            continue
        c = chips[p.io_group, p.io_channel, p.chip_id]
        c["words"] += 1
        c["parity_errors"] += not p.has_valid_parity()
        if p.packet_type == 0:
            for fifo, value in (("local", p.local_fifo), ("shared", p.shared_fifo)):
                c[f"{fifo}_half"] += bool(value & 1)
                c[f"{fifo}_full"] += bool(value & 2)
        elif p.packet_type in (2, 3):
            op = "config_write" if p.packet_type == 2 else "config_read"
            c[f"{op}_{'downstream' if p.downstream_marker else 'upstream'}"] += 1
    got = table(truth["chips"], "io_group", "io_channel", "chip_id")
    assert set(got) == set(chips)
    for key, c in chips.items():
        assert {k: v for k, v in got[key].items() if k not in ("io_group", "io_channel",
                                                                "chip_id") and v} == +c
    assert {int(g): v for g, v in truth["clock_source"].items()} == clock == {1: 1, 2: 0}
    config = Counter()
    for c in chips.values():
        config.update({k: v for k, v in c.items() if k.startswith("config")})
    assert all(config[f"config_{op}_{d}"] > 20 for op in ("read", "write")
               for d in ("downstream", "upstream"))


def test_chip_window_adc_equals_a_recount(run):
    _, truth, packets = run
    second, adc = {}, defaultdict(list)
    rows = []
    for p in packets:
        if isinstance(p, TimestampPacket):
            second[p.io_group] = p.timestamp
        elif isinstance(p, Packet_v2) and p.packet_type == 0:
            rows.append((p.io_group, second[p.io_group], p.io_channel, p.chip_id, p.dataword))
    end = second         # the latest data second of each io_group
    for g, s, channel, chip, value in rows:
        if end[g] - WINDOW <= s < end[g]:
            adc[g, channel, chip].append(value)
    got = table(truth["chips_window"], "io_group", "io_channel", "chip_id")
    assert set(got) == set(adc)
    for key, values in adc.items():
        assert got[key]["count"] == len(values)
        assert got[key]["adc_mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert got[key]["adc_rms"] == pytest.approx(np.std(values), rel=1e-9, abs=1e-9)


def test_pedestal_and_noise_follow_the_detector(run):
    path, truth, packets = run
    detector = json.loads(detector_path(path).read_text())
    index = {(c, chip, ch): i for i, (c, chip, ch) in enumerate(zip(
        detector["io_channel"], detector["chip_id"], detector["channel_id"], strict=True))}
    adc = defaultdict(list)
    for p in packets:
        if isinstance(p, Packet_v2) and p.packet_type == 0:
            adc[p.io_group, p.io_channel, p.chip_id, p.channel_id].append(p.dataword)
    for g, described in detector["io_groups"].items():
        pedestal, noise = np.array(described["pedestal"]), np.array(described["noise"])
        assert 3 < np.std(pedestal) < 9 and np.std(noise) > 0.3
        for hot in described["hot"]:        # enough hits to see each one's own pedestal
            i = index[tuple(hot)]
            values = np.array(adc[(int(g), *hot)])
            core = values[np.abs(values - pedestal[i]) < 5 * noise[i]]
            assert np.median(values) == pytest.approx(pedestal[i], abs=1.0)
            assert np.std(core) == pytest.approx(noise[i], rel=0.25)
        chip_of = np.array(detector["chip_id"]) + 256 * np.array(detector["io_channel"])
        for kind, column, relation in (("shifted", pedestal, 25), ("noisy", noise, 2.5)):
            assert len(described[kind]) == 2
            for channel in described[kind]:
                i = index[tuple(channel)]
                others = column[(chip_of == chip_of[i]) & (np.arange(len(column)) != i)]
                if kind == "shifted":
                    assert column[i] - np.mean(others) > relation
                else:
                    assert column[i] / np.mean(others) > relation


def test_one_detector_two_runs(tmp_path):
    a = simulate_file(tmp_path / "a.h5", "packet", seconds=2, seed=1, detector_seed=7)
    b = simulate_file(tmp_path / "b.h5", "packet", seconds=2, seed=2, detector_seed=7)
    c = simulate_file(tmp_path / "c.h5", "packet", seconds=2, seed=1)
    described = [json.loads(detector_path(tmp_path / f"{n}.h5").read_text())
                 for n in "abc"]
    assert described[0]["io_groups"] == described[1]["io_groups"] != described[2]["io_groups"]
    assert described[0]["detector_seed"] == 7 and described[2]["detector_seed"] == 1
    assert a["channels"] != b["channels"] and a["adc_counts"] != c["adc_counts"]
