"""Quantities of one batch of packets that several built-in plots need.

The per-channel sums are counted at most once per batch (``Batch``). The
renderer gives every built-in plot of one render the same ``fh.shared`` dict,
hence one ``Batch`` of the same read-only rows, while a plugin from elsewhere
gets a writeable copy and a dict of its own: a plugin that changes
``fh["packets"]`` in place cannot feed another plot numbers from rows it was
not given.
Not a plot module (its name starts with ``_``): discovery does not scan it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from exporter.metrics.clock import NO_TIME, DataClock
from exporter.packets import DATA, TIMESTAMP, tile_of

#: A plot's clock follows one file (one instance per file), so one source key is enough.
_ONE_FILE = ""


def data_times(clock: DataClock, packets: np.ndarray) -> np.ndarray:
    """Unix data time of each packet, NaN before the first timestamp packet of its io_group.

    The metrics' rule and code (``DataClock``); ``clock`` carries the latest
    timestamp per io_group from one batch to the next.
    """
    seconds = clock.row_seconds(_ONE_FILE, packets)
    return np.where(seconds == NO_TIME, np.nan, seconds.astype(np.float64))


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for array in arrays:
        array.flags.writeable = False
    return arrays


class Batch:
    """One batch of packets and the sums several plots need, each counted at most once."""

    def __init__(self, packets: np.ndarray) -> None:
        self.packets = packets
        self._channel_sums: tuple[np.ndarray, ...] | None = None
        self._tile_channel_sums: tuple[np.ndarray, ...] | None = None

    @classmethod
    def of(cls, fh: Mapping) -> Batch:
        """The batch of ``fh``'s render (shared through ``fh.shared``), else one of its own."""
        shared = getattr(fh, "shared", None)
        if shared is None:
            return cls(fh["packets"])
        return shared.setdefault("batch", cls(fh["packets"]))

    def channel_sums(self) -> tuple[np.ndarray, ...]:
        """Data packets per channel: (keys, hits, sum of ADC, sum of ADC squared).

        A channel key is ``io_group << 24 | io_channel << 16 | chip_id << 8 | channel_id``,
        so keys sort by io_group, io_channel, chip and channel.

        Counted with ``bincount`` over a dense index (the (io_group, io_channel) pairs
        present, times the chip_id and channel_id ranges present) rather than by sorting:
        a few MB of bins, not one bin per possible chip and channel of every pair.
        """
        if self._channel_sums is not None:
            return self._channel_sums
        packets = self.packets
        data = packets["packet_type"] == DATA
        pair = (packets["io_group"][data].astype(np.int64) << 8) | packets["io_channel"][data]
        chip = packets["chip_id"][data].astype(np.int64)
        channel = packets["channel_id"][data].astype(np.int64)
        used = np.zeros(1 << 16, dtype=bool)
        used[pair] = True
        pairs = np.flatnonzero(used)
        index = np.zeros(1 << 16, dtype=np.int64)
        index[pairs] = np.arange(len(pairs))
        n_chips = int(chip.max()) + 1 if len(chip) else 1
        n_channels = int(channel.max()) + 1 if len(channel) else 1
        dense = (index[pair] * n_chips + chip) * n_channels + channel
        size = len(pairs) * n_chips * n_channels
        hits = np.bincount(dense, minlength=size)
        seen = np.flatnonzero(hits)
        adc = packets["dataword"][data].astype(np.float64)
        pair_index, cell = np.divmod(seen, n_chips * n_channels)
        keys = (pairs[pair_index] << 16) | ((cell // n_channels) << 8) | (cell % n_channels)
        self._channel_sums = _read_only(
            keys, hits[seen].astype(np.float64),
            np.bincount(dense, weights=adc, minlength=size)[seen],
            np.bincount(dense, weights=adc * adc, minlength=size)[seen])
        return self._channel_sums

    def tile_channel_sums(self) -> tuple[np.ndarray, ...]:
        """``channel_sums`` per channel of each tile: (keys, hits, sum of ADC, sum of ADC squared).

        A key is ``((io_group * 1000 + tile) * 256 + chip_id) * 64 + channel_id``; keys are
        sorted and distinct (a tile's four io_channels summed).
        """
        if self._tile_channel_sums is not None:
            return self._tile_channel_sums
        keys, hits, adc, squares = self.channel_sums()
        tiles = (keys >> 24) * 1000 + tile_of((keys >> 16) & 255)
        unique, inverse = np.unique(tiles * 16384 + ((keys >> 8) & 255) * 64 + (keys & 255),
                                    return_inverse=True)
        self._tile_channel_sums = _read_only(
            unique, *(np.bincount(inverse, weights=column, minlength=len(unique))
                      for column in (hits, adc, squares)))
        return self._tile_channel_sums


def timestamp_spans(packets: np.ndarray) -> dict[int, tuple[float, float]]:
    """First and last unix time of the timestamp packets of each io_group."""
    is_stamp = packets["packet_type"] == TIMESTAMP
    groups, stamps = packets["io_group"][is_stamp], packets["timestamp"][is_stamp]
    return {int(group): (float(mine.min()), float(mine.max()))
            for group in np.unique(groups) for mine in [stamps[groups == group]]}


def channel_label(key: int) -> str:
    """``io_group-io_channel-chip-channel`` of a channel key (see ``Batch.channel_sums``)."""
    return f"{key >> 24}-{(key >> 16) & 255}-{(key >> 8) & 255}-{key & 255}"


def tile_key(io_group: np.ndarray, io_channel: np.ndarray) -> np.ndarray:
    """io_group * 1000 + tile of data packets."""
    return io_group.astype(np.int64) * 1000 + tile_of(io_channel)
