"""The per-channel columns the checks read, joined with the reference and the masks.

The checks work on plain numpy columns. ``ChannelColumns`` is what they need
of a per-channel table (the monitor's ``ChannelTable`` has these and more);
``join`` lines up the run's channels, the reference's and the masked ones in
one ``ChannelView``, keyed by (io_group, io_channel, chip_id, channel_id).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from exporter.quality.robust import pedestal_and_noise

if TYPE_CHECKING:
    from exporter.quality.masks import ChannelMasks
    from exporter.quality.reference import Reference

ADC_VALUES = 256
#: Channels whose histograms are turned into pedestal and noise together: small enough
#: that no single numpy call holds the interpreter for long (the service's request and
#: ingest threads wait for it), large enough that the per-call overhead does not matter.
_BLOCK_CHANNELS = 1 << 11


class ChannelColumns(Protocol):
    """One row per channel seen in a run (numpy columns of equal length)."""

    io_group: np.ndarray
    io_channel: np.ndarray
    chip_id: np.ndarray
    channel_id: np.ndarray
    count: np.ndarray          # data packets read
    rate_hz: np.ndarray        # over the rate window
    parity_errors: np.ndarray
    fifo_full: np.ndarray
    adc_histogram: np.ndarray       # (channels, 256) data packets by dataword


def channel_key(io_group, io_channel, chip_id, channel_id) -> np.ndarray:
    """One int64 per channel, ordered as (io_group, io_channel, chip_id, channel_id)."""
    return (np.asarray(io_group, np.int64) << 24 | np.asarray(io_channel, np.int64) << 16
            | np.asarray(chip_id, np.int64) << 8 | np.asarray(channel_id, np.int64))


def key_parts(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(io_group, io_channel, chip_id, channel_id) of ``channel_key`` values."""
    return key >> 24 & 255, key >> 16 & 255, key >> 8 & 255, key & 255


def tile_of(io_channel: np.ndarray) -> np.ndarray:
    """Tile of an io_channel; io_channel 0 (the PACMAN's own words) is tile 0."""
    io_channel = np.asarray(io_channel, np.int64)
    return np.where(io_channel > 0, (io_channel - 1) // 4 + 1, 0)


@dataclass(frozen=True)
class RunChannels:
    """A run's per-channel statistics, as the checks use them (see ``from_columns``)."""

    key: np.ndarray            # sorted, unique channel keys
    count: np.ndarray
    rate_hz: np.ndarray
    parity_errors: np.ndarray
    fifo_full: np.ndarray
    pedestal: np.ndarray       # clipped mean of the ADC (NaN: no data)
    noise: np.ndarray          # clipped width of the ADC

    @classmethod
    def from_columns(cls, table: ChannelColumns) -> RunChannels:
        key = channel_key(table.io_group, table.io_channel, table.chip_id, table.channel_id)
        order = np.argsort(key, kind="stable")
        pedestal, noise = np.full(len(key), np.nan), np.full(len(key), np.nan)
        histogram = np.asarray(table.adc_histogram)
        for start in range(0, len(key), _BLOCK_CHANNELS):  # bounded float intermediates
            time.sleep(0)  # let the other threads in between blocks
            rows = order[start:start + _BLOCK_CHANNELS]
            pedestal[start:start + len(rows)], noise[start:start + len(rows)] = (
                pedestal_and_noise(histogram[rows]))
        return cls(key[order], _column(table.count, order), _column(table.rate_hz, order, float),
                   _column(table.parity_errors, order), _column(table.fifo_full, order),
                   pedestal, noise)

    @classmethod
    def empty(cls) -> RunChannels:
        z = np.zeros(0, np.int64)
        return cls(z, z, z.astype(float), z, z, z.astype(float), z.astype(float))


def _column(values, order: np.ndarray, dtype=np.int64) -> np.ndarray:
    return np.asarray(values, dtype)[order]


@dataclass(frozen=True)
class ChannelView:
    """Every channel a check can speak about: seen now, in the reference, or masked.

    Columns are aligned on ``key``; channels not seen now have count 0 and NaN
    pedestal; ``ref_*`` are NaN/0 for channels the reference does not hold, or
    when there is no reference.
    """

    key: np.ndarray
    io_group: np.ndarray
    tile: np.ndarray
    chip: np.ndarray           # (io_group, io_channel, chip_id) as one key
    count: np.ndarray
    rate_hz: np.ndarray
    parity_errors: np.ndarray
    fifo_full: np.ndarray
    pedestal: np.ndarray
    noise: np.ndarray
    disabled: np.ndarray       # masked in the ASIC configs
    has_reference: bool
    ref_count: np.ndarray
    ref_pedestal: np.ndarray
    ref_noise: np.ndarray

    def __len__(self) -> int:
        return len(self.key)


def join(run: RunChannels, reference: Reference | None = None,
         masks: ChannelMasks | None = None) -> ChannelView:
    """The union of the run's, the reference's and the masked channels, sorted by key."""
    parts = [run.key]
    if reference is not None:
        parts.append(reference.key[reference.count > 0])
    masked = masks.masked_keys() if masks is not None else np.zeros(0, np.int64)
    parts.append(masked)
    key = np.unique(np.concatenate(parts))
    at = np.searchsorted(key, run.key)

    def spread(values: np.ndarray, fill) -> np.ndarray:
        out = np.full(len(key), fill, dtype=np.result_type(values.dtype, type(fill)))
        out[at] = values
        return out

    ref_count = np.zeros(len(key), np.int64)
    ref_pedestal = np.full(len(key), np.nan)
    ref_noise = np.full(len(key), np.nan)
    if reference is not None:
        found = np.searchsorted(reference.key, key).clip(0, max(len(reference.key) - 1, 0))
        known = (reference.key[found] == key) if len(reference.key) else np.zeros(len(key), bool)
        ref_count[known] = reference.count[found[known]]
        ref_pedestal[known] = reference.pedestal[found[known]]
        ref_noise[known] = reference.noise[found[known]]
    group, io_channel, _, _ = key_parts(key)
    return ChannelView(
        key=key, io_group=group, tile=tile_of(io_channel), chip=key >> 8,
        count=spread(run.count, 0), rate_hz=spread(run.rate_hz, 0.0),
        parity_errors=spread(run.parity_errors, 0), fifo_full=spread(run.fifo_full, 0),
        pedestal=spread(run.pedestal, np.nan), noise=spread(run.noise, np.nan),
        disabled=np.isin(key, masked), has_reference=reference is not None,
        ref_count=ref_count, ref_pedestal=ref_pedestal, ref_noise=ref_noise)
