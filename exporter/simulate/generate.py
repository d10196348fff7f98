"""Generation of simulated LArPix data, data second by data second.

Seconds are drawn in fixed blocks, each from its own random stream (seeded by
the run seed and the block's index), so a run written at once and the same run
appended live in any batching are identical, word for word.

The output is a *record* array in PACMAN order: one ``HEADER`` record per PACMAN
message (its unix time), followed by the message's words (LArPix UART words,
sync words, trigger words). Both file writers and the ground truth work from
these records.
"""

from __future__ import annotations

import numpy as np

from exporter.packets import SYNC_PERIOD_TICKS
from exporter.simulate.detector import (
    CHANNELS_PER_GROUP,
    CONFIG_REGISTERS,
    SimConfig,
    channel_population,
)

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
# Seconds drawn together: about this many records, at most _MAX_BLOCK_SECONDS.
_BLOCK_RECORDS = 200_000
_MAX_BLOCK_SECONDS = 16


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
    """Draws the records of any data second of a run.

    Seconds are drawn in blocks (several seconds, all io_groups, in one set of
    vectorised draws) from a random stream seeded by the run seed and the
    block's index; the block length depends only on the configuration, so any
    second comes out the same however the run is cut into appends.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.groups = np.array(config.io_groups, dtype=np.int64)
        self.channels = {g: channel_population(config, g) for g in config.io_groups}
        populations = [self.channels[g] for g in config.io_groups]
        self._geometry = populations[0]          # io_channel/chip/channel of a channel index
        self._live = np.concatenate([p.live for p in populations])
        self._live_count = np.array([len(p.live) for p in populations])
        self._live_first = np.concatenate([[0], np.cumsum(self._live_count)[:-1]])
        self._hot = np.stack([p.hot for p in populations])
        self._pedestal = np.stack([p.pedestal for p in populations])
        self._noise = np.stack([p.noise for p in populations])
        per_group = config.rate / len(config.io_groups)
        # Spend the per-group budget on words; headers, syncs and triggers are overhead.
        wpm = config.words_per_message
        words = (per_group * wpm / (wpm + 1) - config.trigger_rate - config.config_rate
                 - 1.0)
        self.hot_rate = min(config.hot_channel_rate, max(words, 0.0) / 3 / max(
            config.hot_channels_per_group, 1))
        self.normal_rate = max(words - self.hot_rate * config.hot_channels_per_group, 0.0)
        self.block_seconds = int(np.clip(_BLOCK_RECORDS // config.rate, 1, _MAX_BLOCK_SECONDS))
        self._cache: tuple[int, list[np.ndarray]] = (-1, [])

    def parity_error_fraction(self, second_index: np.ndarray) -> np.ndarray:
        fraction = np.full(np.shape(second_index), self.config.bad_parity_fraction)
        burst = self.config.parity_burst
        if burst is not None:
            in_burst = (burst[0] <= second_index) & (second_index < burst[0] + burst[1])
            fraction[in_burst] = burst[2]
        return fraction

    def has_sync(self, io_group, second_index):
        """Whether the io_group's second ends with an 'S' sync (deliberate gaps otherwise)."""
        every = self.config.sync_gap_every
        if every <= 0:
            return np.ones(np.broadcast(io_group, second_index).shape, bool)
        return (np.asarray(second_index) + io_group) % every != every - 1

    def sync_offset(self, io_group, second_index):
        """PACMAN clock ticks past 10^7 at the 'S' sync: small, drifting slowly."""
        return 2 + np.asarray(io_group) + (np.asarray(second_index) // 5) % 8

    def second(self, second_index: int) -> np.ndarray:
        """Records of data second ``start_time + second_index``, in PACMAN order."""
        block = second_index // self.block_seconds
        if self._cache[0] != block:
            self._cache = (block, self._block(block))
        return self._cache[1][second_index - block * self.block_seconds]

    def _block(self, block: int) -> list[np.ndarray]:
        """Records of each second of one block."""
        rng = np.random.default_rng([self.config.seed, block])
        seconds = block * self.block_seconds + np.arange(self.block_seconds)
        parts = [self._data_words(rng, seconds), self._trigger_words(rng, seconds),
                 self._sync_words(rng, seconds)]
        parts.append(self._config_words(rng, seconds, block == 0))
        words = concat_rows([p[0] for p in parts])
        pair = np.concatenate([p[1] for p in parts])
        clock = np.concatenate([p[2] for p in parts])
        order = np.lexsort((clock, pair))
        words = take_rows(words, order)
        words["io_group"] = self.groups[pair[order] % len(self.groups)]
        return self._into_messages(words, pair[order], clock[order], seconds)

    # Each word source returns (records, pair, clock): pair = second in block * groups + group.

    def _data_words(self, rng: np.random.Generator, seconds: np.ndarray):
        cfg = self.config
        n_groups = len(self.groups)
        n_pairs = len(seconds) * n_groups
        n_normal = rng.poisson(self.normal_rate, size=n_pairs)
        hot_counts = rng.poisson(self.hot_rate, size=(n_pairs, self._hot.shape[1]))
        normal_pair = np.repeat(np.arange(n_pairs), n_normal)
        group = normal_pair % n_groups
        pick = (rng.random(len(normal_pair)) * self._live_count[group]).astype(np.int64)
        index = np.concatenate([
            self._live[self._live_first[group] + pick],
            np.repeat(self._hot[np.arange(n_pairs) % n_groups].ravel(), hot_counts.ravel()),
        ])
        pair = np.concatenate([normal_pair, np.repeat(
            np.repeat(np.arange(n_pairs), self._hot.shape[1]), hot_counts.ravel())])
        n = len(index)
        clock = rng.integers(_FIRST_TICK, SYNC_PERIOD_TICKS, size=n)
        delay = np.minimum(1 + rng.geometric(1.0 / cfg.mean_readout_delay, size=n), _MAX_DELAY)
        group = pair % n_groups
        pedestal = (self._pedestal[group, index]
                    + self._noise[group, index] * rng.standard_normal(size=n))
        signal = rng.random(n) < cfg.signal_fraction
        adc = pedestal + signal * rng.exponential(cfg.signal_scale, size=n)
        adc = np.clip(np.rint(adc), 0, 255)
        local = _draw(rng, cfg.local_fifo_probabilities, n)
        shared = _draw(rng, cfg.shared_fifo_probabilities, n)
        trigger = _draw(rng, (0.97, 0.01, 0.01, 0.01), n)
        geo = self._geometry
        words = _pack(
            (geo.chip_id[index], _CHIP_SHIFT),
            (geo.channel_id[index], _CHANNEL_SHIFT),
            ((clock - delay) & _TIMESTAMP_MASK, _TIMESTAMP_SHIFT),
            (1, _FIRST_SHIFT),
            (adc, _DATAWORD_SHIFT),
            (trigger, _TRIGGER_SHIFT),
            (local, _LOCAL_SHIFT),
            (shared, _SHARED_SHIFT),
            (1, _DOWNSTREAM_SHIFT),
        )
        fraction = self.parity_error_fraction(seconds)[pair // n_groups]
        records = np.zeros(n, RECORD_DTYPE)
        records["kind"] = LARPIX
        records["io_channel"] = geo.io_channel[index]
        records["word"] = _spoil_parity(rng, with_parity(words), fraction)
        records["stamp"] = clock
        return records, pair, clock

    def _config_words(self, rng: np.random.Generator, seconds: np.ndarray, run_start: bool):
        """Config writes and reads of chips, both ways (downstream_marker 1: downstream):
        the run start's configuration (first second, reads then writes among them) and a
        trickle of ``config_rate`` per second and io_group all along."""
        cfg = self.config
        n_groups = len(self.groups)
        n_pairs = len(seconds) * n_groups
        steady = np.repeat(np.arange(n_pairs), rng.poisson(cfg.config_rate, n_pairs))
        start_op = np.zeros(0, np.int64)
        start = np.zeros(0, np.int64)
        if run_start:
            per_group = cfg.config_reads_per_group + cfg.config_writes_per_group
            start = np.repeat(np.arange(n_groups), per_group)
            start_op = np.tile(np.repeat([3, 2], [cfg.config_reads_per_group,
                                                  cfg.config_writes_per_group]), n_groups)
        pair = np.concatenate([start, steady])
        op = np.concatenate([start_op, 2 + (rng.random(len(steady)) < 0.5)])
        index = rng.integers(0, CHANNELS_PER_GROUP, size=len(pair))
        clock = np.concatenate([np.sort(rng.integers(1_000, _FIRST_TICK, size=len(start))),
                                rng.integers(_FIRST_TICK, SYNC_PERIOD_TICKS, size=len(steady))])
        geo = self._geometry
        words = _pack(
            (op, 0),
            (geo.chip_id[index], _CHIP_SHIFT),
            (rng.integers(0, CONFIG_REGISTERS, size=len(pair)), _REGISTER_SHIFT),
            (rng.integers(0, 256, size=len(pair)), _REGISTER_DATA_SHIFT),
            (rng.random(len(pair)) < 0.5, _DOWNSTREAM_SHIFT),
        )
        records = np.zeros(len(pair), RECORD_DTYPE)
        records["kind"] = LARPIX
        records["io_channel"] = geo.io_channel[index]
        fraction = self.parity_error_fraction(seconds[pair // n_groups])
        records["word"] = _spoil_parity(rng, with_parity(words), fraction)
        records["stamp"] = clock
        return records, pair, clock

    def _trigger_words(self, rng: np.random.Generator, seconds: np.ndarray):
        n_pairs = len(seconds) * len(self.groups)
        pair = np.repeat(np.arange(n_pairs), rng.poisson(self.config.trigger_rate, n_pairs))
        clock = rng.integers(0, SYNC_PERIOD_TICKS, size=len(pair))
        records = np.zeros(len(pair), RECORD_DTYPE)
        records["kind"] = TRIGGER_WORD
        records["code"] = np.array([1, 2], np.uint8)[_draw(rng, (0.2, 0.8), len(pair))]
        records["stamp"] = clock
        return records, pair, clock

    def _sync_words(self, rng: np.random.Generator, seconds: np.ndarray):
        """An 'S' sync ending each second (unless a gap) and occasional 'H' heartbeats."""
        n_groups = len(self.groups)
        all_pairs = np.arange(len(seconds) * n_groups)
        heartbeat = all_pairs[rng.random(len(all_pairs)) < self.config.heartbeat_probability]
        heartbeat_clock = rng.integers(0, SYNC_PERIOD_TICKS, size=len(heartbeat))
        group = self.groups[all_pairs % n_groups]
        second = seconds[all_pairs // n_groups]
        synced = self.has_sync(group, second)
        sync = all_pairs[synced]
        sync_clock = SYNC_PERIOD_TICKS + self.sync_offset(group, second)[synced]
        records = np.zeros(len(heartbeat) + len(sync), RECORD_DTYPE)
        records["kind"] = SYNC_WORD
        records["code"] = np.repeat([ord("H"), ord("S")], [len(heartbeat), len(sync)])
        # clock source: odd io_groups on the external clock, even ones on the internal
        records["clk_source"] = self.groups[np.concatenate([heartbeat, sync]) % n_groups] & 1
        clock = np.concatenate([heartbeat_clock, sync_clock])
        records["stamp"] = clock
        return records, np.concatenate([heartbeat, sync]), clock

    def _into_messages(self, words: np.ndarray, pair: np.ndarray, clock: np.ndarray,
                       seconds: np.ndarray) -> list[np.ndarray]:
        """Cut each (second, io_group)'s words, sorted by clock, into messages of at most
        ``words_per_message`` words; within a second, messages go out in the order
        their last word arrived. Returns the records of each second."""
        n_groups = len(self.groups)
        n_pairs = len(seconds) * n_groups
        wpm = self.config.words_per_message
        per_pair = np.bincount(pair, minlength=n_pairs)
        rank = np.arange(len(words)) - _starts(per_pair)[pair]
        msgs_per_pair = -(-per_pair // wpm)
        msg_of_word = _starts(msgs_per_pair)[pair] + rank // wpm
        sizes = np.bincount(msg_of_word, minlength=int(msgs_per_pair.sum()))
        msg_pair = np.repeat(np.arange(n_pairs), msgs_per_pair)
        msg_second = msg_pair // n_groups
        msg_group = self.groups[msg_pair % n_groups]
        last_clock = clock[np.cumsum(sizes) - 1] if len(sizes) else np.zeros(0, np.int64)
        order = np.lexsort((msg_group, last_clock, msg_second))
        header_row = np.empty(len(sizes), np.int64)
        header_row[order] = _starts(sizes[order] + 1)
        position = np.arange(len(words)) - _starts(sizes)[msg_of_word]
        records = np.zeros(len(words) + len(sizes), RECORD_DTYPE)
        _void(records)[header_row[msg_of_word] + 1 + position] = _void(words)
        unix = self.config.start_time + seconds
        records["kind"][header_row] = HEADER
        records["io_group"][header_row] = msg_group
        records["stamp"][header_row] = unix[msg_second]
        rows_per_second = np.bincount(msg_second, weights=sizes + 1,
                                      minlength=len(seconds)).astype(np.int64)
        records["second"] = np.repeat(unix, rows_per_second)
        return np.split(records, np.cumsum(rows_per_second)[:-1])


def _starts(counts: np.ndarray) -> np.ndarray:
    """Index of the first element of each group, for consecutive groups of these sizes."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _spoil_parity(rng: np.random.Generator, words: np.ndarray,
                  fraction: np.ndarray) -> np.ndarray:
    """Flip the parity bit of each word with its given probability."""
    bad = rng.random(len(words)) < fraction
    return words ^ (bad.astype(np.uint64) << np.uint64(_PARITY_SHIFT))
