"""The per-batch sums several built-in plots share, and the accumulators they feed, against
plain recounts.

The rows come from a simulated file read back with h5py; the references are
counted here with ``np.unique`` over the full channel keys, not with the
dense-index ``bincount`` under test. The built-in plots of one render share one
``Batch`` (its sums counted once); a plugin from elsewhere counts its own rows.
"""

from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pytest

from exporter.metrics import MonitorHealth
from exporter.render import PacketFile, PlotRenderer, discover_plots
from exporter.simulate import simulate_file
from exporter.source.reader import FileReader
from plotters._accumulators import Histograms, TimeBins
from plotters._packets import Batch

ZERO_THEN_SUM = '''
from plotters._bases import BuiltinPlot


class ZeroThenSum(BuiltinPlot):
    """A plugin from elsewhere on the built-in base: zeroes its ADC in place, then sums."""

    def update(self, packets):
        packets["dataword"][:] = 0
        self.batch.channel_sums()

    def ready(self):
        return False
'''


@pytest.fixture(scope="module")
def packets(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "run_sums.h5"
    simulate_file(path, "packet", seconds=6, seed=5)
    with h5py.File(path, "r") as f:
        assert len(f["packets"]) > 10_000
    return np.concatenate([chunk.packets for chunk in FileReader(path).read_new()])


def recount(packets: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, ...]:
    data = packets["packet_type"] == 0
    unique, inverse = np.unique(key[data], return_inverse=True)
    adc = packets["dataword"][data].astype(float)
    return (unique, np.bincount(inverse).astype(float), np.bincount(inverse, adc),
            np.bincount(inverse, adc * adc))


def as_int(packets: np.ndarray, field: str) -> np.ndarray:
    return packets[field].astype(np.int64)


def channel_key(packets: np.ndarray) -> np.ndarray:
    return ((as_int(packets, "io_group") << 24) | (as_int(packets, "io_channel") << 16)
            | (as_int(packets, "chip_id") << 8) | as_int(packets, "channel_id"))


def tile_of(packets: np.ndarray) -> np.ndarray:
    return as_int(packets, "io_group") * 1000 + (as_int(packets, "io_channel") - 1) // 4 + 1


def tile_channel_key(packets: np.ndarray) -> np.ndarray:
    return (tile_of(packets) * 16384 + as_int(packets, "chip_id") * 64
            + as_int(packets, "channel_id"))


def test_channel_and_tile_sums_are_a_plain_recount(packets):
    batch = Batch(packets)
    for got, want in zip(batch.channel_sums(), recount(packets, channel_key(packets)),
                         strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(batch.tile_channel_sums(), recount(packets, tile_channel_key(packets)),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert not any(array.flags.writeable for array in batch.channel_sums())


def counted_sums(monkeypatch) -> list[tuple[Batch, tuple[np.ndarray, ...]]]:
    """Every ``Batch.channel_sums`` call from now on, as (batch, result)."""
    calls = []
    original = Batch.channel_sums

    def channel_sums(self):
        result = original(self)
        calls.append((self, result))
        return result

    monkeypatch.setattr(Batch, "channel_sums", channel_sums)
    return calls


def test_built_in_plots_of_one_file_share_one_count(packets, monkeypatch):
    calls = counted_sums(monkeypatch)
    plots = discover_plots([]).plots
    hot, chips, maps = plots["HotPixels"](), plots["ChipMeanAdc"](), plots["PixelMaps"]()
    fh = PacketFile("run_sums.h5", packets)
    for plot in (hot, chips, maps):
        plot("run_sums.h5", fh)
    batch = fh.shared["batch"]
    assert hot.batch is chips.batch is maps.batch is batch
    # Three plots asked (PixelMaps through the tile sums): one tuple, so counted once.
    assert len(calls) == 3
    assert all(got is calls[0][1] and owner is batch for owner, got in calls)

    data = packets[packets["packet_type"] == 0]
    want = recount(packets, channel_key(packets))
    np.testing.assert_array_equal(hot.counts.keys, want[0])
    np.testing.assert_array_equal(hot.counts.values[:, 0], want[1])
    chip = tile_of(data) * 256 + as_int(data, "chip_id")
    keys, index = np.unique(chip, return_inverse=True)
    np.testing.assert_array_equal(chips.totals.keys, keys)
    np.testing.assert_array_equal(chips.totals.values[:, 0], np.bincount(index))
    np.testing.assert_allclose(chips.totals.values[:, 1],
                               np.bincount(index, data["dataword"].astype(float)), rtol=1e-12)
    tiles = recount(packets, tile_channel_key(packets))
    np.testing.assert_array_equal(maps.stats.totals.keys, tiles[0])
    np.testing.assert_allclose(maps.stats.totals.values, np.stack(tiles[1:], axis=1),
                               rtol=1e-12)

    # Another PacketFile (another render) gets a batch of its own.
    other = PacketFile("run_sums.h5", packets[: len(packets) // 2])
    hot("run_sums.h5", other)
    assert hot.batch is other.shared["batch"] is not batch


def test_a_plugin_writing_its_rows_does_not_change_the_built_ins_sums(packets, tmp_path,
                                                                     monkeypatch):
    calls = counted_sums(monkeypatch)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "zero_then_sum.py").write_text(ZERO_THEN_SUM)
    health = MonitorHealth()
    renderer = PlotRenderer(discover_plots([tmp_path / "plugins"]), tmp_path / "out",
                            selected=["ZeroThenSum", "HotPixels", "ChipMeanAdc"],
                            health=health, load_saved=False)
    try:
        assert list(renderer.plots) == ["ZeroThenSum", "HotPixels", "ChipMeanAdc"]
        renderer.add_packets("run_sums.h5", packets.copy())
        images = renderer.render("run_sums.h5").result(timeout=60)
    finally:
        renderer.shutdown()
    assert health.snapshot().plot_errors == {}
    assert sorted(image.plot for image in images) == ["ChipMeanAdc", "HotPixels"]

    (plugin, zeroed), (builtin, first), (again, second) = calls
    assert plugin is not builtin and again is builtin and second is first
    want = recount(packets, channel_key(packets))
    assert want[2].any()
    np.testing.assert_array_equal(zeroed[0], want[0])  # the plugin's own rows: ADC zeroed
    assert not zeroed[2].any()
    for got, expected in zip(first, want, strict=True):  # the built-ins': the rows as read
        np.testing.assert_array_equal(got, expected)


def test_time_bins_with_keys_far_apart_match_a_plain_count():
    rng = np.random.default_rng(2)
    seconds = rng.integers(1_700_000_000, 1_700_000_060, 4000).astype(float)
    keys = rng.choice([3, 7, 5_000_000, 9_000_000_000], len(seconds))
    bins = TimeBins()
    bins.add(seconds[:1500], keys[:1500])
    bins.add(seconds[1500:], keys[1500:])
    assert bins.keys.tolist() == sorted(set(keys.tolist()))
    for key in set(keys.tolist()):
        drawn = dict(zip(bins.starts.tolist(), bins.column(key).tolist(), strict=True))
        assert {s: c for s, c in drawn.items() if c} == Counter(seconds[keys == key].tolist())


def test_histograms_of_several_io_groups_match_numpy_per_group():
    rng = np.random.default_rng(4)
    edges = np.linspace(0.0, 100.0, 51)
    groups = rng.choice(np.array([1, 2, 7], dtype=np.uint8), 30_000)
    values = rng.uniform(-20.0, 130.0, len(groups))
    histograms = Histograms(edges)
    histograms.add(groups[:10_000], values[:10_000])
    histograms.add(groups[10_000:], values[10_000:])
    histograms.add(groups[:0], values[:0])
    assert sorted(histograms.counts) == [1, 2, 7]
    for group in (1, 2, 7):
        mine = values[groups == group]
        expected, _ = np.histogram(mine, edges)
        np.testing.assert_array_equal(histograms.counts[group], expected)
        assert histograms.outside[group] == len(mine) - expected.sum()
