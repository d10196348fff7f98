"""The simulator's files, read back with larpix-control itself.

Expected values come from larpix-control's packet objects (``from_rawfile`` +
``pacman_msg_format.parse``, ``hdf5format.from_file``) counted here with plain
Python, never from the simulator's own tally.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

import h5py
import numpy as np
import pytest
from larpix import Packet_v2, SyncPacket, TimestampPacket, TriggerPacket
from larpix.format import hdf5format, pacman_msg_format, rawhdf5format
from larpix.larpix import MessagePacket
from support.larpix import raw_file_packets
from support.waiting import wait_for

from exporter import cli
from exporter.simulate import LiveSimulation, simulate_file, truth_path
from exporter.simulate.detector import SimConfig, channel_population

TYPE_NAMES = ["data", "test", "config_write", "config_read", "timestamp", "message", "sync",
              "trigger"]
SEED = 11
SECONDS = 14


def from_file_with_timestamp_io_groups(path, raw_path) -> list:
    """``from_file`` packets; it drops the io_group of timestamp packets, so take those
    from larpix-control's parse of the raw file of the same run."""
    packets = hdf5format.from_file(str(path), start=0)["packets"]
    timestamps = [p for p in raw_file_packets(raw_path) if isinstance(p, TimestampPacket)]
    in_file = [p for p in packets if isinstance(p, TimestampPacket)]
    assert [p.timestamp for p in in_file] == [p.timestamp for p in timestamps]
    for ours, theirs in zip(in_file, timestamps, strict=True):
        ours.io_group = theirs.io_group
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
    metrics = {name: {k: v for k, v in c.items() if v} for name, c in m.items()}
    return {"metrics": {name: series for name, series in metrics.items() if series},
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
    packets = raw_file_packets(d / "run.raw.h5")
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
    hdf5format.to_file(str(converted), raw_file_packets(d / "run.raw.h5"), workers=1)
    with h5py.File(d / "run.h5", "r") as ours, h5py.File(converted, "r") as theirs:
        rows = ours["packets"][:]
        assert ours["packets"].dtype == theirs["packets"].dtype
        assert rows[0]["packet_type"] == rows[-1]["packet_type"] == 5
        np.testing.assert_array_equal(rows[1:-1], theirs["packets"][:])


def test_packet_truth_equals_counts_of_larpix_packets(raw_and_packet):
    d, raw_truth, truth = raw_and_packet
    packets = from_file_with_timestamp_io_groups(d / "run.h5", d / "run.raw.h5")
    expected = expected_truth(packets)
    assert truth["packets"] == truth["rows"] == len(packets)
    assert as_keyed(truth["metrics"]) == expected["metrics"]
    assert truth["adc_counts"] == expected["adc_counts"] == raw_truth["adc_counts"]
    assert truth["readout_delay_counts"] == expected["readout_delay_counts"]
    assert sum(isinstance(p, MessagePacket) for p in packets) == 2


# --- the same packets, however the file is written ---------------------------------------


@pytest.mark.parametrize("fmt", ["packet", "raw"])
def test_live_appends_give_the_same_file_and_truth_as_writing_at_once(tmp_path, fmt):
    at_once = simulate_file(tmp_path / "once.h5", fmt, seconds=12, seed=4, rate=1500.0)
    with LiveSimulation(tmp_path / "live.h5", fmt, seed=4, rate=1500.0, flush_rows=400) as live:
        for n in (1, 3, 1, 5, 2):
            live.append(n)
            on_disk = json.loads(truth_path(tmp_path / "live.h5").read_text())
            assert on_disk["packets"] == live.truth["packets"]
            assert on_disk["rows"] == _rows_in_file(tmp_path / "live.h5", fmt)
    assert json.loads(truth_path(tmp_path / "live.h5").read_text()) == at_once
    if fmt == "packet":
        with h5py.File(tmp_path / "once.h5") as a, h5py.File(tmp_path / "live.h5") as b:
            np.testing.assert_array_equal(a["packets"][:], b["packets"][:])
            np.testing.assert_array_equal(a["messages"][:], b["messages"][:])
    else:
        a = rawhdf5format.from_rawfile(str(tmp_path / "once.h5"))
        b = rawhdf5format.from_rawfile(str(tmp_path / "live.h5"))
        assert a["msgs"] == b["msgs"] and a["msg_headers"] == b["msg_headers"]


def _rows_in_file(path, fmt) -> int:
    with h5py.File(path, "r", locking=False) as f:
        return len(f["packets" if fmt == "packet" else "msgs"])


def test_same_seed_same_packets_other_seed_other_packets(tmp_path):
    def rows(name, seed):
        simulate_file(tmp_path / name, "packet", n_packets=3000, seed=seed)
        with h5py.File(tmp_path / name) as f:
            return f["packets"][:]

    first, again, other = rows("a.h5", 1), rows("b.h5", 1), rows("c.h5", 2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first["dataword"], other["dataword"])


@pytest.mark.parametrize("fmt", ["packet", "raw"])
def test_n_packets_is_exact(tmp_path, fmt):
    truth = simulate_file(tmp_path / "n.h5", fmt, n_packets=4321, seed=3, words_per_message=100)
    if fmt == "raw":
        packets = raw_file_packets(tmp_path / "n.h5")
    else:
        packets = hdf5format.from_file(str(tmp_path / "n.h5"), start=0)["packets"]
    assert len(packets) == truth["packets"] == 4321
    by_type = Counter()
    for labels, n in as_keyed(truth["metrics"])["larpix_packets_total"].items():
        by_type[labels[2]] += n
    assert by_type == Counter(TYPE_NAMES[p.packet_type] for p in packets)


# --- the layout larpix-control writes ------------------------------------------------------


def _describe(obj) -> dict:
    """Structure of an HDF5 file: datasets' dtype, maxshape, chunks, filters; attribute names."""
    out = {}

    def visit(name, item):
        attrs = sorted(item.attrs.keys())
        if isinstance(item, h5py.Dataset):
            out[name] = (item.dtype, item.maxshape, item.chunks, item.compression, attrs)
        else:
            out[name] = attrs

    obj.visititems(visit)
    return out


def test_packet_file_layout_is_larpix_controls(tmp_path):
    with LiveSimulation(tmp_path / "ours.h5", "packet", seed=2) as live:
        live.append(1)
        first_flush = live.truth["rows"]
    packets = hdf5format.from_file(str(tmp_path / "ours.h5"), start=0)["packets"]
    theirs = tmp_path / "theirs.h5"
    hdf5format.to_file(str(theirs), packets[:first_flush], workers=1)
    hdf5format.to_file(str(theirs), packets[first_flush:], workers=1)
    with h5py.File(tmp_path / "ours.h5") as a, h5py.File(theirs) as b:
        assert _describe(a) == _describe(b)
        assert a["packets"].attrs["packet_types"] == b["packets"].attrs["packet_types"]
        assert a["_header"].attrs["version"] == b["_header"].attrs["version"] == "2.4"
        np.testing.assert_array_equal(a["packets"]["packet_type"], b["packets"]["packet_type"])
        messages = a["messages"][:]
    assert [m.decode() for m in messages["message"]] == ["run start", "run end"]
    assert messages["index"].tolist() == [0, 1]


def test_raw_file_layout_is_larpix_controls(tmp_path):
    simulate_file(tmp_path / "ours.h5", "raw", seconds=3, seed=2)
    raw = rawhdf5format.from_rawfile(str(tmp_path / "ours.h5"))
    theirs = str(tmp_path / "theirs.h5")
    rawhdf5format.to_rawfile(theirs, raw["msgs"][:5], msg_headers={
        "io_groups": raw["msg_headers"]["io_groups"][:5]}, io_version="0.0")
    rawhdf5format.to_rawfile(theirs, raw["msgs"][5:], msg_headers={
        "io_groups": raw["msg_headers"]["io_groups"][5:]})
    with h5py.File(tmp_path / "ours.h5") as a, h5py.File(theirs) as b:
        assert _describe(a) == _describe(b)
        assert a["meta"].attrs["version"] == b["meta"].attrs["version"] == "0.0"
    assert rawhdf5format.from_rawfile(theirs)["msgs"] == raw["msgs"]
    # Every message is a PACMAN data message whose header counts its words.
    for msg in raw["msgs"]:
        kind, _, n_words = pacman_msg_format.parse_header(msg)
        assert kind == "DATA" and len(msg) == 8 + 16 * n_words


@pytest.mark.parametrize("version", ["2.2", "2.3"])
def test_older_versions_are_what_larpix_control_writes(tmp_path, version):
    truth = simulate_file(tmp_path / "old.h5", "packet", seconds=4, seed=6, version=version)
    simulate_file(tmp_path / "raw.h5", "raw", seconds=4, seed=6)
    converted = tmp_path / "converted.h5"
    hdf5format.to_file(str(converted), raw_file_packets(tmp_path / "raw.h5"),
                       version=version, workers=1)
    with h5py.File(tmp_path / "old.h5") as ours, h5py.File(converted) as theirs:
        rows = ours["packets"][:]
        assert ours["_header"].attrs["version"] == version
        assert ("receipt_timestamp" in rows.dtype.names) == (version >= "2.3")
        for name in rows.dtype.names:
            np.testing.assert_array_equal(rows[name][1:-1], theirs["packets"][name], name)
    if version == "2.3":
        packets = from_file_with_timestamp_io_groups(tmp_path / "old.h5", tmp_path / "raw.h5")
    else:    # before 2.3 every timestamp packet is stored, and read back, in io_group 0
        packets = hdf5format.from_file(str(tmp_path / "old.h5"), start=0)["packets"]
        assert truth["readout_delay_counts"] == {}
    expected = expected_truth(packets)
    assert as_keyed(truth["metrics"]) == expected["metrics"]
    assert truth["adc_counts"] == expected["adc_counts"]
    assert truth["readout_delay_counts"] == expected["readout_delay_counts"]


# --- what the simulated detector looks like -------------------------------------------------


@pytest.fixture(scope="module")
def raw_packets(raw_and_packet):
    d, truth, _ = raw_and_packet
    return raw_file_packets(d / "run.raw.h5"), truth


def test_one_timestamp_packet_per_message_and_messages_of_one_io_group(raw_and_packet):
    d, _, _ = raw_and_packet
    raw = rawhdf5format.from_rawfile(str(d / "run.raw.h5"))
    groups = raw["msg_headers"]["io_groups"]
    assert set(groups) == {1, 2}
    assert groups != sorted(groups)     # the io_groups' messages interleave
    n_timestamps = 0
    for msg, group in zip(raw["msgs"], groups, strict=True):
        packets = pacman_msg_format.parse(msg, io_group=group)
        assert isinstance(packets[0], TimestampPacket)
        n_timestamps += sum(isinstance(p, TimestampPacket) for p in packets)
        assert {p.io_group for p in packets} == {group}
    assert n_timestamps == len(raw["msgs"]) > 2 * SECONDS   # many messages per second
    assert max(pacman_msg_format.parse_header(m)[2] for m in raw["msgs"]) == 250


def test_non_larpix_rows_have_io_channel_0_and_messages_io_group_0(raw_and_packet):
    d, _, _ = raw_and_packet
    with h5py.File(d / "run.h5") as f:
        rows = f["packets"][:]
    kind = rows["packet_type"]
    assert set(np.unique(kind).tolist()) == {0, 2, 3, 4, 5, 6, 7}
    assert (rows["io_channel"][kind >= 4] == 0).all()
    assert (rows["io_group"][kind == 5] == 0).all()
    assert (rows["io_group"][kind != 5] > 0).all()
    assert (rows["valid_parity"][kind >= 4] == 0).all()


def test_channels_chips_and_tiles(raw_packets):
    packets, _ = raw_packets
    data = [p for p in packets if isinstance(p, Packet_v2) and p.packet_type == 0]
    assert {p.io_channel for p in data} == set(range(1, 33))
    assert {p.chip_id for p in data} == set(range(11, 111))
    assert {p.channel_id for p in data} == set(range(64))
    chips_of = defaultdict(set)
    for p in data:
        chips_of[p.io_group, p.io_channel].add(p.chip_id)
    # The 100 chips of a tile are spread over its 4 io_channels, each chip on one of them.
    for group in (1, 2):
        for tile in range(8):
            sets = [chips_of[group, 4 * tile + k] for k in range(1, 5)]
            assert set().union(*sets) == set(range(11, 111))
            assert sum(map(len, sets)) == 100


def test_adc_is_a_pedestal_with_a_signal_tail(raw_packets):
    packets, _ = raw_packets
    adc = np.array([p.dataword for p in packets if isinstance(p, Packet_v2) and p.packet_type == 0])
    assert 70 <= np.median(adc) <= 80
    core = adc[np.abs(adc - 75) < 20]
    assert 3 < core.std() < 9       # noise within a channel, pedestals scattered by chip
    assert 0.03 < np.mean(adc > 110) < 0.15


def test_hot_channels_fire_at_100_hz_and_dead_ones_never(raw_packets):
    packets, truth = raw_packets
    counts = Counter((p.io_group, p.io_channel, p.chip_id, p.channel_id) for p in packets
                     if isinstance(p, Packet_v2) and p.packet_type == 0)
    hot = sorted(k for k, n in counts.items() if n / SECONDS >= 100)
    assert len(hot) == 6     # 3 per io_group
    assert all(n / SECONDS < 5 for k, n in counts.items() if k not in hot)
    config = SimConfig(seed=SEED)
    for group in (1, 2):
        population = channel_population(config, group)
        dead = {(group, int(population.io_channel[i]), int(population.chip_id[i]),
                 int(population.channel_id[i])) for i in population.dead}
        assert len(dead) > 500 and not dead & set(counts)
    assert as_keyed(truth["metrics"])["larpix_hot_channels"] == {("1",): 3, ("2",): 3}


def test_parity_errors_fifo_flags_and_readout_delays(raw_packets):
    packets, _ = raw_packets
    words = [p for p in packets if isinstance(p, Packet_v2)]
    bad = sum(not p.has_valid_parity() for p in words)
    assert 0.3e-3 < bad / len(words) < 3e-3
    data = [p for p in words if p.packet_type == 0]
    for fifo in ("local_fifo", "shared_fifo"):
        values = Counter(getattr(p, fifo) for p in data)
        assert set(values) == {0, 1, 2, 3} and values[0] > 0.95 * len(data)
    delays = [p.receipt_timestamp % 2**31 - p.timestamp for p in data]
    assert 0 < min(delays) and max(delays) < 20_000
    assert all(p.timestamp < 2**31 for p in data)


def test_parity_burst(tmp_path):
    simulate_file(tmp_path / "burst.raw.h5", "raw", seconds=6, seed=1, parity_burst=(2, 2, 0.2))
    by_second = defaultdict(Counter)
    second = None
    for p in raw_file_packets(tmp_path / "burst.raw.h5"):
        if isinstance(p, TimestampPacket):
            second = p.timestamp - SimConfig().start_time
        elif isinstance(p, Packet_v2):
            by_second[second][p.has_valid_parity()] += 1
    fraction = {s: c[False] / (c[False] + c[True]) for s, c in by_second.items()}
    assert all(0.15 < fraction[s] < 0.25 for s in (2, 3))
    assert all(fraction[s] < 0.01 for s in (0, 1, 4, 5))


def test_syncs_heartbeats_triggers_and_config_reads(raw_packets):
    packets, truth = raw_packets
    start = SimConfig().start_time
    second, per_second = {}, defaultdict(Counter)
    offsets = defaultdict(list)
    for p in packets:
        if isinstance(p, TimestampPacket):
            second[p.io_group] = p.timestamp - start
        elif isinstance(p, SyncPacket):
            per_second[p.io_group, second[p.io_group]][p.sync_type] += 1
            if p.sync_type == b"S":
                offsets[p.io_group].append(p.timestamp - 10_000_000)
        elif isinstance(p, TriggerPacket):
            per_second[p.io_group, second[p.io_group]]["T"] += 1
        elif p.packet_type in (2, 3):
            per_second[p.io_group, second[p.io_group]]["config"] += 1
            per_second[p.io_group, second[p.io_group]][p.packet_type, p.downstream_marker] += 1
    for group in (1, 2):
        seconds = [per_second[group, s] for s in range(SECONDS)]
        gaps = [s for s in range(SECONDS) if seconds[s][b"S"] == 0]
        assert 1 <= len(gaps) <= 3 and all(c[b"S"] <= 1 for c in seconds)
        assert 0 < sum(c[b"H"] for c in seconds) < SECONDS
        assert 10 < sum(c["T"] for c in seconds) < 100
        # run start: 50 reads and 50 writes; then about 2 config packets a second
        assert 100 <= seconds[0]["config"] < 120
        assert 0 < sum(c["config"] for c in seconds[1:]) < 6 * (SECONDS - 1)
        assert all(sum(c[op, down] for c in seconds) > 0 for op in (2, 3) for down in (0, 1))
        assert all(0 < o < 100 for o in offsets[group]) and len(set(offsets[group])) > 1


# --- live writing: real time, concurrent readers, the command line --------------------------


@pytest.mark.parametrize("fmt", ["packet", "raw"])
def test_concurrent_reader_never_disturbs_the_live_writer(tmp_path, fmt):
    path = tmp_path / f"live-{fmt}.h5"
    live = LiveSimulation(path, fmt, rate=2000.0, seed=8, words_per_message=50)
    failures = []

    def write():
        try:
            live.append(15)
            live.close()
        except Exception as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    while writer.is_alive() or reads == 0:
        try:
            rows = _rows_in_file(path, fmt)
            truth = json.loads(truth_path(path).read_text())
        except (OSError, KeyError):
            continue     # not created yet, or caught mid-write: the next poll sees it
        assert truth["rows"] <= rows
        reads += 1
    writer.join()
    assert failures == [] and reads > 1
    assert _rows_in_file(path, fmt) == json.loads(truth_path(path).read_text())["rows"]


def test_real_time_run_stamps_wall_clock_seconds(tmp_path):
    path = tmp_path / "paced.h5"
    stop = threading.Event()
    began = time.time()
    truth = LiveSimulation(path, "packet", rate=400.0, seed=1).run(duration=2, stop=stop)
    elapsed = time.time() - began
    with h5py.File(path) as f:
        rows = f["packets"][:]
    stamps = rows["timestamp"][rows["packet_type"] == 4]
    assert 1.0 <= elapsed < 6
    assert int(began) <= stamps.min() and stamps.max() <= began + elapsed
    assert len(np.unique(stamps)) == 2
    assert truth["rows"] == len(rows) and rows[-1]["packet_type"] == 5


def test_real_time_run_stops_when_asked(tmp_path):
    stop = threading.Event()
    live = LiveSimulation(tmp_path / "stopped.h5", "raw", rate=400.0)
    runner = threading.Thread(target=live.run, kwargs={"stop": stop})
    runner.start()
    wait_for(lambda: live.seconds_written >= 1, 10, "the first second written")
    stop.set()
    runner.join(timeout=5)
    assert not runner.is_alive() and live.closed and live.seconds_written >= 1


def test_simulate_command_in_a_subprocess(tmp_path):
    path = tmp_path / "cli.raw.h5"
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "simulate", str(path), "--format", "raw",
         "--rate", "300", "--duration", "2", "--seed", "3"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert str(path) in done.stdout and str(truth_path(path)) in done.stdout
    truth = json.loads(truth_path(path).read_text())
    assert truth["packets"] == len(raw_file_packets(path))


def test_simulate_command_static_file(tmp_path, capsys):
    path = tmp_path / "cli.h5"
    assert cli.main(["simulate", str(path), "--packets", "5000", "--seed", "2"]) == 0
    assert len(hdf5format.from_file(str(path), start=0)["packets"]) == 5000
    assert "wrote 5000 packets" in capsys.readouterr().out


@pytest.mark.parametrize("argv, reason", [
    (["{tmp}/missing/x.h5"], "does not exist"),
    (["{tmp}"], "is a directory"),
    (["{tmp}/x.h5", "--packets", "2"], "at least 3"),
    (["{tmp}/x.h5", "--packets", "100", "--rate", "-5"], "rate must be positive"),
])
def test_simulate_command_bad_arguments(tmp_path, capsys, argv, reason):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert cli.main(["simulate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and argv[0] in err and reason in err
