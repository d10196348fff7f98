"""Quantities of one batch of packets that several built-in plots need.

Each plot gets them from the rows it was given. The per-channel sums are
counted once per batch and shared (``per_batch``), but only for a read-only
batch: the renderer gives every built-in plot the same read-only view of the
new rows, while a plugin from elsewhere gets a writeable copy of its own, so
a plugin that changes ``fh["packets"]`` in place cannot feed another plot
numbers from rows it was not given.
Not a plot module (its name starts with ``_``): discovery does not scan it.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable

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


_last_batch = threading.local()


def per_batch(func: Callable[[np.ndarray], tuple[np.ndarray, ...]]
              ) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
    """``func(packets)`` counted once per read-only batch and handed out read-only.

    Several plots need the same sums of a batch; the renderer passes them all the
    same read-only array object, whose rows cannot change between plots. The last
    result per thread is kept (a few MB) until the next batch; a writeable array
    is always counted afresh.
    """

    @functools.wraps(func)
    def shared(packets: np.ndarray) -> tuple[np.ndarray, ...]:
        if packets.flags.writeable:
            return func(packets)
        last = getattr(_last_batch, func.__name__, None)
        if last is not None and last[0]() is packets:
            return last[1]
        result = func(packets)
        for array in result:
            array.flags.writeable = False
        setattr(_last_batch, func.__name__, (weakref.ref(packets), result))
        return result

    return shared


@per_batch
def channel_sums(packets: np.ndarray) -> tuple[np.ndarray, ...]:
    """Data packets per channel: (keys, hits, sum of ADC, sum of ADC squared).

    A channel key is ``io_group << 24 | io_channel << 16 | chip_id << 8 | channel_id``,
    so keys sort by io_group, io_channel, chip and channel.

    Counted with ``bincount`` over a dense index (the (io_group, io_channel) pairs
    present, times the chip_id and channel_id ranges present) rather than by sorting:
    a few MB of bins, not one bin per possible chip and channel of every pair.
    """
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
    return (keys, hits[seen].astype(np.float64),
            np.bincount(dense, weights=adc, minlength=size)[seen],
            np.bincount(dense, weights=adc * adc, minlength=size)[seen])


@per_batch
def tile_channel_sums(packets: np.ndarray) -> tuple[np.ndarray, ...]:
    """``channel_sums`` per channel of each tile: (keys, hits, sum of ADC, sum of ADC squared).

    A key is ``((io_group * 1000 + tile) * 256 + chip_id) * 64 + channel_id``; keys are
    sorted and distinct (a tile's four io_channels summed).
    """
    keys, hits, adc, squares = channel_sums(packets)
    tiles = (keys >> 24) * 1000 + tile_of((keys >> 16) & 255)
    unique, inverse = np.unique(tiles * 16384 + ((keys >> 8) & 255) * 64 + (keys & 255),
                                return_inverse=True)
    return (unique, *(np.bincount(inverse, weights=column, minlength=len(unique))
                      for column in (hits, adc, squares)))


def timestamp_spans(packets: np.ndarray) -> dict[int, tuple[float, float]]:
    """First and last unix time of the timestamp packets of each io_group."""
    is_stamp = packets["packet_type"] == TIMESTAMP
    groups, stamps = packets["io_group"][is_stamp], packets["timestamp"][is_stamp]
    return {int(group): (float(mine.min()), float(mine.max()))
            for group in np.unique(groups) for mine in [stamps[groups == group]]}


def channel_label(key: int) -> str:
    """``io_group-io_channel-chip-channel`` of a channel key (see ``channel_sums``)."""
    return f"{key >> 24}-{(key >> 16) & 255}-{(key >> 8) & 255}-{key & 255}"


def tile_key(io_group: np.ndarray, io_channel: np.ndarray) -> np.ndarray:
    """io_group * 1000 + tile of data packets."""
    return io_group.astype(np.int64) * 1000 + tile_of(io_channel)
