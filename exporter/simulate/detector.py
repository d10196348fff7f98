"""The simulated detector: its configuration and which channels are live, hot or dead."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from exporter.simulate.faults import Faults, describe_faults, inject

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
    #: Seed of the detector's properties (pedestals, noise, dead/hot/shifted/noisy channels);
    #: None: ``seed``. Two runs with one detector_seed and two seeds are two runs of one detector.
    detector_seed: int | None = None
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
    #: Config writes of the run start's configuration (first second), per io_group.
    config_writes_per_group: int = 50
    #: Config packets per second and io_group during the run (reads and writes, both ways).
    config_rate: float = 2.0
    #: Pedestal and signal tail of the ADC distribution: detector mean pedestal, its spread
    #: from chip to chip and from channel to channel within a chip.
    pedestal_mean: float = 75.0
    chip_pedestal_spread: float = 5.0
    channel_pedestal_spread: float = 2.0
    #: Mean noise (ADC RMS of the pedestal) and its relative spread from chip to chip.
    pedestal_sigma: float = 3.0
    noise_spread: float = 0.25
    #: Channels per io_group whose pedestal is shifted by ``pedestal_shift`` ADC counts.
    shifted_channels_per_group: int = 2
    pedestal_shift: float = 30.0
    #: Channels per io_group whose noise is ``noise_factor`` times their chip's.
    noisy_channels_per_group: int = 2
    noise_factor: float = 4.0
    signal_fraction: float = 0.1
    signal_scale: float = 40.0
    local_fifo_probabilities: tuple[float, float, float, float] = (0.985, 0.01, 0.003, 0.002)
    shared_fifo_probabilities: tuple[float, float, float, float] = (0.99, 0.006, 0.002, 0.002)
    mean_readout_delay: float = 600.0
    #: Faults of this run of the detector (exporter.simulate.faults); None: none.
    faults: Faults | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        if not self.io_groups or any(not 1 <= g <= 255 for g in self.io_groups):
            raise ValueError("io_groups must be between 1 and 255")
        if self.config_rate < 0:
            raise ValueError("config_rate must not be negative")
        if self.words_per_message < 1 or self.words_per_message > 65535:
            raise ValueError("words_per_message must be between 1 and 65535")

    @property
    def detector(self) -> int:
        """The seed of the detector's properties."""
        return self.seed if self.detector_seed is None else self.detector_seed


@dataclass(frozen=True)
class Channels:
    """Fixed channel population of one io_group: which channels are live, hot, dead, and
    each channel's pedestal and noise. Everything here follows the detector seed alone."""

    io_channel: np.ndarray
    chip_id: np.ndarray
    channel_id: np.ndarray
    live: np.ndarray = field(repr=False)   # indices of channels that fire at the normal rate
    hot: np.ndarray = field(repr=False)    # indices of hot channels
    dead: np.ndarray = field(repr=False)   # indices of channels that never fire
    pedestal: np.ndarray = field(repr=False)  # mean ADC of each channel (float)
    noise: np.ndarray = field(repr=False)     # ADC standard deviation of each channel
    shifted: np.ndarray = field(repr=False)   # indices of live channels with a shifted pedestal
    noisy: np.ndarray = field(repr=False)     # indices of live channels with high noise


def channel_population(config: SimConfig, io_group: int) -> Channels:
    """The io_group's channels: chips 11-110 per tile, spread over the tile's 4 io_channels."""
    index = np.arange(CHANNELS_PER_GROUP)
    tile = index // (len(CHIPS) * CHANNELS)
    chip = CHIPS[(index // CHANNELS) % len(CHIPS)]
    in_tile = (chip - CHIPS[0]) * IO_CHANNELS_PER_TILE // len(CHIPS)
    io_channel = tile * IO_CHANNELS_PER_TILE + 1 + in_tile
    rng = np.random.default_rng([config.detector, io_group, 0x6E0])
    shuffled = rng.permutation(CHANNELS_PER_GROUP)
    n_dead = int(round(config.dead_channel_fraction * CHANNELS_PER_GROUP))
    n_hot = config.hot_channels_per_group
    dead = np.sort(shuffled[:n_dead])
    hot = np.sort(shuffled[n_dead:n_dead + n_hot])
    live = np.sort(shuffled[n_dead + n_hot:])
    odd = shuffled[n_dead + n_hot:]
    n_shifted, n_noisy = config.shifted_channels_per_group, config.noisy_channels_per_group
    shifted = np.sort(odd[:n_shifted])
    noisy = np.sort(odd[n_shifted:n_shifted + n_noisy])
    pedestal, noise = _pedestals(config, io_group, shifted, noisy)
    population = Channels(io_channel.astype(np.uint8), chip.astype(np.uint8),
                          (index % CHANNELS).astype(np.uint8), live, hot, dead, pedestal, noise,
                          shifted, noisy)
    return population if config.faults is None else inject(config.faults, io_group,
                                                             population)[0]


def _pedestals(config: SimConfig, io_group: int, shifted: np.ndarray, noisy: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Pedestal and noise of every channel: a chip's own level, channels scattered about it."""
    rng = np.random.default_rng([config.detector, io_group, 0x9ED])
    n_chips = CHANNELS_PER_GROUP // CHANNELS
    chip_pedestal = rng.normal(config.pedestal_mean, config.chip_pedestal_spread, n_chips)
    chip_noise = config.pedestal_sigma * rng.lognormal(0.0, config.noise_spread, n_chips)
    pedestal = (np.repeat(chip_pedestal, CHANNELS)
                + rng.normal(0.0, config.channel_pedestal_spread, CHANNELS_PER_GROUP))
    noise = np.repeat(chip_noise, CHANNELS) * rng.lognormal(0.0, 0.1, CHANNELS_PER_GROUP)
    pedestal[shifted] += config.pedestal_shift
    noise[noisy] *= config.noise_factor
    return np.clip(pedestal, 10.0, 200.0), noise


def describe_detector(config: SimConfig) -> dict:
    """The detector as the simulator made it: per io_group, the channels that are hot, dead,
    shifted or noisy (as [io_channel, chip_id, channel_id]) and every channel's pedestal and
    noise (in the order of ``io_channel``, ``chip_id``, ``channel_id``)."""
    groups = {}
    for g in config.io_groups:
        population = channel_population(config, g)

        def listed(index: np.ndarray, p: Channels = population) -> list[list[int]]:
            return np.stack([p.io_channel[index], p.chip_id[index], p.channel_id[index]],
                            axis=1).tolist()

        groups[str(g)] = {"hot": listed(population.hot), "dead": listed(population.dead),
                          "shifted": listed(population.shifted),
                          "noisy": listed(population.noisy),
                          "pedestal": np.round(population.pedestal, 4).tolist(),
                          "noise": np.round(population.noise, 4).tolist()}
    first = channel_population(config, config.io_groups[0])
    return {"seed": config.seed, "detector_seed": config.detector,
            "io_channel": first.io_channel.tolist(), "chip_id": first.chip_id.tolist(),
            "channel_id": first.channel_id.tolist(), "io_groups": groups,
            **({"faults": describe_faults(config)} if config.faults is not None else {})}
