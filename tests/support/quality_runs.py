"""Runs of one simulated detector for the quality tests: a reference, a clean run of
another seed and a run with injected faults; the per-channel table of a file as the
simulator's truth and a plain h5py/numpy recount give it (never the monitor's code)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np

from exporter.simulate import Faults, SimConfig, simulate_file

#: Four 6,400-channel tiles (two io_groups, two tiles each), ~80 data packets a channel.
PACKETS = 2_000_000
DETECTOR_SEED = 7
RATE = 100_000.0
CABLED = Faults(cabled_tiles=2)
FAULTS = Faults(
    cabled_tiles=2,
    dead_chips=((1, 2, 40), (1, 2, 41)),        # io_group 1 tile 1 (io_channel 2)
    masked_channels=((1, 1, 30),),              # io_group 1 tile 1
    hot_channels=((1, 2, 40),),                 # io_group 1 tile 2
    shifted_tiles=((2, 1),),
    dead_io_channels=((2, 7),),                 # io_group 2 tile 2
    noisy_tiles=((2, 2),),
    seed=5,
)
#: The tile of each fault and the check that must grade it.
FAULT_TILES = {
    "dead_channels": [(1, 1), (2, 2)],
    "hot_vs_reference": [(1, 2)],
    "shifted_channels": [(2, 1)],
    "noisy_channels": [(2, 2)],
}


def simulate(path: Path, seed: int, faults: Faults, packets: int = PACKETS) -> Path:
    simulate_file(path, n_packets=packets, config=SimConfig(
        seed=seed, detector_seed=DETECTOR_SEED, rate=RATE, faults=faults))
    return path


def table_of(path: Path) -> SimpleNamespace:
    """The per-channel table of a file: the simulator's truth per channel, and the ADC
    histogram per channel recounted from the file's packets with h5py and numpy."""
    columns = json.loads(Path(f"{path}.truth.json").read_text())["channels"]
    table = SimpleNamespace(**{k: np.asarray(v) for k, v in columns.items()})
    key = (table.io_group << 24 | table.io_channel << 16 | table.chip_id << 8
           | table.channel_id)
    with h5py.File(path, "r") as f:
        packets = f["packets"][()]
    data = packets[packets["packet_type"] == 0]
    packet_key = (data["io_group"].astype(np.int64) << 24
                  | data["io_channel"].astype(np.int64) << 16
                  | data["chip_id"].astype(np.int64) << 8 | data["channel_id"])
    row = np.searchsorted(key, packet_key)
    assert np.array_equal(key[row], packet_key), "truth rows must be sorted by channel"
    table.adc_histogram = np.bincount(row * 256 + data["dataword"],
                                 minlength=len(key) * 256).reshape(len(key), 256)
    assert np.array_equal(table.adc_histogram.sum(axis=1), table.count)
    table.tile = (table.io_channel - 1) // 4 + 1
    table.status = np.where(table.hot, "hot", "ok")
    return table


def injected(path: Path) -> dict[int, dict[str, set[tuple[int, int, int]]]]:
    """io_group -> status -> channels (io_channel, chip_id, channel_id) the faults touched."""
    faults = json.loads(Path(f"{path}.detector.json").read_text())["faults"]
    return {int(g): {status: {tuple(c) for c in channels}
                     for status, channels in by_status.items()}
            for g, by_status in faults.items()}
