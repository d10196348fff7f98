"""Generation of simulated LArPix data, one data second at a time.

Every data second draws from its own random stream (seeded by the run seed and
the second's index), so a run written at once and the same run appended live
in any batching are identical, word for word.

The output is a *record* array in PACMAN order: one ``HEADER`` record per PACMAN
message (its unix time), followed by the message's words (LArPix UART words,
sync words, trigger words). Both file writers and the ground truth work from
these records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from exporter.packets import SYNC_PERIOD_TICKS

HEADER, LARPIX, SYNC_WORD, TRIGGER_WORD = range(4)

RECORD_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("io_group", "u1"),
        ("io_channel", "u1"),
        ("code", "u1"),       # sync type / trigger type character
        ("clk_source", "u1"),
        ("word", "u8"),       # the 64-bit LArPix v2 packet, little-endian bit order
        ("stamp", "u8"),      # header: unix time; LArPix: receipt time; sync/trigger: timestamp
        ("second", "i8"),     # unix data second of the message the record belongs to
    ]
)

TILES = 8
CHIPS = np.arange(11, 111)
CHANNELS = 64
IO_CHANNELS_PER_TILE = 4
CHANNELS_PER_GROUP = TILES * len(CHIPS) * CHANNELS
CONFIG_REGISTERS = 239

# Bit positions of the LArPix v2 packet (larpix/packet/packet_v2.py).
_CHIP_SHIFT, _CHANNEL_SHIFT, _TIMESTAMP_SHIFT, _FIRST_SHIFT = 2, 10, 16, 47
_DATAWORD_SHIFT, _TRIGGER_SHIFT, _LOCAL_SHIFT, _SHARED_SHIFT = 48, 56, 58, 60
_DOWNSTREAM_SHIFT, _PARITY_SHIFT = 62, 63
_REGISTER_SHIFT, _REGISTER_DATA_SHIFT = 10, 18
_TIMESTAMP_MASK = (1 << 31) - 1
_BELOW_PARITY = np.uint64((1 << 63) - 1)

# Earliest receipt time of a data word in its second, so that the chip
# timestamp (receipt time minus the readout delay) never goes below zero.
_FIRST_TICK = 20_000
_MAX_DELAY = 15_000


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


def with_parity(words: np.ndarray) -> np.ndarray:
    """Set bit 63 so that the 64 bits have odd parity, as LArPix does."""
    body = words & _BELOW_PARITY
    parity = (1 - (np.bitwise_count(body) & 1)).astype(np.uint64)
    return body | (parity << np.uint64(_PARITY_SHIFT))


def _void(rows: np.ndarray) -> np.ndarray:
    return rows.view(np.dtype((np.void, rows.dtype.itemsize)))


def take_rows(rows: np.ndarray, index) -> np.ndarray:
    """``rows[index]`` for structured arrays, copying whole records at once.

    numpy copies structured records field by field; through a void view it is
    about ten times faster.
    """
    return _void(rows)[index].view(rows.dtype)


def concat_rows(parts: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate`` of structured arrays of one dtype, record-wise (see ``take_rows``)."""
    return np.concatenate([_void(p) for p in parts]).view(parts[0].dtype)


def _draw(rng: np.random.Generator, probabilities: tuple[float, ...], n: int) -> np.ndarray:
    """``n`` values 0, 1, ... drawn with the given probabilities (faster than ``choice``)."""
    edges = np.cumsum(probabilities)[:-1] / np.sum(probabilities)
    return np.searchsorted(edges, rng.random(n), side="right")


def _pack(*fields: tuple[np.ndarray | int, int]) -> np.ndarray:
    word = np.uint64(0)
    for value, shift in fields:
        word = word | (np.asarray(value, dtype=np.uint64) << np.uint64(shift))
    return word


class SecondGenerator:
    """Draws the records of any data second of a run."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.channels = {g: channel_population(config, g) for g in config.io_groups}
        n_groups = len(config.io_groups)
        per_group = config.rate / n_groups
        # Spend the per-group budget on words; headers, syncs and triggers are overhead.
        wpm = config.words_per_message
        words = per_group * wpm / (wpm + 1) - config.trigger_rate - 1.0
        self.hot_rate = min(config.hot_channel_rate, max(words, 0.0) / 3 / max(
            config.hot_channels_per_group, 1))
        self.normal_rate = max(words - self.hot_rate * config.hot_channels_per_group, 0.0)

    def parity_error_fraction(self, second_index: int) -> float:
        burst = self.config.parity_burst
        if burst is not None and burst[0] <= second_index < burst[0] + burst[1]:
            return burst[2]
        return self.config.bad_parity_fraction

    def has_sync(self, io_group: int, second_index: int) -> bool:
        every = self.config.sync_gap_every
        return every <= 0 or (second_index + io_group) % every != every - 1

    def second(self, second_index: int) -> np.ndarray:
        """Records of data second ``start_time + second_index``, in PACMAN order."""
        rng = np.random.default_rng([self.config.seed, second_index])
        groups = [self._group_words(rng, g, second_index) for g in self.config.io_groups]
        return self._into_messages(groups, second_index)

    def _group_words(self, rng: np.random.Generator, io_group: int,
                     second_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Words of one io_group in one second, sorted by PACMAN clock, and that clock."""
        cfg = self.config
        parts = [self._data_words(rng, io_group, second_index)]
        if second_index == 0 and cfg.config_reads_per_group > 0:
            parts.append(self._config_reads(rng, io_group, second_index))
        parts.append(self._trigger_words(rng, io_group))
        parts.append(self._sync_words(rng, io_group, second_index))
        words = concat_rows([p[0] for p in parts])
        clock = np.concatenate([p[1] for p in parts])
        order = np.argsort(clock, kind="stable")
        return take_rows(words, order), clock[order]

    def _data_words(self, rng: np.random.Generator, io_group: int,
                    second_index: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        chans = self.channels[io_group]
        n_normal = rng.poisson(self.normal_rate)
        hot_counts = rng.poisson(self.hot_rate, size=len(chans.hot))
        index = np.concatenate([
            chans.live[rng.integers(0, len(chans.live), size=n_normal)],
            np.repeat(chans.hot, hot_counts),
        ])
        n = len(index)
        clock = rng.integers(_FIRST_TICK, SYNC_PERIOD_TICKS, size=n)
        delay = np.minimum(1 + rng.geometric(1.0 / cfg.mean_readout_delay, size=n), _MAX_DELAY)
        pedestal = rng.normal(cfg.pedestal_mean, cfg.pedestal_sigma, size=n)
        signal = rng.random(n) < cfg.signal_fraction
        adc = pedestal + signal * rng.exponential(cfg.signal_scale, size=n)
        adc = np.clip(np.rint(adc), 0, 255)
        local = _draw(rng, cfg.local_fifo_probabilities, n)
        shared = _draw(rng, cfg.shared_fifo_probabilities, n)
        trigger = _draw(rng, (0.97, 0.01, 0.01, 0.01), n)
        words = _pack(
            (chans.chip_id[index], _CHIP_SHIFT),
            (chans.channel_id[index], _CHANNEL_SHIFT),
            ((clock - delay) & _TIMESTAMP_MASK, _TIMESTAMP_SHIFT),
            (1, _FIRST_SHIFT),
            (adc, _DATAWORD_SHIFT),
            (trigger, _TRIGGER_SHIFT),
            (local, _LOCAL_SHIFT),
            (shared, _SHARED_SHIFT),
            (1, _DOWNSTREAM_SHIFT),
        )
        records = np.zeros(n, RECORD_DTYPE)
        records["kind"] = LARPIX
        records["io_channel"] = chans.io_channel[index]
        records["word"] = self._parity(rng, with_parity(words), second_index)
        records["stamp"] = clock
        return records, clock

    def _config_reads(self, rng: np.random.Generator, io_group: int,
                      second_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Register reads of the run start's configuration check."""
        chans = self.channels[io_group]
        n = self.config.config_reads_per_group
        chip_index = rng.integers(0, CHANNELS_PER_GROUP, size=n)
        clock = np.sort(rng.integers(1_000, _FIRST_TICK, size=n))
        words = _pack(
            (3, 0),
            (chans.chip_id[chip_index], _CHIP_SHIFT),
            (rng.integers(0, CONFIG_REGISTERS, size=n), _REGISTER_SHIFT),
            (rng.integers(0, 256, size=n), _REGISTER_DATA_SHIFT),
            (1, _DOWNSTREAM_SHIFT),
        )
        records = np.zeros(n, RECORD_DTYPE)
        records["kind"] = LARPIX
        records["io_channel"] = chans.io_channel[chip_index]
        records["word"] = self._parity(rng, with_parity(words), second_index)
        records["stamp"] = clock
        return records, clock

    def _parity(self, rng: np.random.Generator, words: np.ndarray,
                second_index: int) -> np.ndarray:
        """Flip the parity bit of a random fraction of the words."""
        bad = rng.random(len(words)) < self.parity_error_fraction(second_index)
        return words ^ (bad.astype(np.uint64) << np.uint64(_PARITY_SHIFT))

    def _trigger_words(self, rng: np.random.Generator,
                       io_group: int) -> tuple[np.ndarray, np.ndarray]:
        n = rng.poisson(self.config.trigger_rate)
        clock = rng.integers(0, SYNC_PERIOD_TICKS, size=n)
        records = np.zeros(n, RECORD_DTYPE)
        records["kind"] = TRIGGER_WORD
        records["code"] = rng.choice(np.array([1, 2], np.uint8), size=n, p=(0.2, 0.8))
        records["stamp"] = clock
        return records, clock

    def _sync_words(self, rng: np.random.Generator, io_group: int,
                    second_index: int) -> tuple[np.ndarray, np.ndarray]:
        """The 'S' sync at the end of the second (unless a gap) and an occasional heartbeat."""
        codes, clocks = [], []
        if rng.random() < self.config.heartbeat_probability:
            codes.append(ord("H"))
            clocks.append(int(rng.integers(0, SYNC_PERIOD_TICKS)))
        if self.has_sync(io_group, second_index):
            codes.append(ord("S"))
            clocks.append(SYNC_PERIOD_TICKS + self.sync_offset(io_group, second_index))
        records = np.zeros(len(codes), RECORD_DTYPE)
        records["kind"] = SYNC_WORD
        records["code"] = codes
        records["stamp"] = clocks
        return records, np.array(clocks, dtype=np.int64)

    def sync_offset(self, io_group: int, second_index: int) -> int:
        """PACMAN clock ticks past 10^7 at the 'S' sync: small, drifting slowly."""
        return 2 + io_group + (second_index // 5) % 8

    def _into_messages(self, groups: list[tuple[np.ndarray, np.ndarray]],
                       second_index: int) -> np.ndarray:
        """Cut each io_group's words into messages and interleave the messages in clock order."""
        cfg = self.config
        wpm = cfg.words_per_message
        second = cfg.start_time + second_index
        words, msg_key, msg_sizes, msg_groups, msg_last_clock = [], [], [], [], []
        for io_group, (group_words, clock) in zip(cfg.io_groups, groups, strict=True):
            n = len(group_words)
            if n == 0:
                continue
            group_words["io_group"] = io_group
            n_msgs = -(-n // wpm)
            sizes = np.full(n_msgs, wpm)
            sizes[-1] = n - wpm * (n_msgs - 1)
            words.append(group_words)
            msg_sizes.append(sizes)
            msg_groups.append(np.full(n_msgs, io_group))
            msg_last_clock.append(clock[np.cumsum(sizes) - 1])
            msg_key.append(np.repeat(np.arange(n_msgs) + sum(map(len, msg_sizes[:-1])), sizes))
        if not words:
            return np.zeros(0, RECORD_DTYPE)
        sizes = np.concatenate(msg_sizes)
        groups_of_msg = np.concatenate(msg_groups)
        order = np.lexsort((groups_of_msg, np.concatenate(msg_last_clock)))
        # Row of each message's header once the messages are in that order.
        header_row = np.empty(len(sizes), np.int64)
        header_row[order] = np.concatenate([[0], np.cumsum(sizes[order] + 1)[:-1]])
        all_words = concat_rows(words)
        msg_of_word = np.concatenate(msg_key)
        first_word_of_msg = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        position = np.arange(len(all_words)) - first_word_of_msg[msg_of_word]
        records = np.zeros(len(all_words) + len(sizes), RECORD_DTYPE)
        _void(records)[header_row[msg_of_word] + 1 + position] = _void(all_words)
        records["kind"][header_row] = HEADER
        records["io_group"][header_row] = groups_of_msg
        records["stamp"][header_row] = second
        records["second"] = second
        return records
