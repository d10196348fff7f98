"""The per-channel table against the simulator's truth and hand-made packets."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.metrics import ChannelTable, DetectorMetrics
from exporter.metrics.channels import QUIET_MIN_CHIP_MEDIAN
from exporter.metrics.packed import PACKED_ROWS
from exporter.packets import DATA, PACKET_DTYPE, TIMESTAMP, Chunk
from exporter.simulate import simulate_file
from exporter.source.reader import FileReader

COLUMNS = ("count", "adc_mean", "adc_rms", "parity_errors", "fifo_half", "fifo_full",
           "rate_hz")


def chunk(rows: np.ndarray) -> Chunk:
    return Chunk(rows, len(rows), rows.nbytes, "packet", False)


def second_of(io_group: int, second: int, data: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A timestamp packet then data packets (io_channel, chip_id, channel_id, dataword)."""
    rows = np.zeros(1 + len(data), PACKET_DTYPE)
    rows["io_group"] = io_group
    rows[0]["packet_type"] = TIMESTAMP
    rows[0]["timestamp"] = second
    for name, column in zip(("io_channel", "chip_id", "channel_id", "dataword"),
                            np.array(data, np.int64).reshape(-1, 4).T, strict=True):
        rows[name][1:] = column
    rows["packet_type"][1:] = DATA
    rows["valid_parity"][1:] = 1
    return rows


def by_channel(table: ChannelTable) -> dict[tuple, dict]:
    return {(int(table.io_group[i]), int(table.io_channel[i]), int(table.chip_id[i]),
             int(table.channel_id[i])): {c: getattr(table, c)[i].item() for c in table.COLUMNS}
            for i in range(len(table))}


@pytest.mark.parametrize(("fmt", "version"), [("packet", "2.4"), ("raw", "2.4")])
def test_every_column_equals_the_truth(tmp_path, fmt, version):
    path = tmp_path / f"run.{fmt}.h5"
    truth = simulate_file(path, fmt, seconds=16, version=version, seed=8, rate=5000.0)
    detector = DetectorMetrics(truth["rate_window"], truth["hot_rate"])
    for part in FileReader(path, chunk_rows=7_000).read_new():
        detector.update(part, str(path))
    table = detector.channel_table()
    assert table.file == str(path)
    rows = by_channel(table)
    expected = truth["channels"]
    keys = list(zip(expected["io_group"], expected["io_channel"], expected["chip_id"],
                    expected["channel_id"], strict=True))
    assert list(rows) == keys          # one row per channel seen, in channel order
    for i, key in enumerate(keys):
        row = rows[key]
        for column in COLUMNS:
            assert row[column] == pytest.approx(expected[column][i], rel=1e-12, abs=1e-12), (
                key, column)
        assert row["tile"] == (key[1] - 1) // 4 + 1
        assert (row["status"] == "hot") == expected["hot"][i]
    assert sum(expected["hot"]) == 6 and list(table.status).count("hot") == 6


def test_histograms_never_wrap_and_survive_a_checkpoint():
    detector = DetectorMetrics(10, 1e9)
    n = 3 * 2**16 + 5                      # one bin: far past what uint16 holds
    rows = second_of(1, 100, [(1, 11, 7, 90)] * n + [(1, 11, 7, 91)] * 3 + [(2, 12, 0, 5)])
    for start in range(0, len(rows), 50_000):
        detector.update(chunk(rows[start:start + 50_000]), "a.h5")
    table = detector.channel_table(histograms=True)
    assert by_channel(table)[1, 1, 11, 7]["count"] == n + 3
    histogram = table.adc_histogram[0]
    assert histogram[90] == n and histogram[91] == 3 and histogram.sum() == n + 3
    assert table.adc_histogram[1][5] == 1

    restored = DetectorMetrics(10, 1e9)
    restored.channels.restore(detector.channels.checkpoint())
    again = restored.channel_table("a.h5", histograms=True)
    np.testing.assert_array_equal(again.adc_histogram, table.adc_histogram)
    for column in ChannelTable.NUMERIC:
        np.testing.assert_array_equal(getattr(again, column), getattr(table, column))
    restored.update(chunk(second_of(1, 101, [(1, 11, 7, 90)] * 10)), "a.h5")
    assert restored.channel_table(histograms=True).adc_histogram[0][90] == n + 10


def test_quiet_compared_with_its_chip_and_hot_above_the_rate():
    detector = DetectorMetrics(2, 30)
    median = QUIET_MIN_CHIP_MEDIAN
    data = [(1, 11, ch, 70) for ch in range(1, 64) for _ in range(median)]
    data += [(1, 11, 0, 70)] * (median // 10 - 1)                    # quiet
    data += [(1, 12, ch, 70) for ch in range(64) for _ in range(median - 1)]
    data += [(2, 13, 0, 70)]                                          # a chip too small
    seconds = [second_of(1, 10, data), second_of(1, 11, [(3, 14, 9, 80)] * 61),
               second_of(1, 12, [(3, 14, 9, 80)] * 62), second_of(1, 13, [])]
    for rows in seconds:
        detector.update(chunk(rows), "b.h5")
    rows = by_channel(detector.channel_table())
    assert rows[1, 1, 11, 0]["status"] == "quiet"
    assert {rows[1, 1, 11, ch]["status"] for ch in range(1, 64)} == {"ok"}
    assert {rows[1, 1, 12, ch]["status"] for ch in range(64)} == {"ok"}   # median 49: unjudged
    assert rows[1, 2, 13, 0]["status"] == "ok"
    assert rows[1, 3, 14, 9]["rate_hz"] == (61 + 62) / 2 and rows[1, 3, 14, 9]["status"] == "hot"


def test_one_table_per_file_and_the_window_stays_with_its_file():
    detector = DetectorMetrics(2, 1e9)
    for s in range(10, 14):
        detector.update(chunk(second_of(1, s, [(1, 11, 0, 60)] * (s - 9))), "old.h5")
    for s in range(20, 24):
        detector.update(chunk(second_of(1, s, [(2, 12, 1, 61)] * 5)), "new.h5")
    assert detector.channels.sources() == ["new.h5", "old.h5"]
    new, old = detector.channel_table(), detector.channel_table("old.h5")
    assert new.file == "new.h5" and by_channel(new).keys() == {(1, 2, 12, 1)}
    assert by_channel(old)[1, 1, 11, 0]["count"] == 1 + 2 + 3 + 4
    assert by_channel(old)[1, 1, 11, 0]["rate_hz"] == (2 + 3) / 2     # seconds 11, 12 of 13
    assert by_channel(new)[1, 2, 12, 1]["rate_hz"] == 5.0
    detector.retire("old.h5")                                        # read to its end
    detector.update(chunk(second_of(2, 5, [(1, 11, 0, 60)])), "third.h5")
    assert detector.channels.sources() == ["third.h5", "new.h5"]      # two files kept
    assert detector.channel_table("old.h5") is None
    detector.forget("new.h5")
    assert detector.channels.sources() == ["third.h5"]


def test_a_file_waits_for_a_table_rather_than_empty_one_being_filled():
    """Three files counted in turns with two tables: the third waits (it would have taken a
    table whose file is still being read, and that file's rows counted so far with it). When
    a file is read to its end, the waiting one gets its table and its rows so far are counted
    in again (``count_channels``, as the ingest loop's replay does): every table served
    holds every row of its file, and the totals count every row once throughout."""
    detector = DetectorMetrics(2, 1e9)
    sent: dict[str, list[np.ndarray]] = {"a.h5": [], "b.h5": [], "c.h5": []}
    chips = {"a.h5": (1, 11), "b.h5": (2, 12), "c.h5": (3, 13)}

    def send(source: str, second: int, n: int) -> None:
        io_channel, chip_id = chips[source]
        rows = second_of(1, second, [(io_channel, chip_id, k % 64, 50 + k % 7) for k in range(n)])
        sent[source].append(rows)
        detector.update(chunk(rows), source)

    def recount(source: str) -> dict[tuple, int]:
        data = np.concatenate(sent[source])
        data = data[data["packet_type"] == DATA]
        keys, counts = np.unique(data[["io_group", "io_channel", "chip_id", "channel_id"]],
                                 return_counts=True)
        return {tuple(int(v) for v in key): int(c) for key, c in zip(keys, counts, strict=True)}

    def table_counts(source: str) -> dict[tuple, int]:
        return {key: row["count"] for key, row in by_channel(
            detector.channel_table(source)).items()}

    for second in range(10, 16):
        for n, source in enumerate(sent, start=1):
            send(source, second, 70 * n + second)
    assert detector.channels.sources() == ["b.h5", "a.h5"]
    assert detector.channel_table("c.h5") is None and "c.h5" in detector.channels.waiting
    assert table_counts("a.h5") == recount("a.h5")
    assert table_counts("b.h5") == recount("b.h5")
    assert not detector.grant_table("c.h5")                      # a and b are being read

    detector.retire("b.h5")
    assert detector.grant_table("c.h5")
    assert detector.channel_table("b.h5") is None and "b.h5" in detector.channels.waiting
    replay = list(sent["c.h5"])
    send("c.h5", 16, 40)                                         # live rows, during the replay
    for rows in replay:
        detector.count_channels(chunk(rows), "c.h5")
    send("a.h5", 16, 30)
    assert table_counts("c.h5") == recount("c.h5")
    assert table_counts("a.h5") == recount("a.h5")
    packets = detector.snapshot().packets[:, DATA].sum()
    assert packets == sum(len(rows) - 1 for rows in sum(sent.values(), []))


@pytest.mark.parametrize("fmt", ["packet", "raw"])
def test_replayed_rows_count_into_the_table_only(tmp_path, fmt):
    """A restart: the counters come from a checkpoint, the rows before it are replayed with
    ``count_channels``, the rest counted as usual; the table equals the whole file's truth,
    and nothing a scrape or checkpoint shows moves while replaying."""
    path = tmp_path / f"run.{fmt}.h5"
    truth = simulate_file(path, fmt, seconds=16, seed=9, rate=5000.0)
    chunks = list(FileReader(path, chunk_rows=9_000).read_new())
    before, after = chunks[:len(chunks) // 2], chunks[len(chunks) // 2:]
    stopped = DetectorMetrics(truth["rate_window"], truth["hot_rate"])
    for part in before:
        stopped.update(part, str(path))
    restarted = DetectorMetrics(truth["rate_window"], truth["hot_rate"], gated=True)
    restarted.restore(stopped.checkpoint())
    restarted.publish()
    for part in after[:2]:
        restarted.update(part, str(path))
    state, snapshot, changed = restarted.checkpoint(), restarted.snapshot(), restarted.changed
    for part in before:
        restarted.count_channels(part, str(path))
    assert restarted.changed == changed and restarted.snapshot() is snapshot
    replayed = restarted.checkpoint()
    assert state.keys() == replayed.keys()
    assert all(np.array_equal(state[k], replayed[k]) for k in state)
    for part in after[2:]:
        restarted.update(part, str(path))
    rows = by_channel(restarted.channel_table(str(path)))
    expected = truth["channels"]
    for i, key in enumerate(zip(expected["io_group"], expected["io_channel"],
                                expected["chip_id"], expected["channel_id"], strict=True)):
        for column in COLUMNS[:-1]:  # the rate window refills from new rows
            assert rows[key][column] == pytest.approx(expected[column][i], rel=1e-12,
                                                      abs=1e-12), (key, column)
    assert len(rows) == len(expected["count"])


@pytest.mark.parametrize("chunk_rows", [150_000, 40_000])
def test_hot_channels_histograms_equal_a_plain_recount(chunk_rows):
    """Channels with more than 2**15 and 2**16 rows a chunk, in few bins, beside quiet ones."""
    rng = np.random.default_rng(3)
    n = 600_000
    channel_id = np.where(rng.random(n) < 0.6, 5, rng.integers(0, 64, n))   # one very hot
    channel_id[rng.random(n) < 0.1] = 9                                      # one hot
    adc = np.where(channel_id == 5, np.where(rng.random(n) < 0.95, 78, 77),
                   rng.integers(0, 256, n))
    chip_id = np.where(channel_id < 32, 11, 12)
    rows = second_of(1, 100, list(zip([1] * n, chip_id, channel_id, adc, strict=True)))
    detector = DetectorMetrics(10, 1e9)
    for start in range(0, len(rows), chunk_rows):
        detector.update(chunk(rows[start:start + chunk_rows]), "hot.h5")
    table = detector.channel_table(histograms=True)
    for i in range(len(table)):
        mine = (chip_id == table.chip_id[i]) & (channel_id == table.channel_id[i])
        np.testing.assert_array_equal(table.adc_histogram[i],
                                      np.bincount(adc[mine], minlength=256))
    assert table.adc_histogram.sum() == n


def test_adc_sums_of_more_rows_than_a_packed_sum_holds():
    """One chunk past ``PACKED_ROWS`` rows of the largest datawords, all in one channel and
    one second: the per-channel and per-chip ADC mean and RMS equal a plain numpy recount."""
    n = PACKED_ROWS + 70_000
    rows = np.zeros(n + 2, PACKET_DTYPE)
    rows["io_group"] = 1
    rows[0]["packet_type"], rows[0]["timestamp"] = TIMESTAMP, 100
    rows[-1]["packet_type"], rows[-1]["timestamp"] = TIMESTAMP, 101   # closes second 100
    data = rows[1:-1]
    data["packet_type"], data["valid_parity"] = DATA, 1
    data["io_channel"], data["chip_id"], data["channel_id"] = 1, 11, 7
    data["dataword"] = np.where(np.arange(n) % 3 == 0, 254, 255)
    detector = DetectorMetrics(1, 1e9)
    detector.update(chunk(rows), "big.h5")

    adc = data["dataword"].astype(np.float64)
    row = by_channel(detector.channel_table())[1, 1, 11, 7]
    assert row["count"] == n
    assert row["adc_mean"] == pytest.approx(adc.mean(), rel=1e-12)
    assert row["adc_rms"] == pytest.approx(adc.std(), rel=1e-9)
    snapshot = detector.snapshot()
    chip = snapshot.window.chip_adc[(snapshot.chip_id == 11) & (snapshot.chip_channel == 1)]
    assert chip.tolist() == [[int(adc.sum()), int((adc**2).sum())]]
