"""The metric model against the simulator's ground truth and hand-computed traps.

Values are always read back from the real exposition text (parsed by
prometheus_client's own parser), never from internal arrays.
"""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import DetectorMetrics, MonitorHealth, build_registry, exposition
from exporter.packets import PACKET_DTYPE, Chunk
from exporter.simulate import LiveSimulation, simulate_file
from exporter.source.reader import FileReader

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
S = ord("S")


def scrape(detector: DetectorMetrics, health: MonitorHealth | None = None) -> Samples:
    body, _ = exposition(build_registry(detector, health or MonitorHealth()))
    return parse(body.decode())


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def named(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def truth_mismatches(samples: Samples, truth: dict) -> list[str]:
    """Every truth series is exposed with its value; other series of those names are 0."""
    expected = {(name, tuple(sorted(s["labels"].items()))): s["value"]
                for name, series in truth["metrics"].items() for s in series}
    wrong = [f"{key}: exposed {samples.get(key)}, truth {v}"
             for key, v in expected.items() if samples.get(key) != pytest.approx(v, rel=1e-12)]
    wrong += [f"{key}: exposed {v}, truth absent" for key, v in samples.items()
              if key[0] in truth["metrics"] and key not in expected and v != 0]
    return wrong


def histogram_mismatches(samples: Samples, name: str, truth_counts: dict[str, dict[int, int]]
                         ) -> list[str]:
    """Cumulative buckets, count and sum of each io_group against per-value truth counts."""
    wrong = []
    groups = {dict(labels)["io_group"] for labels in named(samples, f"{name}_count")}
    if groups != set(truth_counts):
        wrong.append(f"{name}: io_groups {sorted(groups)} != truth {sorted(truth_counts)}")
    for group, counts in truth_counts.items():
        values = np.array(list(counts), dtype=np.int64)
        n = np.array(list(counts.values()), dtype=np.int64)
        buckets = {float(dict(labels)["le"]): v
                   for labels, v in named(samples, f"{name}_bucket").items()
                   if dict(labels)["io_group"] == group}
        for le, got in buckets.items():
            if got != n[values <= le].sum():
                wrong.append(f"{name}{{io_group={group},le={le}}}: {got}")
        if value(samples, f"{name}_count", io_group=group) != n.sum():
            wrong.append(f"{name}_count{{io_group={group}}}")
        if value(samples, f"{name}_sum", io_group=group) != (values * n).sum():
            wrong.append(f"{name}_sum{{io_group={group}}}")
    return wrong


def truth_histograms(truth: dict) -> tuple[dict, dict]:
    adc = {g: {v: c for v, c in enumerate(counts) if c}
           for g, counts in truth["adc_counts"].items()}
    delay = {g: {int(d): c for d, c in counts.items()}
             for g, counts in truth["readout_delay_counts"].items()}
    return adc, delay


def all_truth_mismatches(samples: Samples, truth: dict) -> list[str]:
    """Counters and gauges, then the ADC and readout-delay histograms, against the truth."""
    adc, delay = truth_histograms(truth)
    return (truth_mismatches(samples, truth)
            + histogram_mismatches(samples, "larpix_adc", adc)
            + histogram_mismatches(samples, "larpix_readout_delay_ticks", delay))


def read_all(detector: DetectorMetrics, reader: FileReader) -> None:
    for chunk in reader.read_new():
        detector.update(chunk, reader.path)


# -- against the simulator's ground truth ---------------------------------------------------

@pytest.mark.parametrize(("fmt", "version"), [("packet", "2.4"), ("packet", "2.2"), ("raw", "2.4")])
def test_whole_file_equals_truth(tmp_path, fmt, version):
    path = tmp_path / f"run-{fmt}-{version}.h5"
    truth = simulate_file(path, fmt, n_packets=60_000, version=version, rate=3000.0, seed=3,
                          io_groups=(1, 2, 5))
    detector = DetectorMetrics(truth["rate_window"], truth["hot_rate"])
    read_all(detector, FileReader(path, chunk_rows=16_384))
    samples = scrape(detector)

    assert all_truth_mismatches(samples, truth) == []
    assert (version >= "2.3") == bool(truth_histograms(truth)[1])
    buckets = named(samples, "larpix_adc_bucket")
    edges = sorted({float(dict(labels)["le"]) for labels in buckets})
    assert len(edges) >= 17 and edges[0] >= 0 and edges[-2] >= 255 and edges[-1] == float("inf")


@pytest.mark.parametrize("rate", [5000.0, 500.0])
def test_chunks_of_many_blocks_equal_truth(tmp_path, rate):
    """One chunk of ~150 k rows: counted in several cache-sized blocks, new chips in each;
    at the lower rate most blocks lie wholly before the rate window (a backlog)."""
    path = tmp_path / "big.h5"
    truth = simulate_file(path, "packet", n_packets=150_000, rate=rate, seed=4,
                          io_groups=(1, 2, 5))
    detector = DetectorMetrics(truth["rate_window"], truth["hot_rate"])
    read_all(detector, FileReader(path, chunk_rows=1 << 20))
    samples = scrape(detector)

    assert all_truth_mismatches(samples, truth) == []


@pytest.mark.parametrize("fmt", ["packet", "raw"])
def test_file_read_while_appended_equals_truth(tmp_path, fmt):
    path = tmp_path / f"live.{fmt}.h5"
    detector = DetectorMetrics()
    reader = FileReader(path)
    with LiveSimulation(path, fmt, rate=1500.0, seed=8, io_groups=(1, 3)) as live:
        for batch in range(24):
            live.append(1)
            read_all(detector, reader)
            if batch % 6 == 5:
                assert truth_mismatches(scrape(detector), live.truth) == [], batch
        truth = live.close()
    read_all(detector, reader)
    samples = scrape(detector)
    assert all_truth_mismatches(samples, truth) == []


def test_exposition_is_byte_identical_to_prometheus_client(tmp_path):
    path = tmp_path / "run.h5"
    simulate_file(path, "packet", n_packets=20_000, seed=5)
    detector, health = DetectorMetrics(), MonitorHealth()
    read_all(detector, FileReader(path))
    health.observe_render('Odd "plot" \\ name', 0.2)
    health.count_read_error("not_hdf5")
    health.set_files({"active": 1, "idle": 2})
    registry = build_registry(detector, health)

    text, text_type = exposition(registry, "text/plain")
    om, om_type = exposition(registry, "application/openmetrics-text; version=1.0.0")
    assert text == generate_latest(registry)
    assert om == openmetrics_latest(registry)
    assert text_type.startswith("text/plain") and om_type.startswith("application/openmetrics")


def two_halves(tmp_path, seed: int) -> tuple[str, list[Chunk]]:
    """A simulated file of 20,000 packets, in two chunks."""
    path = tmp_path / "run.h5"
    simulate_file(path, "packet", n_packets=20_000, seed=seed)
    return str(path), list(FileReader(path, chunk_rows=10_000).read_new())


def packets_total(text: bytes) -> float:
    return sum(v for (name, _), v in parse(text.decode()).items() if name == "larpix_packets_total")


def test_exposition_follows_detector_and_health_changes_apart(tmp_path):
    """The two parts are cached apart: each change shows, and the whole stays identical
    to prometheus_client's own encoding."""
    path, chunks = two_halves(tmp_path, seed=8)
    detector, health = DetectorMetrics(), MonitorHealth()
    registry = build_registry(detector, health)
    detector.update(chunks[0], path)
    first = exposition(registry)[0]
    assert first == generate_latest(registry)

    health.observe_render("PacketRate", 0.3)  # the monitor's part only
    second = exposition(registry)[0]
    assert second == generate_latest(registry) and second != first
    assert value(parse(second.decode()), "larpix_monitor_plot_render_seconds_count",
                 plot="PacketRate") == 1
    detector.update(chunks[1], path)  # the detector's part only
    third = exposition(registry)[0]
    assert third == generate_latest(registry)
    assert value(parse(third.decode()), "larpix_monitor_plot_render_seconds_count",
                 plot="PacketRate") == 1
    assert packets_total(third) == 20_000


@pytest.mark.parametrize("collector_on", [True, False])
def test_families_are_built_with_the_cycle_collector_paused(tmp_path, monkeypatch,
                                                            collector_on):
    """The build pauses Python's cycle collector (a 2x2 build would set off full
    collections) and leaves it as it found it; the exposition is unchanged."""
    import exporter.metrics.collector as metrics_module

    seen = []
    real = metrics_module.detector_families
    monkeypatch.setattr(metrics_module, "detector_families",
                        lambda snapshot: seen.append(gc.isenabled()) or real(snapshot))
    path, chunks = two_halves(tmp_path, seed=10)
    detector = DetectorMetrics()
    detector.update(chunks[0], path)
    registry = build_registry(detector, MonitorHealth())
    was_on = gc.isenabled()
    (gc.enable if collector_on else gc.disable)()
    try:
        text = exposition(registry)[0]
        after = gc.isenabled()
    finally:
        (gc.enable if was_on else gc.disable)()
    assert seen == [False] and after is collector_on
    assert text == generate_latest(registry) and packets_total(text) == 10_000


def test_prepare_builds_ahead_only_while_something_scrapes(tmp_path, monkeypatch):
    import exporter.metrics.collector as metrics_module

    built = []
    real = metrics_module.detector_families
    monkeypatch.setattr(metrics_module, "detector_families",
                        lambda snapshot: built.append(1) or real(snapshot))
    path, chunks = two_halves(tmp_path, seed=9)
    detector, health = DetectorMetrics(), MonitorHealth()
    registry = build_registry(detector, health)

    detector.update(chunks[0], path)
    registry.collector.prepare()
    assert built == []  # nobody has scraped: nothing built in advance
    exposition(registry)
    assert len(built) == 1
    detector.update(chunks[1], path)
    registry.collector.prepare()
    assert len(built) == 2
    text = exposition(registry)[0]
    assert len(built) == 2  # the scrape found the new rows ready
    assert packets_total(text) == 20_000


# -- traps, with hand-built packets and hand-computed values ---------------------------------

def packets(*rows: dict) -> np.ndarray:
    out = np.zeros(len(rows), PACKET_DTYPE)
    for i, row in enumerate(rows):
        out[i]["valid_parity"] = 1
        for name, v in row.items():
            out[i][name] = v
    return out


def ts(group: int, unix: int, **extra) -> dict:
    return {"io_group": group, "packet_type": 4, "timestamp": unix, **extra}


def data(group: int, channel: int = 1, chip: int = 11, channel_id: int = 0, **extra) -> dict:
    return {"io_group": group, "io_channel": channel, "chip_id": chip,
            "channel_id": channel_id, "packet_type": 0, **extra}


def chunk(rows: np.ndarray, receipts: bool = True) -> Chunk:
    return Chunk(rows, len(rows), rows.nbytes, "packet", receipts)


def test_one_timestamp_packet_per_message_not_per_second():
    detector = DetectorMetrics(rate_window=2)
    detector.update(chunk(packets(
        ts(1, 1000), data(1), data(1),              # message 1 of second 1000
        ts(1, 1000), data(1), data(1), data(1),     # message 2, same second
        ts(1, 1001), data(1),
        ts(1, 1002),                                # second 1002 begins: window 1000-1001
    )), "f")
    s = scrape(detector)
    assert value(s, "larpix_packets_total", io_group="1", io_channel="0",
                 packet_type="timestamp") == 4
    assert value(s, "larpix_packet_rate_hz", io_group="1", packet_type="timestamp") == 3 / 2
    assert value(s, "larpix_packet_rate_hz", io_group="1", packet_type="data") == 6 / 2
    assert value(s, "larpix_data_timestamp_seconds", io_group="1") == 1002
    assert value(s, "larpix_sync_gaps_total", io_group="1") == 2


def test_io_channel_zero_and_message_io_group_zero_labels_and_data_time_by_group():
    detector = DetectorMetrics(rate_window=1)
    detector.update(chunk(packets(
        ts(1, 500), data(1, 3), {"io_group": 0, "packet_type": 5},   # run-start message
        data(1, 3),                                  # after the message: still second 500
        ts(2, 900), data(2, 4),
        {"io_group": 1, "packet_type": 6, "trigger_type": S, "timestamp": 10_000_000},
        {"io_group": 1, "packet_type": 7, "trigger_type": 2, "timestamp": 55},
        ts(1, 501), ts(2, 901),
    )), "f")
    s = scrape(detector)
    expected = {("0", "0", "message"): 1, ("1", "0", "timestamp"): 2, ("1", "0", "sync"): 1,
                ("1", "0", "trigger"): 1, ("1", "3", "data"): 2, ("2", "0", "timestamp"): 2,
                ("2", "4", "data"): 1}
    got = {(d["io_group"], d["io_channel"], d["packet_type"]): v
           for d, v in ((dict(k), v) for k, v in named(s, "larpix_packets_total").items())}
    assert got == expected
    assert value(s, "larpix_packet_rate_hz", io_group="1", packet_type="data") == 2
    assert value(s, "larpix_packet_rate_hz", io_group="2", packet_type="data") == 1
    assert value(s, "larpix_active_channels", io_group="1") == 1
    assert value(s, "larpix_trigger_packets_total", io_group="1", trigger_type="2") == 1
    assert value(s, "larpix_sync_offset_ticks", io_group="1") == 0
    assert value(s, "larpix_sync_gaps_total", io_group="1") == 0     # second 500 had its S
    assert value(s, "larpix_sync_gaps_total", io_group="2") == 1     # second 900 had none


def test_ring_slots_reused_chunk_after_chunk_keep_each_second_apart():
    """Each chunk spans more seconds than the window, so every ring slot is reused in each
    io_group: io_group 0 sends timestamps only, and io_group 2 runs a second behind, so a
    slot holds different seconds in different io_groups. io_group 3 sends nothing in the
    last chunk: its window stays where its data time stopped."""
    detector = DetectorMetrics(rate_window=2)
    for first in range(100, 112, 4):
        rows = []
        for second in range(first, first + 4):
            rows += [ts(0, second), ts(1, second), *[data(1, 3)] * (second % 5 + 1),
                     ts(2, second - 1), *[data(2, 4)] * (second % 3 + 1)]
            if first < 108:
                rows += [ts(3, second), data(3, 5), data(3, 5)]
        detector.update(chunk(packets(*rows)), "f")
        s = scrape(detector)
        assert value(s, "larpix_packet_rate_hz", io_group="3", packet_type="data") == 2
        last = first + 3  # the window: the two complete seconds before the last one
        assert value(s, "larpix_packet_rate_hz", io_group="0",
                     packet_type="timestamp") == 1
        assert value(s, "larpix_packet_rate_hz", io_group="1", packet_type="data") == sum(
            second % 5 + 1 for second in (last - 2, last - 1)) / 2
        assert value(s, "larpix_packet_rate_hz", io_group="2", packet_type="data") == sum(
            second % 3 + 1 for second in (last - 2, last - 1)) / 2  # its seconds - 1
        assert value(s, "larpix_packets_total", io_group="0", io_channel="0",
                     packet_type="timestamp") == last - 99


def test_chip_labels_follow_each_detector_as_chips_are_added():
    def chip(group: int, channel: int, chip_id: int) -> tuple[tuple[str, str], ...]:
        return (("chip_id", str(chip_id)), ("io_channel", str(channel)), ("io_group", str(group)))

    first, second = DetectorMetrics(), DetectorMetrics()
    first.update(chunk(packets(data(1, 2, 11), data(1, 2, 12), data(1, 2, 12))), "f")
    second.update(chunk(packets(data(3, 4, 50))), "g")
    assert named(scrape(first), "larpix_data_packets_total") == {chip(1, 2, 11): 1,
                                                                 chip(1, 2, 12): 2}
    assert named(scrape(second), "larpix_data_packets_total") == {chip(3, 4, 50): 1}
    first.update(chunk(packets(data(7, 1, 11), data(1, 2, 5), data(1, 2, 12))), "f")
    assert named(scrape(first), "larpix_data_packets_total") == {
        chip(1, 2, 11): 1, chip(1, 2, 12): 3, chip(1, 2, 5): 1, chip(7, 1, 11): 1}
    assert named(scrape(second), "larpix_data_packets_total") == {chip(3, 4, 50): 1}


def test_parity_errors_only_for_larpix_words():
    bad = {"valid_parity": 0}
    detector = DetectorMetrics()
    detector.update(chunk(packets(
        ts(1, 10, **bad), data(1, 2, **bad), data(1, 2), data(1, 5, **bad),
        {"io_group": 1, "io_channel": 2, "chip_id": 11, "packet_type": 1, **bad},   # test
        {"io_group": 1, "io_channel": 2, "chip_id": 11, "packet_type": 2, **bad},   # config write
        {"io_group": 1, "io_channel": 5, "chip_id": 11, "packet_type": 3},          # config read
        {"io_group": 1, "packet_type": 6, "trigger_type": S, **bad},
        {"io_group": 1, "packet_type": 7, **bad}, {"io_group": 0, "packet_type": 5, **bad},
    )), "f")
    errors = {dict(k)["io_channel"]: v
              for k, v in named(scrape(detector), "larpix_parity_errors_total").items()}
    assert errors == {"2": 3, "5": 1}


def test_fifo_flag_bits():
    detector = DetectorMetrics()
    detector.update(chunk(packets(
        ts(1, 10),
        data(1, local_fifo=1), data(1, local_fifo=2), data(1, local_fifo=3), data(1),
        data(1, shared_fifo=1), data(1, shared_fifo=3), data(1, shared_fifo=3, local_fifo=1),
        {"io_group": 1, "io_channel": 1, "chip_id": 11, "packet_type": 3, "local_fifo": 3},
    )), "f")
    flags = {(dict(k)["fifo"], dict(k)["level"]): v
             for k, v in named(scrape(detector), "larpix_fifo_flags_total").items()}
    assert flags == {("local", "half"): 3, ("local", "full"): 2,
                     ("shared", "half"): 3, ("shared", "full"): 2}


def test_parity_and_fifo_flags_of_the_same_rows():
    detector = DetectorMetrics()
    detector.update(chunk(packets(
        ts(1, 10),
        data(1, valid_parity=255), data(1, valid_parity=255, local_fifo=1),
        data(1, valid_parity=0, shared_fifo=2), data(1, local_fifo=4), data(1, valid_parity=0),
    )), "f")
    s = scrape(detector)
    errors = {dict(k)["io_channel"]: v for k, v in named(s, "larpix_parity_errors_total").items()}
    flags = {(dict(k)["fifo"], dict(k)["level"]): v
             for k, v in named(s, "larpix_fifo_flags_total").items() if v}
    assert errors == {"1": 2}
    assert flags == {("local", "half"): 1, ("shared", "full"): 1}


def test_readout_delay_of_timestamps_past_31_bits():
    """receipt_timestamp mod 2**31 - timestamp, computed without wrapping."""
    detector = DetectorMetrics()
    detector.update(chunk(packets(
        ts(1, 10),
        data(1, timestamp=(1 << 31) + 5, receipt_timestamp=100),
        data(1, timestamp=1 << 40, receipt_timestamp=(1 << 31) + 7),
        data(1, timestamp=3, receipt_timestamp=4),
    )), "f")
    s = scrape(detector)
    delays = (100 - (1 << 31) - 5, 7 - (1 << 40), 1)
    assert value(s, "larpix_readout_delay_ticks_sum", io_group="1") == sum(delays)
    buckets = named(s, "larpix_readout_delay_ticks_bucket")
    assert all(count == sum(d <= float(dict(k)["le"]) for d in delays)
               for k, count in buckets.items())


def test_adc_and_readout_delay_histograms_by_hand():
    detector = DetectorMetrics()
    detector.update(chunk(packets(
        ts(1, 10),
        data(1, dataword=0, timestamp=40, receipt_timestamp=(1 << 31) + 100),   # delay 60
        data(1, dataword=7, timestamp=10, receipt_timestamp=5),                 # delay -5
        data(1, dataword=8, timestamp=0, receipt_timestamp=3),                  # delay 3
        data(1, dataword=255, timestamp=0, receipt_timestamp=4),                # delay 4
    )), "f")
    detector.update(chunk(packets(ts(2, 10), data(2, dataword=9)), receipts=False), "g")
    s = scrape(detector)
    adc = {dict(k)["le"]: v for k, v in named(s, "larpix_adc_bucket").items()
           if dict(k)["io_group"] == "1"}
    assert adc["7.5"] == 2 and adc["15.5"] == 3 and adc["247.5"] == 3 and adc["+Inf"] == 4
    assert value(s, "larpix_adc_sum", io_group="1") == 270
    assert value(s, "larpix_adc_count", io_group="2") == 1
    delay = {float(dict(k)["le"]): v for k, v in named(s, "larpix_readout_delay_ticks_bucket")
             .items()}
    assert all(count == sum(d <= le for d in (60, -5, 3, 4)) for le, count in delay.items())
    assert value(s, "larpix_readout_delay_ticks_sum", io_group="1") == 62
    assert value(s, "larpix_readout_delay_ticks_count", io_group="2") is None


def test_sync_types_offset_and_unknown_packet_type():
    detector = DetectorMetrics()
    detector.update(chunk(packets(
        ts(3, 10),
        {"io_group": 3, "packet_type": 6, "trigger_type": S, "timestamp": 10_000_007},
        {"io_group": 3, "packet_type": 6, "trigger_type": S, "timestamp": 9_999_990},
        {"io_group": 3, "packet_type": 6, "trigger_type": ord("H"), "timestamp": 1},
        {"io_group": 3, "packet_type": 6, "trigger_type": 7},
        {"io_group": 3, "packet_type": 12},
    )), "f")
    s = scrape(detector)
    assert named(s, "larpix_sync_packets_total") == {
        (("io_group", "3"), ("sync_type", "S")): 2, (("io_group", "3"), ("sync_type", "H")): 1,
        (("io_group", "3"), ("sync_type", "7")): 1}
    assert value(s, "larpix_sync_offset_ticks", io_group="3") == -10
    assert value(s, "larpix_packets_total", io_group="3", io_channel="0",
                 packet_type="unknown") == 1


def test_hot_and_active_channels_over_complete_seconds():
    detector = DetectorMetrics(rate_window=2, hot_rate=20)
    hits = [data(1, 4, 20, channel_id=9)] * 21 + [data(1, 4, 20, channel_id=10)] * 19
    detector.update(chunk(packets(ts(1, 99), *hits * 5,       # outside the window
                                  ts(1, 100), *hits, data(1, 5, 30, channel_id=63),
                                  ts(1, 101), *hits,
                                  ts(1, 102), *hits * 9)), "f")   # current second: not yet
    s = scrape(detector)
    assert value(s, "larpix_active_channels", io_group="1") == 3
    assert value(s, "larpix_hot_channels", io_group="1") == 1      # 42 / 2 s = 21 Hz
    assert value(s, "larpix_packet_rate_hz", io_group="1", packet_type="data") == 81 / 2


def test_data_time_is_carried_per_file_across_chunks():
    detector = DetectorMetrics(rate_window=1)
    detector.update(chunk(packets(ts(1, 200), data(1))), "a")
    detector.update(chunk(packets(data(1), data(1))), "b")         # b: no time yet
    detector.update(chunk(packets(data(1, 2), data(1, 2))), "a")   # a: still second 200
    detector.update(chunk(packets(ts(1, 201))), "a")
    s = scrape(detector)
    assert value(s, "larpix_packet_rate_hz", io_group="1", packet_type="data") == 3
    assert value(s, "larpix_packets_total", io_group="1", io_channel="1",
                 packet_type="data") == 3

    detector.forget("a")
    detector.update(chunk(packets(data(1, 7), ts(1, 202))), "a")   # before a's new first stamp
    s = scrape(detector)
    assert value(s, "larpix_packet_rate_hz", io_group="1", packet_type="data") == 0


# -- snapshot consistency and health --------------------------------------------------------

def test_scrape_never_sees_half_an_update():
    rows = packets(ts(1, 10), *[data(1, c % 8 + 1, 11 + c % 5, dataword=c % 256)
                                for c in range(4999)])
    detector = DetectorMetrics()
    registry = build_registry(detector, MonitorHealth())
    done = threading.Event()

    def feed():
        for _ in range(150):
            detector.update(chunk(rows), "f")
        done.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    scrapes = 0
    while not done.is_set() or scrapes < 3:
        text = (exposition(registry)[0] if scrapes % 2 else generate_latest(registry)).decode()
        s = parse(text)
        total = sum(named(s, "larpix_packets_total").values())
        data_total = sum(named(s, "larpix_data_packets_total").values())
        adc_total = sum(named(s, "larpix_adc_count").values())
        assert total % len(rows) == 0
        assert data_total == adc_total == total * 4999 / 5000
        scrapes += 1
    feeder.join()
    assert sum(named(scrape(detector), "larpix_packets_total").values()) == 150 * len(rows)


def test_monitor_health_metrics():
    health = MonitorHealth(version="9.9.9")
    health.count_rows("packet", 100, 3600)
    health.count_rows("packet", 20, 720)
    health.count_rows("raw", 5, 999)
    health.count_read_error("not_hdf5")
    health.count_read_error("malformed_message", 3)
    health.count_reset()
    health.set_files({"active": 2, "error": 1})
    health.set_ingest_lag(1.5)
    health.mark_ingest(1_700_000_000.25)
    health.count_retry("busy")
    for seconds in (0.004, 0.3, 0.3, 120.0):
        health.observe_render("PixelMap", seconds)
    health.count_plot_error("Broken")
    s = scrape(DetectorMetrics(), health)
    assert named(s, "larpix_monitor_rows_read_total") == {
        (("format", "packet"),): 120, (("format", "raw"),): 5}
    assert value(s, "larpix_monitor_bytes_read_total") == 5319
    assert named(s, "larpix_monitor_read_errors_total") == {
        (("reason", "not_hdf5"),): 1, (("reason", "malformed_message"),): 3}
    assert value(s, "larpix_monitor_read_retries_total", reason="busy") == 1
    assert value(s, "larpix_monitor_file_resets_total") == 1
    assert value(s, "larpix_monitor_files", state="active") == 2
    assert value(s, "larpix_monitor_ingest_lag_seconds") == 1.5
    assert value(s, "larpix_monitor_last_ingest_timestamp_seconds") == 1_700_000_000.25
    render = {float(dict(k)["le"]): v for k, v in
              named(s, "larpix_monitor_plot_render_seconds_bucket").items()}
    assert all(count == sum(t <= le for t in (0.004, 0.3, 0.3, 120.0))
               for le, count in render.items())
    assert value(s, "larpix_monitor_plot_render_seconds_sum", plot="PixelMap") == pytest.approx(
        120.604)
    assert value(s, "larpix_monitor_plot_errors_total", plot="Broken") == 1
    assert value(s, "larpix_monitor_build_info", version="9.9.9") == 1


def test_rejects_other_dtypes_and_too_short_windows():
    with pytest.raises(TypeError):
        DetectorMetrics().update(Chunk(np.zeros(3, [("io_group", "u1")]), 3, 3, "packet", False),
                                 "f")
    for width in (0.5, 121):
        with pytest.raises(ValueError, match="rate window"):
            DetectorMetrics(rate_window=width)
