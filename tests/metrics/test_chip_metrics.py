"""Per-chip metrics against the simulator's truth and against a plain recount of files that
larpix-control's own writer (``hdf5format.to_file``) wrote.

Values are read back from the real exposition text, parsed by prometheus_client.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import h5py
import numpy as np
import pytest
from larpix import Packet_v2, SyncPacket, TimestampPacket
from larpix.format import hdf5format
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import DetectorMetrics, MonitorHealth, build_registry, exposition
from exporter.packets import PACKET_DTYPE, TIMESTAMP, Chunk
from exporter.simulate import simulate_file
from exporter.source.reader import FileReader

CHIP_FAMILIES = ("larpix_chip_adc_mean", "larpix_chip_adc_rms", "larpix_chip_parity_errors_total",
                 "larpix_chip_fifo_flags_total", "larpix_config_packets_total",
                 "larpix_io_channel_info", "larpix_clock_source")


def scrape(detector: DetectorMetrics) -> dict[str, dict[tuple, float]]:
    body, _ = exposition(build_registry(detector, MonitorHealth()))
    out: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name in CHIP_FAMILIES:
                out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return out


def chip_labels(g, channel, chip, **extra) -> tuple:
    return tuple(sorted({"io_group": str(g), "io_channel": str(channel), "chip_id": str(chip),
                         **extra}.items()))


def expected_from_truth(truth: dict) -> dict[str, dict[tuple, float]]:
    want: dict[str, dict[tuple, float]] = defaultdict(dict)
    w = truth["chips_window"]
    for g, channel, chip, mean, rms in zip(w["io_group"], w["io_channel"], w["chip_id"],
                                           w["adc_mean"], w["adc_rms"], strict=True):
        want["larpix_chip_adc_mean"][chip_labels(g, channel, chip)] = mean
        want["larpix_chip_adc_rms"][chip_labels(g, channel, chip)] = rms
    c = truth["chips"]
    for i, key in enumerate(zip(c["io_group"], c["io_channel"], c["chip_id"], strict=True)):
        if c["words"][i] > c["parity_errors"][i]:
            want["larpix_chip_parity_errors_total"][chip_labels(*key)] = c["parity_errors"][i]
        for fifo in ("local", "shared"):
            for level in ("half", "full"):
                if c[f"{fifo}_{level}"][i]:
                    want["larpix_chip_fifo_flags_total"][chip_labels(
                        *key, fifo=fifo, level=level)] = c[f"{fifo}_{level}"][i]
        for op in ("write", "read"):
            for direction in ("downstream", "upstream"):
                if c[f"config_{op}_{direction}"][i]:
                    want["larpix_config_packets_total"][chip_labels(
                        *key, op=op, direction=direction)] = c[f"config_{op}_{direction}"][i]
        want["larpix_io_channel_info"][tuple(sorted({
            "io_group": str(key[0]), "io_channel": str(key[1]),
            "tile": str((key[1] - 1) // 4 + 1)}.items()))] = 1
    for g, source in truth["clock_source"].items():
        want["larpix_clock_source"][(("io_group", g),)] = source
    return want


def assert_same(got: dict, want: dict) -> None:
    for name in CHIP_FAMILIES:
        assert got.get(name, {}).keys() == want.get(name, {}).keys(), name
        for labels, value in want.get(name, {}).items():
            assert got[name][labels] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, labels)


@pytest.mark.parametrize("fmt", ["packet", "raw"])
def test_per_chip_metrics_equal_the_truth(tmp_path, fmt):
    path = tmp_path / f"run.{fmt}.h5"
    truth = simulate_file(path, fmt, seconds=15, seed=21, rate=4000.0, io_groups=(1, 2, 3))
    detector = DetectorMetrics(truth["rate_window"], truth["hot_rate"])
    for chunk in FileReader(path, chunk_rows=9_000).read_new():
        detector.update(chunk, str(path))
    got = scrape(detector)
    want = expected_from_truth(truth)
    assert len(want["larpix_chip_adc_mean"]) > 1000 and len(want["larpix_config_packets_total"])
    assert_same(got, want)


def test_a_flipped_chip_id_bit_does_not_invent_a_chip():
    rows = np.zeros(5, PACKET_DTYPE)
    rows["io_group"], rows["io_channel"] = 1, 3
    rows[0]["packet_type"], rows[0]["io_channel"], rows[0]["timestamp"] = TIMESTAMP, 0, 50
    rows["chip_id"][1:] = [11, 11, 11 ^ 4, 11]
    rows["valid_parity"][1:] = [1, 0, 0, 1]
    detector = DetectorMetrics()
    detector.update(Chunk(rows, 5, rows.nbytes, "packet", False), "f.h5")
    got = scrape(detector)["larpix_chip_parity_errors_total"]
    assert got == {chip_labels(1, 3, 11): 1.0}


def larpix_control_file(path, rng: np.random.Generator) -> None:
    """Seconds of timestamp, data, config and sync packets, as larpix-control writes them."""
    packets = []
    for second in range(1_700_000_000, 1_700_000_014):
        for g in (1, 2):
            stamp = TimestampPacket(timestamp=second)
            stamp.io_group = g
            packets.append(stamp)
            for _ in range(int(rng.integers(50, 150))):
                p = Packet_v2()
                p.packet_type = int(rng.choice([0, 0, 0, 0, 2, 3]))
                p.io_group, p.io_channel = g, int(rng.integers(1, 9))
                p.chip_id = int(rng.integers(11, 16))
                p.downstream_marker = int(rng.integers(0, 2))
                if p.packet_type == 0:
                    p.channel_id, p.dataword = int(rng.integers(0, 64)), int(rng.normal(80, 6))
                    p.local_fifo, p.shared_fifo = (int(v) for v in rng.choice(4, 2, p=[.7, .1,
                                                                                       .1, .1]))
                else:
                    p.register_address, p.register_data = (int(v) for v in rng.integers(0, 256,
                                                                                        2))
                p.assign_parity()
                if rng.random() < 0.05:
                    p.parity = 1 - p.parity
                packets.append(p)
            packets.append(SyncPacket(sync_type=b"S", clk_source=int(rng.integers(0, 2)),
                                      timestamp=10_000_000, io_group=g))
    hdf5format.to_file(str(path), packets, workers=1)


def recount(path, rate_window: float) -> dict[str, dict[tuple, float]]:
    """The per-chip metrics, counted row by row from the file with plain h5py and numpy."""
    with h5py.File(path, "r") as f:
        rows = f["packets"][:]
    want: dict[str, dict[tuple, float]] = defaultdict(dict)
    words, errors, fifo, config = Counter(), Counter(), Counter(), Counter()
    second, window_rows, clock = {}, [], {}
    for r in rows.tolist():
        row = dict(zip(rows.dtype.names, r, strict=True))
        g, kind = row["io_group"], row["packet_type"]
        key = (g, row["io_channel"], row["chip_id"])
        if kind == TIMESTAMP:
            second[g] = row["timestamp"]
        elif kind == 6:
            clock[g] = row["dataword"]
        elif kind <= 3:
            words[key] += 1
            errors[key] += row["valid_parity"] == 0
            want["larpix_io_channel_info"][tuple(sorted({
                "io_group": str(g), "io_channel": str(key[1]),
                "tile": str((key[1] - 1) // 4 + 1)}.items()))] = 1
        if kind == 0:
            for name, value in (("local", row["local_fifo"]), ("shared", row["shared_fifo"])):
                fifo[key, name, "half"] += bool(value & 1)
                fifo[key, name, "full"] += bool(value & 2)
            window_rows.append((g, second[g], key, row["dataword"]))
        if kind in (2, 3):
            op = "write" if kind == 2 else "read"
            config[key, op, "downstream" if row["downstream_marker"] == 1 else "upstream"] += 1
    for key, n in words.items():
        if n > errors[key]:
            want["larpix_chip_parity_errors_total"][chip_labels(*key)] = errors[key]
    for (key, name, level), n in fifo.items():
        if n:
            want["larpix_chip_fifo_flags_total"][chip_labels(*key, fifo=name, level=level)] = n
    for (key, op, direction), n in config.items():
        want["larpix_config_packets_total"][chip_labels(*key, op=op, direction=direction)] = n
    adc = defaultdict(list)
    for g, s, key, value in window_rows:
        if second[g] - rate_window <= s < second[g]:
            adc[key].append(value)
    for key, values in adc.items():
        want["larpix_chip_adc_mean"][chip_labels(*key)] = np.mean(values)
        want["larpix_chip_adc_rms"][chip_labels(*key)] = np.std(values)
    for g, value in clock.items():
        want["larpix_clock_source"][(("io_group", str(g)),)] = value
    return want


@pytest.mark.parametrize("chunk_rows", [333, 37])  # 37: a chip or two new in most chunks
def test_per_chip_metrics_equal_a_recount_of_a_larpix_control_file(tmp_path, chunk_rows):
    path = tmp_path / "larpix.h5"
    larpix_control_file(path, np.random.default_rng(4))
    detector = DetectorMetrics(rate_window=5)
    for chunk in FileReader(path, chunk_rows=chunk_rows).read_new():
        detector.update(chunk, str(path))
    want = recount(path, 5)
    assert len(want["larpix_config_packets_total"]) > 100
    assert len(want["larpix_chip_adc_mean"]) == 2 * 8 * 5 and len(want["larpix_clock_source"]) == 2
    assert_same(scrape(detector), want)
