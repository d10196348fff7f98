"""The simulator's files, read back with larpix-control itself.

Expected values come from larpix-control's packet objects (``from_rawfile`` +
``pacman_msg_format.parse``, ``hdf5format.from_file``) counted here with plain
Python, never from the simulator's own tally.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import h5py
import numpy as np
import pytest
from larpix import Packet_v2, SyncPacket, TimestampPacket, TriggerPacket
from larpix.format import hdf5format, pacman_msg_format, rawhdf5format
from larpix.larpix import MessagePacket

from exporter.simulate import simulate_file, truth_path

TYPE_NAMES = ["data", "test", "config_write", "config_read", "timestamp", "message", "sync",
              "trigger"]
SEED = 11
SECONDS = 14


def larpix_raw_packets(path) -> list:
    """Every packet of a raw file, as larpix-control converts it (with io_group set)."""
    raw = rawhdf5format.from_rawfile(str(path))
    packets = []
    for io_group, msg in zip(raw["msg_headers"]["io_groups"], raw["msgs"], strict=True):
        packets.extend(pacman_msg_format.parse(msg, io_group=io_group))
    return packets


def _int(byte_or_int) -> int:
    return byte_or_int[0] if isinstance(byte_or_int, bytes) else int(byte_or_int)


def expected_truth(packets: list, rate_window: float = 10.0, hot_rate: float = 20.0) -> dict:
    """The metric values of docs/architecture.md, counted packet by packet from objects."""
    m: dict[str, Counter] = defaultdict(Counter)
    adc: dict[str, list[int]] = {}
    delay: dict[str, Counter] = defaultdict(Counter)
    latest: dict[int, int] = {}                 # io_group -> data time (unix second)
    data_seconds: dict[int, set] = defaultdict(set)
    synced: dict[int, set] = defaultdict(set)
    last_offset: dict[int, int] = {}
    per_second: Counter = Counter()             # (io_group, second, type) -> n
    channel_second = defaultdict(Counter)       # (io_group, second) -> channel -> n
    for p in packets:
        g = int(getattr(p, "io_group", 0) or 0)
        if isinstance(p, TimestampPacket):
            kind, channel = 4, 0
            latest[g] = p.timestamp
            data_seconds[g].add(p.timestamp)
            m["larpix_data_timestamp_seconds"][(str(g),)] = max(
                m["larpix_data_timestamp_seconds"][(str(g),)], p.timestamp)
        elif isinstance(p, MessagePacket):
            kind, channel = 5, 0
        elif isinstance(p, SyncPacket):
            kind, channel = 6, 0
            code = _int(p.sync_type)
            label = {83: "S", 72: "H", 67: "C"}.get(code, str(code))
            m["larpix_sync_packets_total"][(str(g), label)] += 1
            if label == "S":
                last_offset[g] = p.timestamp - 10_000_000
                if g in latest:
                    synced[g].add(latest[g])
        elif isinstance(p, TriggerPacket):
            kind, channel = 7, 0
            m["larpix_trigger_packets_total"][(str(g), str(_int(p.trigger_type)))] += 1
        else:
            assert isinstance(p, Packet_v2)
            kind, channel = p.packet_type, p.io_channel
            if not p.has_valid_parity():
                m["larpix_parity_errors_total"][(str(g), str(channel))] += 1
            if kind == 0:
                m["larpix_data_packets_total"][(str(g), str(channel), str(p.chip_id))] += 1
                for fifo, value in (("local", p.local_fifo), ("shared", p.shared_fifo)):
                    if value & 1:
                        m["larpix_fifo_flags_total"][(str(g), str(channel), fifo, "half")] += 1
                    if value & 2:
                        m["larpix_fifo_flags_total"][(str(g), str(channel), fifo, "full")] += 1
                adc.setdefault(str(g), [0] * 256)[p.dataword] += 1
                if getattr(p, "receipt_timestamp", None) is not None:
                    delay[str(g)][str(p.receipt_timestamp % 2**31 - p.timestamp)] += 1
                if g in latest:
                    channel_second[g, latest[g]][(channel, p.chip_id, p.channel_id)] += 1
        m["larpix_packets_total"][(str(g), str(channel), TYPE_NAMES[kind])] += 1
        if g in latest:
            per_second[g, latest[g], kind] += 1
    for g, offset in last_offset.items():
        m["larpix_sync_offset_ticks"][(str(g),)] = offset
    for g, seconds in data_seconds.items():
        m["larpix_sync_gaps_total"][(str(g),)] = sum(
            1 for s in seconds if s < max(seconds) and s not in synced[g])
        end = max(seconds)
        window = [s for s in seconds if end - rate_window <= s < end]
        for kind, name in enumerate(TYPE_NAMES):
            n = sum(per_second[g, s, kind] for s in window)
            m["larpix_packet_rate_hz"][(str(g), name)] = n / rate_window
        channels = Counter()
        for s in window:
            channels.update(channel_second[g, s])
        m["larpix_active_channels"][(str(g),)] = len(channels)
        m["larpix_hot_channels"][(str(g),)] = sum(
            1 for n in channels.values() if n / rate_window > hot_rate)
    return {"metrics": {name: {k: v for k, v in c.items() if v} for name, c in m.items()},
            "adc_counts": adc,
            "readout_delay_counts": {g: dict(c) for g, c in delay.items()}}


def as_keyed(truth_metrics: dict) -> dict:
    """Truth ``metrics`` as {name: {label values tuple: value}}, for comparison."""
    return {name: {tuple(s["labels"].values()): s["value"] for s in samples}
            for name, samples in truth_metrics.items() if samples}


@pytest.fixture(scope="module")
def raw_and_packet(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    raw = simulate_file(d / "run.raw.h5", "raw", seconds=SECONDS, seed=SEED)
    packet = simulate_file(d / "run.h5", "packet", seconds=SECONDS, seed=SEED)
    return d, raw, packet


def test_raw_truth_equals_counts_of_larpix_packets(raw_and_packet):
    d, truth, _ = raw_and_packet
    packets = larpix_raw_packets(d / "run.raw.h5")
    expected = expected_truth(packets)
    assert truth == json.loads(truth_path(d / "run.raw.h5").read_text())
    assert truth["packets"] == len(packets)
    assert truth["rows"] == rawhdf5format.len_rawfile(str(d / "run.raw.h5"))
    assert as_keyed(truth["metrics"]) == expected["metrics"]
    assert truth["adc_counts"] == expected["adc_counts"]
    assert truth["readout_delay_counts"] == expected["readout_delay_counts"]


def test_packet_rows_equal_larpix_conversion_of_the_raw_file(raw_and_packet, tmp_path):
    d, _, _ = raw_and_packet
    converted = tmp_path / "converted.h5"
    hdf5format.to_file(str(converted), larpix_raw_packets(d / "run.raw.h5"), workers=1)
    with h5py.File(d / "run.h5", "r") as ours, h5py.File(converted, "r") as theirs:
        rows = ours["packets"][:]
        assert ours["packets"].dtype == theirs["packets"].dtype
        assert rows[0]["packet_type"] == rows[-1]["packet_type"] == 5
        np.testing.assert_array_equal(rows[1:-1], theirs["packets"][:])


def test_packet_truth_equals_counts_of_larpix_packets(raw_and_packet):
    d, raw_truth, truth = raw_and_packet
    packets = hdf5format.from_file(str(d / "run.h5"), start=0)["packets"]
    # from_file drops the io_group of timestamp packets: take it from the raw file's parse.
    timestamps = iter(p for p in larpix_raw_packets(d / "run.raw.h5")
                      if isinstance(p, TimestampPacket))
    for p in packets:
        if isinstance(p, TimestampPacket):
            p.io_group = next(timestamps).io_group
    expected = expected_truth(packets)
    assert truth["packets"] == truth["rows"] == len(packets)
    assert as_keyed(truth["metrics"]) == expected["metrics"]
    assert truth["adc_counts"] == expected["adc_counts"] == raw_truth["adc_counts"]
    assert truth["readout_delay_counts"] == expected["readout_delay_counts"]
    assert sum(isinstance(p, MessagePacket) for p in packets) == 2
