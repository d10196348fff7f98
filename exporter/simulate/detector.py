"""The simulated detector: its configuration and which channels are live, hot or dead."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TILES = 8
CHIPS = np.arange(11, 111)
CHANNELS = 64
IO_CHANNELS_PER_TILE = 4
CHANNELS_PER_GROUP = TILES * len(CHIPS) * CHANNELS
CONFIG_REGISTERS = 239


@dataclass(frozen=True)
class SimConfig:
    """What the simulated detector and DAQ look like."""

    seed: int = 0
    #: Packets per data second, all io_groups and packet types together (approximate).
    rate: float = 2000.0
    #: Unix time of the first data second.
    start_time: int = 1_700_000_000
    io_groups: tuple[int, ...] = (1, 2)
    words_per_message: int = 250
    bad_parity_fraction: float = 1e-3
    #: Optional burst of bad parity: (first data-second index, seconds, fraction).
    parity_burst: tuple[int, int, float] | None = None
    hot_channels_per_group: int = 3
    #: Mean rate of each hot channel (capped at a third of its io_group's data rate).
    hot_channel_rate: float = 120.0
    dead_channel_fraction: float = 0.02
    #: Every this many seconds an io_group's second has no 'S' sync (0: never).
    sync_gap_every: int = 7
    heartbeat_probability: float = 0.2
    trigger_rate: float = 3.0
    config_reads_per_group: int = 50
    #: Pedestal and signal tail of the ADC distribution.
    pedestal_mean: float = 75.0
    pedestal_sigma: float = 3.0
    signal_fraction: float = 0.1
    signal_scale: float = 40.0
    local_fifo_probabilities: tuple[float, float, float, float] = (0.985, 0.01, 0.003, 0.002)
    shared_fifo_probabilities: tuple[float, float, float, float] = (0.99, 0.006, 0.002, 0.002)
    mean_readout_delay: float = 600.0

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        if not self.io_groups or any(not 1 <= g <= 255 for g in self.io_groups):
            raise ValueError("io_groups must be between 1 and 255")
        if self.words_per_message < 1 or self.words_per_message > 65535:
            raise ValueError("words_per_message must be between 1 and 65535")


@dataclass(frozen=True)
class Channels:
    """Fixed channel population of one io_group: which channels are live, hot, dead."""

    io_channel: np.ndarray
    chip_id: np.ndarray
    channel_id: np.ndarray
    live: np.ndarray = field(repr=False)   # indices of channels that fire at the normal rate
    hot: np.ndarray = field(repr=False)    # indices of hot channels
    dead: np.ndarray = field(repr=False)   # indices of channels that never fire


def channel_population(config: SimConfig, io_group: int) -> Channels:
    """The io_group's channels: chips 11-110 per tile, spread over the tile's 4 io_channels."""
    index = np.arange(CHANNELS_PER_GROUP)
    tile = index // (len(CHIPS) * CHANNELS)
    chip = CHIPS[(index // CHANNELS) % len(CHIPS)]
    in_tile = (chip - CHIPS[0]) * IO_CHANNELS_PER_TILE // len(CHIPS)
    io_channel = tile * IO_CHANNELS_PER_TILE + 1 + in_tile
    rng = np.random.default_rng([config.seed, io_group, 0x6E0])
    shuffled = rng.permutation(CHANNELS_PER_GROUP)
    n_dead = int(round(config.dead_channel_fraction * CHANNELS_PER_GROUP))
    n_hot = config.hot_channels_per_group
    dead = np.sort(shuffled[:n_dead])
    hot = np.sort(shuffled[n_dead:n_dead + n_hot])
    live = np.sort(shuffled[n_dead + n_hot:])
    return Channels(io_channel.astype(np.uint8), chip.astype(np.uint8),
                    (index % CHANNELS).astype(np.uint8), live, hot, dead)
