"""Faults injected into a run of a known detector, for the quality checks to find.

A ``Faults`` on ``SimConfig.faults`` changes one run of the detector the
detector seed describes (same pedestals, noise, dead and hot channels) and
records what it changed: ``describe_detector`` gives, per io_group, the
channels of each status a fault gave them (``dead``: fired before the fault,
silent now; ``hot``; ``shifted``; ``noisy``; ``disabled``: masked in the ASIC
configs, which the file then carries as a ``daq_configs`` dataset: the bytes
of a tar.gz of ``config_<io_group>-<io_channel>-<chip_id>.json``).

``cabled_tiles`` is not a fault but a smaller detector: only tiles
1..cabled_tiles of each io_group are read out; the reference run of such a
detector sets it too.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

if TYPE_CHECKING:
    from exporter.simulate.detector import Channels, SimConfig

CHANNELS_PER_TILE = 6400
CHANNELS_PER_CHIP = 64
DAQ_CONFIGS = "daq_configs"


@dataclass(frozen=True)
class Faults:
    """What goes wrong in this run; every place is (io_group, ...)."""

    cabled_tiles: int | None = None
    dead_chips: tuple[tuple[int, int, int], ...] = ()       # (io_group, io_channel, chip_id)
    dead_io_channels: tuple[tuple[int, int], ...] = ()      # (io_group, io_channel)
    hot_channels: tuple[tuple[int, int, int], ...] = ()     # (io_group, tile, how many)
    hot_factor: float = 30.0                                # times the normal rate
    shifted_tiles: tuple[tuple[int, int], ...] = ()         # (io_group, tile)
    pedestal_shift: float = 25.0                            # ADC counts
    noisy_tiles: tuple[tuple[int, int], ...] = ()           # (io_group, tile)
    noise_factor: float = 2.5
    masked_channels: tuple[tuple[int, int, int], ...] = ()  # (io_group, tile, how many)
    seed: int = 0


@dataclass(frozen=True)
class Injected:
    """Channel indices of one io_group that each fault touched (the ground truth)."""

    dead: np.ndarray
    hot: np.ndarray
    shifted: np.ndarray
    noisy: np.ndarray
    disabled: np.ndarray


def _tile(population: Channels) -> np.ndarray:
    return np.arange(len(population.io_channel)) // CHANNELS_PER_TILE + 1


def inject(faults: Faults, io_group: int, population: Channels) -> tuple[Channels, Injected]:
    """The io_group's channels with the faults applied, and what was applied where."""
    tile = _tile(population)
    present = tile <= (faults.cabled_tiles or tile.max())
    live = population.live[present[population.live]]
    # The detector's hot channels keep their count per io_group: those of an absent
    # tile move to the same place in a present one.
    hot = population.hot % int(present.sum())
    live = np.setdiff1d(live, hot)
    rng = np.random.default_rng([faults.seed, io_group, 0xFA])
    dead_mask = np.zeros(len(tile), bool)
    for g, io_channel, chip in faults.dead_chips:
        dead_mask |= (g == io_group) & (population.io_channel == io_channel) & (
            population.chip_id == chip)
    for g, io_channel in faults.dead_io_channels:
        dead_mask |= (g == io_group) & (population.io_channel == io_channel)
    dead = live[dead_mask[live]]
    live = live[~dead_mask[live]]
    masked = _pick(rng, live, tile, io_group, faults.masked_channels)
    live = np.setdiff1d(live, masked)
    hot_faults = _pick(rng, live, tile, io_group, faults.hot_channels)
    repeats = max(int(round(faults.hot_factor)), 1)
    live = np.concatenate([np.setdiff1d(live, hot_faults), np.repeat(hot_faults, repeats)])
    pedestal, noise = population.pedestal.copy(), population.noise.copy()
    shifted = _tiles(np.setdiff1d(live, hot_faults), tile, io_group, faults.shifted_tiles)
    noisy = _tiles(np.setdiff1d(live, hot_faults), tile, io_group, faults.noisy_tiles)
    pedestal[tile_members(tile, io_group, faults.shifted_tiles)] += faults.pedestal_shift
    noise[tile_members(tile, io_group, faults.noisy_tiles)] *= faults.noise_factor
    changed = dataclasses.replace(
        population, live=np.sort(live), hot=hot,
        dead=np.setdiff1d(np.union1d(population.dead[present[population.dead]],
                                     np.union1d(dead, masked)), hot),
        pedestal=pedestal, noise=noise,
        shifted=population.shifted[present[population.shifted]],
        noisy=population.noisy[present[population.noisy]])
    return changed, Injected(dead, hot_faults, shifted, noisy, masked)


def tile_members(tile: np.ndarray, io_group: int, places: tuple[tuple[int, int], ...]
                 ) -> np.ndarray:
    chosen = [t for g, t in places if g == io_group]
    return np.isin(tile, chosen)


def _tiles(live: np.ndarray, tile: np.ndarray, io_group: int,
           places: tuple[tuple[int, int], ...]) -> np.ndarray:
    return np.unique(live[tile_members(tile, io_group, places)[live]])


def _pick(rng: np.random.Generator, live: np.ndarray, tile: np.ndarray, io_group: int,
          places: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    picked = [rng.choice(np.unique(live[tile[live] == t]), size=n, replace=False)
              for g, t, n in places if g == io_group]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def describe_faults(config: SimConfig) -> dict:
    """Per io_group and status, the [io_channel, chip_id, channel_id] of injected channels."""
    from exporter.simulate.detector import channel_population

    out = {}
    for g in config.io_groups:
        population = channel_population(dataclasses.replace(config, faults=None), g)
        _, injected = inject(config.faults, g, population)
        out[str(g)] = {status: np.stack([population.io_channel[i], population.chip_id[i],
                                         population.channel_id[i]], axis=1).tolist()
                       for status, i in dataclasses.asdict(injected).items()}
    return out


def config_archive(config: SimConfig) -> bytes:
    """tar.gz of the ASIC configs of every chip of the cabled tiles: channel_mask set on
    the masked channels (flat register dicts with CHIP_KEY, as the 2x2 DAQ saves them)."""
    from exporter.simulate.detector import channel_population

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for g in config.io_groups:
            population = channel_population(dataclasses.replace(config, faults=None), g)
            _, injected = inject(config.faults, g, population)
            tile = _tile(population)
            present = tile <= (config.faults.cabled_tiles or tile.max())
            mask = np.zeros(len(tile), int)
            mask[injected.disabled] = 1
            for first in range(0, len(tile), CHANNELS_PER_CHIP):
                if not present[first]:
                    continue
                chip_mask = mask[first:first + CHANNELS_PER_CHIP].tolist()
                key = f"{g}-{population.io_channel[first]}-{population.chip_id[first]}"
                body = json.dumps({"CHIP_KEY": key, "channel_mask": chip_mask,
                                   "csa_enable": [1 - m for m in chip_mask],
                                   "threshold_global": 40}).encode()
                info = tarfile.TarInfo(f"config_{key}.json")
                info.size = len(body)
                archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def write_daq_configs(path: str | Path, config: SimConfig) -> None:
    """Add the ``daq_configs`` dataset to a finished file."""
    data = np.frombuffer(config_archive(config), np.uint8)
    with h5py.File(path, "a") as f:
        if DAQ_CONFIGS in f:
            del f[DAQ_CONFIGS]
        f.create_dataset(DAQ_CONFIGS, data=data)
