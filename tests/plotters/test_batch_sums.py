"""The per-batch sums several built-in plots share, and the accumulators they feed, against
plain recounts.

The rows come from a simulated file read back with h5py; the references are
counted here with ``np.unique`` over the full channel keys, not with the
dense-index ``bincount`` under test.
"""

from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pytest

from exporter.simulate import simulate_file
from exporter.source.reader import FileReader
from plotters._accumulators import Histograms, TimeBins
from plotters._packets import channel_sums, tile_channel_sums


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


def test_channel_and_tile_sums_are_a_plain_recount(packets):
    channel = ((as_int(packets, "io_group") << 24) | (as_int(packets, "io_channel") << 16)
               | (as_int(packets, "chip_id") << 8) | as_int(packets, "channel_id"))
    for got, want in zip(channel_sums(packets), recount(packets, channel), strict=True):
        np.testing.assert_array_equal(got, want)
    tile = ((as_int(packets, "io_group") * 1000 + (as_int(packets, "io_channel") - 1) // 4 + 1)
            * 16384 + as_int(packets, "chip_id") * 64 + as_int(packets, "channel_id"))
    for got, want in zip(tile_channel_sums(packets), recount(packets, tile), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_read_only_batch_is_counted_once_and_a_writeable_one_each_time(packets):
    shared = packets.view()
    shared.flags.writeable = False
    first = channel_sums(shared)
    assert channel_sums(shared) is first
    assert not any(array.flags.writeable for array in first)
    # Another batch (even of the same rows) is counted again, as is any writeable array.
    other = packets[: len(packets) // 2].view()
    other.flags.writeable = False
    assert channel_sums(other) is not first
    assert channel_sums(other)[1].sum() == np.count_nonzero(
        packets["packet_type"][: len(packets) // 2] == 0)
    copy = packets.copy()
    assert channel_sums(copy) is not channel_sums(copy)
    copy["packet_type"][:] = 1  # no data packets left: a writeable array is never stale
    assert len(channel_sums(copy)[0]) == 0


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
