"""The detector's metric model: every ``larpix_*`` series, accumulated chunk by chunk.

``update`` is the hot path. It reads each needed byte of a chunk once (two
strided copies of the packed 2.4 rows), builds fused integer keys and counts
them with ``np.bincount`` into dense arrays; label sets only appear at scrape
time. Per-chip detail is kept under compact *chip slots* so memory follows the
detector actually seen, not the 2^24 possible (io_group, io_channel, chip_id).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from exporter.metrics_clock import N_GROUPS, DataClock, Segments
from exporter.metrics_window import SlidingWindow, SyncGaps, WindowView
from exporter.packets import (
    DATA,
    PACKET_DTYPE,
    PACKET_TYPE_NAMES,
    SYNC,
    SYNC_PERIOD_TICKS,
    TIMESTAMP,
    TRIGGER,
    Chunk,
)

#: Type code under which rows with a packet_type outside 0-7 are counted.
UNKNOWN_TYPE = len(PACKET_TYPE_NAMES)
TYPE_LABELS = (*PACKET_TYPE_NAMES, "unknown")
N_TYPES = len(TYPE_LABELS)

#: ADC histogram: one bin per dataword value (buckets are summed at scrape time).
ADC_VALUES = 256

#: Readout-delay buckets: ``le = 4**j - 1`` ticks for j = 0..12 (0 .. 1.7 s), then +Inf.
DELAY_BUCKETS = 14
DELAY_EDGES = tuple(4**j - 1 for j in range(DELAY_BUCKETS - 1))

_S_SYNC = ord("S")
_CHIP_KEY_MASK = 0xFFFFFF   # io_group | io_channel << 8 | chip_id << 16 (bytes 0-2)
_RECEIPT_MASK = (1 << 31) - 1


def _check_layout() -> None:
    """The byte offsets ``update`` reads rely on the 2.4 dtype's packed layout."""
    offsets = {name: PACKET_DTYPE.fields[name][1] for name in PACKET_DTYPE.names}
    expected = {"io_group": 0, "io_channel": 1, "chip_id": 2, "packet_type": 3,
                "valid_parity": 6, "channel_id": 7, "timestamp": 8, "dataword": 16,
                "trigger_type": 17, "local_fifo": 18, "shared_fifo": 19,
                "receipt_timestamp": 32}
    if any(offsets[name] != at for name, at in expected.items()):
        raise ImportError("PACKET_DTYPE layout changed; update exporter.metrics_detector")


_check_layout()


def _column(packets: np.ndarray, offset: int, dtype: str) -> np.ndarray:
    """A strided view of ``dtype`` at byte ``offset`` of every row (no copy)."""
    return np.ndarray((len(packets),), dtype, buffer=packets, offset=offset,
                      strides=(packets.itemsize,))


class ChipSlots:
    """Compact numbering (1, 2, ...) of the (io_group, io_channel, chip_id) seen so far.

    Slot 0 is never a chip: keys send rows that must not count there.
    """

    def __init__(self) -> None:
        # Zero pages are only materialised where keys occur (a few MB at 2x2 scale).
        self._slot_of = np.zeros(_CHIP_KEY_MASK + 1, np.int32)
        self.keys = np.zeros(1, np.int64)

    @property
    def capacity(self) -> int:
        return len(self.keys)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        slots = self._slot_of.take(keys)
        if not slots.all():
            missing = slots == 0
            new = np.unique(keys[missing])
            self._slot_of[new] = np.arange(len(self.keys), len(self.keys) + len(new))
            self.keys = np.concatenate([self.keys, new])
            slots[missing] = self._slot_of.take(keys[missing])
        return slots

    @property
    def group(self) -> np.ndarray:
        return self.keys & 0xFF

    @property
    def channel(self) -> np.ndarray:
        return self.keys >> 8 & 0xFF

    @property
    def chip(self) -> np.ndarray:
        return self.keys >> 16


@dataclass(frozen=True)
class DetectorSnapshot:
    """Every detector metric at one moment; arrays are copies, safe to read unlocked."""

    chip_group: np.ndarray      # (slot,) io_group of each chip slot (slot 0: none)
    chip_channel: np.ndarray    # (slot,) io_channel
    chip_id: np.ndarray         # (slot,) chip_id
    packets: np.ndarray         # (slot, type) rows
    parity_errors: np.ndarray   # (slot, type) rows with valid_parity == 0
    fifo: np.ndarray            # (slot, 16) data rows by local | shared << 2 fifo bits
    adc: np.ndarray             # (io_group, value) data rows by dataword
    delay: np.ndarray           # (io_group, bucket) data rows by readout delay
    delay_sum: np.ndarray       # (io_group,) sum of readout delays
    sync: np.ndarray            # (io_group, sync type code)
    trigger: np.ndarray         # (io_group, trigger type code)
    sync_offset: np.ndarray     # (io_group,) last 'S' timestamp - 10,000,000
    has_sync_offset: np.ndarray
    sync_gaps: np.ndarray       # (io_group,)
    data_timestamp: np.ndarray  # (io_group,) latest timestamp packet, NO_TIME if none
    window: WindowView


class DetectorMetrics:
    """Counters, histograms and window gauges of the detector, fed chunk by chunk."""

    def __init__(self, rate_window: float = 10.0, hot_rate: float = 20.0) -> None:
        self.rate_window = rate_window
        self.hot_rate = hot_rate
        self._lock = threading.Lock()
        self._version = 0
        self._snapshot: tuple[int, DetectorSnapshot] | None = None
        self._clock = DataClock()
        self._chips = ChipSlots()
        self._window = SlidingWindow(rate_window, N_TYPES, hot_rate)
        self._gaps = SyncGaps()
        self._packets = np.zeros((1, N_TYPES, 2), np.int64)
        self._fifo = np.zeros((1, 16), np.int64)
        self._adc = np.zeros((N_GROUPS, ADC_VALUES), np.int64)
        self._delay = np.zeros((N_GROUPS, DELAY_BUCKETS), np.int64)
        self._delay_sum = np.zeros(N_GROUPS, np.int64)
        self._sync = np.zeros((N_GROUPS, 256), np.int64)
        self._trigger = np.zeros((N_GROUPS, 256), np.int64)
        self._sync_offset = np.zeros(N_GROUPS, np.int64)
        self._has_sync_offset = np.zeros(N_GROUPS, bool)

    @property
    def version(self) -> int:
        """Changes with every update: a cache of the exposition is valid while it holds."""
        return self._version

    def forget(self, source: str) -> None:
        """Drop the data-time carry of a file (gone, or to be read again from its start)."""
        with self._lock:
            self._clock.forget(source)

    def update(self, chunk: Chunk, source: str) -> None:
        packets = chunk.packets
        if packets.dtype != PACKET_DTYPE:
            raise TypeError(f"packets must have PACKET_DTYPE, got {packets.dtype}")
        if len(packets) == 0:
            return
        packets = np.ascontiguousarray(packets)
        with self._lock:
            self._update(packets, source, chunk.has_receipt_timestamp)
            self._version += 1

    def _update(self, packets: np.ndarray, source: str, has_receipt: bool) -> None:
        n = len(packets)
        head = _column(packets, 0, "<u8").copy()     # io_group .. channel_id
        head_bytes = head.view(np.uint8).reshape(n, 8)
        group, valid_parity, channel_id = head_bytes[:, 0], head_bytes[:, 6], head_bytes[:, 7]
        word = _column(packets, 16, "<u4").copy()    # dataword, trigger_type, fifos
        word_bytes = word.view(np.uint8).reshape(n, 4)
        kind = np.minimum(head_bytes[:, 3], UNKNOWN_TYPE)
        is_data = kind == DATA

        slot = self._chips.lookup(head.view(np.int64) & _CHIP_KEY_MASK)
        self._grow(self._chips.capacity)
        capacity = self._chips.capacity
        self._count_packets(slot, kind, valid_parity, capacity)
        data_slot = np.where(is_data, slot, 0)
        self._count_fifo(data_slot, word_bytes, capacity)
        data_group = np.where(is_data, group, np.intp(N_GROUPS))
        self._count_adc(data_group, word_bytes[:, 0])
        if has_receipt:
            self._count_delay(packets, data_group)

        timestamps = _column(packets, 8, "<u8")
        seg = self._clock.segments(source, group, kind == TIMESTAMP, timestamps)
        self._window.add(seg, group, kind, is_data, data_slot, channel_id, self._chips.group)
        self._count_sync_and_triggers(kind, group, word_bytes[:, 1], timestamps, seg)

    def _grow(self, capacity: int) -> None:
        old = len(self._packets)
        if capacity > old:
            self._packets = np.concatenate(
                [self._packets, np.zeros((capacity - old, N_TYPES, 2), np.int64)])
            self._fifo = np.concatenate([self._fifo, np.zeros((capacity - old, 16), np.int64)])
            self._window.grow(capacity)

    def _count_packets(self, slot: np.ndarray, kind: np.ndarray, valid_parity: np.ndarray,
                       capacity: int) -> None:
        code = kind * np.uint8(2)
        code += valid_parity == 0
        key = np.multiply(slot, N_TYPES * 2, dtype=np.intp)
        key += code
        self._packets += np.bincount(key, minlength=capacity * N_TYPES * 2).reshape(
            capacity, N_TYPES, 2)

    def _count_fifo(self, data_slot: np.ndarray, word_bytes: np.ndarray, capacity: int) -> None:
        flags = word_bytes[:, 3] & np.uint8(3)
        flags <<= 2
        flags |= word_bytes[:, 2] & np.uint8(3)
        key = np.multiply(data_slot, 16, dtype=np.intp)
        key += flags
        self._fifo += np.bincount(key, minlength=capacity * 16).reshape(capacity, 16)

    def _count_adc(self, data_group: np.ndarray, dataword: np.ndarray) -> None:
        key = data_group * ADC_VALUES
        key += dataword
        counts = np.bincount(key, minlength=(N_GROUPS + 1) * ADC_VALUES)
        self._adc += counts.reshape(N_GROUPS + 1, ADC_VALUES)[:N_GROUPS]

    def _count_delay(self, packets: np.ndarray, data_group: np.ndarray) -> None:
        receipt = _column(packets, 32, "<u4") & np.uint32(_RECEIPT_MASK)
        delay = np.subtract(receipt, _column(packets, 8, "<u8"), dtype=np.int64,
                            casting="unsafe")
        bucket = _delay_bucket(delay)
        key = data_group * DELAY_BUCKETS
        key += bucket
        counts = np.bincount(key, minlength=(N_GROUPS + 1) * DELAY_BUCKETS)
        self._delay += counts.reshape(N_GROUPS + 1, DELAY_BUCKETS)[:N_GROUPS]
        sums = np.bincount(data_group, weights=delay, minlength=N_GROUPS + 1)
        self._delay_sum += np.rint(sums[:N_GROUPS]).astype(np.int64)

    def _count_sync_and_triggers(self, kind: np.ndarray, group: np.ndarray,
                                 trigger_type: np.ndarray, timestamps: np.ndarray,
                                 seg: Segments) -> None:
        ts_segments = seg.is_timestamp
        data_seconds = (seg.group[ts_segments], seg.second[ts_segments])
        rows = np.flatnonzero(kind == SYNC)
        sync_group = group[rows].astype(np.intp)
        sync_type = trigger_type[rows]
        np.add.at(self._sync, (sync_group, sync_type), 1)
        s_rows = rows[sync_type == _S_SYNC]
        s_group = sync_group[sync_type == _S_SYNC]
        if len(s_rows):
            last = len(s_rows) - 1 - np.unique(s_group[::-1], return_index=True)[1]
            stamps = timestamps[s_rows[last]].astype(np.int64)
            self._sync_offset[s_group[last]] = stamps - SYNC_PERIOD_TICKS
            self._has_sync_offset[s_group[last]] = True
        synced_seconds = (s_group, seg.second[seg.of_rows(s_rows)])
        self._gaps.add(data_seconds, synced_seconds)

        rows = np.flatnonzero(kind == TRIGGER)
        np.add.at(self._trigger, (group[rows].astype(np.intp), trigger_type[rows]), 1)

    def snapshot(self) -> DetectorSnapshot:
        """A consistent copy of every metric (cached until the next update)."""
        with self._lock:
            cached = self._snapshot
            if cached is not None and cached[0] == self._version:
                return cached[1]
            snap = self._take_snapshot()
            self._snapshot = (self._version, snap)
            return snap

    def _take_snapshot(self) -> DetectorSnapshot:
        chips = self._chips
        latest = self._window.latest
        return DetectorSnapshot(
            chip_group=chips.group, chip_channel=chips.channel, chip_id=chips.chip,
            packets=self._packets.sum(axis=2),
            parity_errors=self._packets[:, :, 1].copy(),
            fifo=self._fifo.copy(),
            adc=self._adc.copy(), delay=self._delay.copy(), delay_sum=self._delay_sum.copy(),
            sync=self._sync.copy(), trigger=self._trigger.copy(),
            sync_offset=self._sync_offset.copy(), has_sync_offset=self._has_sync_offset.copy(),
            sync_gaps=self._gaps.gaps.copy(),
            data_timestamp=latest.copy(),
            window=self._window.view(chips.group),
        )


def _delay_bucket(delay: np.ndarray) -> np.ndarray:
    """Bucket j of each delay, ``4**(j-1) <= delay <= 4**j - 1`` (j = 0 for delay <= 0).

    The bit length of a positive integer is the exponent of its float64 (exact
    below 2**53); bucket j holds bit lengths 2j-1 and 2j.
    """
    exponent = np.maximum(delay, 0).astype(np.float64).view(np.int64) >> 52
    exponent -= 1022                      # bit length for delay >= 1; -1022 for 0
    exponent += 1
    exponent >>= 1
    return np.clip(exponent, 0, DELAY_BUCKETS - 1)
