"""The detector's metric model: every ``larpix_*`` series, accumulated chunk by chunk.

``update`` is the hot path. It reads the chunk's words, copied out of the
packed rows by the reader's helper thread (``Chunk.words``): the first word
(io_group, io_channel, chip_id, packet_type) in whole-chunk passes
(data-time segments, chip slots, the few non-data rows), the rest in blocks
small enough that every intermediate array stays in cache (see
``metrics.rows``), turned into fused uint32 keys and counted with
``np.add.at`` into dense int32 arrays that live for the whole run. Label
sets only appear at scrape time. Per-chip detail is kept under compact
*chip slots*, so memory follows the detector actually seen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from exporter.metrics.channel_counts import ChannelCounts, UncountedChannels
from exporter.metrics.channels import ChannelTable, ChannelTables
from exporter.metrics.checkpoint import AttributeArrays, Checkpointed, State, gather, scatter
from exporter.metrics.chip_detail import ChipDetail
from exporter.metrics.chips import ChipSlots, Tally, grow_axis, room_for
from exporter.metrics.clock import N_GROUPS, NO_TIME, DataClock, Segments
from exporter.metrics.memory import Scratch
from exporter.metrics.packed import packed_datawords
from exporter.metrics.rows import Block, Rows, fifo_code
from exporter.metrics.snapshot import DetectorSnapshot, PublishedSnapshots
from exporter.metrics.window import CHANNELS_PER_CHIP, SlidingWindow, SyncGaps
from exporter.packets import (
    CONFIG_READ,
    CONFIG_WRITE,
    DATA,
    DELAY_BUCKETS,
    FIFO_BITS,
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

_S_SYNC = ord("S")
#: Rows per block: intermediates (a few arrays of 8 bytes a row) stay in cache.
BLOCK_ROWS = 1 << 16
#: int32 counts are folded into int64 before this many rows could overflow them.
_FOLD_ROWS = 1 << 30


class DetectorMetrics(PublishedSnapshots):
    """Counters, histograms and window gauges of the detector, fed chunk by chunk.

    Gated (the service): scrapes see the snapshot of the last ``publish()``,
    which the ingest loop calls once the checkpoint holding those counts is
    on disk. Ungated (once mode, tests): scrapes see every update at once.
    """

    def __init__(self, rate_window: float = 10.0, hot_rate: float = 20.0,
                 gated: bool = False) -> None:
        self.rate_window = rate_window
        self.hot_rate = hot_rate
        self.gated = gated
        self._lock = threading.RLock()  # the channel tables share it
        self._changes = 0
        self._published: tuple[int, DetectorSnapshot] | None = None
        self._clock = DataClock()
        self._chips = ChipSlots()
        self._window = SlidingWindow(rate_window, N_TYPES, hot_rate)
        self._gaps = SyncGaps()
        self._unfolded_rows = 0
        self._parity = np.zeros((1, N_TYPES), np.int64)
        self._fifo = np.zeros((1, 16), np.int64)
        # (io_group + a row for non-data packets, delay bucket + "none", dataword)
        self._adc_delay = Tally((N_GROUPS + 1, DELAY_BUCKETS + 1, ADC_VALUES))
        self._delay_sum = np.zeros(N_GROUPS, np.int64)
        self._sync = np.zeros((N_GROUPS, 256), np.int64)
        self._trigger = np.zeros((N_GROUPS, 256), np.int64)
        self._sync_offset = np.zeros(N_GROUPS, np.int64)
        self._has_sync_offset = np.zeros(N_GROUPS, bool)
        self._detail = ChipDetail()
        self._scratch = Scratch()
        #: per-channel tables of the files read last (``checkpoint``/``restore`` with them)
        self.channels = ChannelTables(self._chips, self._lock, self._grow)
        self._tables: dict[str, tuple[int, ChannelTable]] = {}
        #: The checkpointed parts, restored in this order (counts per chip slot need the slots).
        #: The per-channel tables are not among them: their ADC histograms (~200 MB at 2x2
        #: scale) would make every round's checkpoint that big; after a restart the rows
        #: before the cursor are replayed into the table (``count_channels``; ``self.channels``
        #: keeps ``checkpoint``/``restore`` for a checkpoint written less often).
        self.components: dict[str, Checkpointed] = {
            "chips": self._chips, "window": self._window, "adc_delay": self._adc_delay,
            "gaps": self._gaps, "detail": AttributeArrays(self._detail, (
                "config", "clock_source", "has_clock_source")),
            "counts": AttributeArrays(self, ("_parity", "_fifo", "_delay_sum", "_sync",
                                             "_trigger", "_sync_offset", "_has_sync_offset")),
        }

    def checkpoint(self) -> State:
        with self._lock:
            return gather(self.components)

    def restore(self, state: State) -> None:
        """Continue from a checkpoint; the data-time carry of each file refills from new rows."""
        with self._lock:
            scatter(self.components, state)
            self._grow(self._chips.capacity)
            self._changes += 1

    def forget(self, source: str) -> None:
        """Drop the data-time carry of a file (gone, or to be read again from its start)."""
        with self._lock:
            self._clock.forget(source)
            self.channels.forget(source)

    def retire(self, source: str) -> None:
        """A finished file: drop its data-time carry (new rows would start it again); its
        counts, time span and per-channel table stay (the table until a waiting file needs
        it)."""
        with self._lock:
            self._clock.drop_carry(source)
            self.channels.finish(source)

    def grant_table(self, source: str) -> bool:
        """Give ``source``, waiting for a per-channel table, an empty one if one is free: the
        caller then counts its rows so far into it (``count_channels``)."""
        with self._lock:
            self._tables = {}
            return self.channels.grant(source)

    def data_span(self, source: str) -> tuple[int, int] | None:
        """Earliest and latest timestamp-packet unix time of a file (None: no timestamps)."""
        with self._lock:
            return self._clock.span(source)

    def update(self, chunk: Chunk, source: str) -> None:
        """Count one chunk of the file ``source``: a scrape sees all of it or none of it."""
        with self._lock:  # the scratch arrays are the lock holder's
            rows = Rows(chunk)
            if len(chunk.packets):
                self._update(rows, source)
            self._changes += 1

    def count_channels(self, chunk: Chunk, source: str) -> None:
        """Count rows into the per-channel table of ``source`` only: rows a restart replays,
        which the counters (restored from the checkpoint), window and data clock hold already.
        Scrapes and the checkpoint see no change."""
        rows = Rows(chunk)
        n = len(rows.ids)
        if not n:
            return
        with self._lock:
            self._tables = {}
            slot = self._chips.lookup(rows.ids)  # chips counted before: their slots exist
            self._grow(self._chips.capacity)
            channels = self.channels.counts(source)
            if channels is None:  # waiting for a table: its rows are counted in when it has one
                return
            channel, histogram_key = np.empty(n, np.intp), np.empty(n, np.intp)
            for of_block, of_other, block in _blocks(rows):
                self._count_channel_rows(channels, block, slot[of_block],
                                         rows.other[of_other] - of_block.start,
                                         channel[of_block], histogram_key[of_block])
            channels.add(channel, histogram_key)
            channels.add_rare(*rows.flagged(slot))

    def _update(self, rows: Rows, source: str) -> None:
        n = len(rows.ids)
        other = rows.other  # every row but data: few
        other_kind = np.minimum(rows.packet_type[other], UNKNOWN_TYPE)
        is_special = other_kind > CONFIG_READ  # timestamp, message, sync, trigger
        special, special_kind = other[is_special], other_kind[is_special]
        slot = self._chips.lookup(rows.ids, self._scratch.take("slot", n, np.int32))
        self._grow(self._chips.capacity)
        channels = self.channels.counts(source)
        if channels is None:  # waiting for a table: counted for the totals only
            channels = UncountedChannels(self._chips.capacity)
        stamps = special[special_kind == TIMESTAMP]
        seg = self._clock.segments(source, rows.group, stamps, rows.timestamp(stamps))
        self.channels.take_window(source, seg.group[seg.second != NO_TIME],
                                  lambda: self._window.view(self._chips.group)[1]
                                  .channel_counts.reshape(-1))
        ring = self._window.ring_slots(seg, self._chips.group)
        # The outside slot is only ever summed per type: its data rows all count in column 0,
        # so that they touch one counter per chip.
        channel_mask = np.where(ring == self._window.outside, 0, CHANNELS_PER_CHIP - 1
                                ).astype(np.uint32)
        ring = ring.astype(np.intp)  # keys are intp: np.add.at would convert any other
        outside = ring == self._window.outside
        channel = self._scratch.take("channel", n, np.intp)
        histogram_key = self._scratch.take("histogram_key", n, np.intp)
        for of_block, of_other, block in _blocks(rows):
            start = of_block.start
            block_other = other[of_other] - start
            block_slot = slot[of_block]
            adc = self._count_channel_rows(channels, block, block_slot, block_other,
                                           channel[of_block], histogram_key[of_block])
            segments, seg_starts, seg_lengths = seg.within(start, of_block.stop)
            if outside[segments].all():  # a backlog: only the totals count these rows
                self._window.count_other_outside(block_slot[block_other], other_kind[of_other])
            else:
                chip_key = np.repeat(ring[segments], seg_lengths)  # (ring slot, chip slot)
                chip_key *= self._window.room
                chip_key += block_slot
                self._count_slots(block, chip_key * self._window.columns,
                                  np.repeat(channel_mask[segments], seg_lengths),
                                  block_other, other_kind[of_other])
                self._window.add_adc(chip_key, adc, ring[segments])
            self._count_adc_and_delay(block, seg.group[segments], seg_starts)
        self._window.count_data(channels.add(channel, histogram_key))
        self._window.unpack_adc()
        config = other[(other_kind == CONFIG_WRITE) | (other_kind == CONFIG_READ)]
        self._detail.count_config(slot[config], rows.packet_type[config],
                                  rows.downstream_marker(config))
        self._count_rare(channels, *rows.flagged(slot))
        self._count_sync_and_triggers(rows, special, special_kind, seg)

        self._unfolded_rows += n
        if self._unfolded_rows > _FOLD_ROWS:
            self._adc_delay.fold()
            self._window.fold_outside()
            self._unfolded_rows = 0

    def _grow(self, capacity: int) -> None:
        """Room for chip slots ``0 .. capacity-1`` (``room_for``); rows past the chips seen
        stay 0."""
        if capacity > len(self._parity):
            room = room_for(capacity)
            self._parity = grow_axis(self._parity, 0, room)
            self._fifo = grow_axis(self._fifo, 0, room)
            self._window.grow(room)
            self._detail.grow(room)

    def _count_channel_rows(self, channels: ChannelCounts | UncountedChannels, block: Block,
                            slot: np.ndarray, other: np.ndarray, channel: np.ndarray,
                            key: np.ndarray) -> np.ndarray:
        """A block's flat channels and histogram keys into ``channel`` and ``key`` (counted
        with the chunk's), its ADC sums into ``channels``; returns its packed datawords."""
        block.channels_into(slot, other, channel, key, len(channels.count))
        n = len(channel)
        adc = packed_datawords(block.word, other, self._scratch.take("packed", n, np.uint64),
                               self._scratch.take("square", n, np.uint64))
        channels.add_sums(channel, adc)
        return adc

    def _count_slots(self, block: Block, key: np.ndarray, channel_mask: np.ndarray,
                     other: np.ndarray, other_kind: np.ndarray) -> None:
        """Rows by (ring slot, chip slot, channel_id of data packets or 64 + type).

        ``key`` holds the (ring slot, chip slot) part and is completed in place;
        ``channel_mask`` (per row) is 63, or 0 where channels are not kept apart;
        ``other`` are the block's non-data rows and ``other_kind`` their types.
        """
        column = block.channel_id()
        column &= channel_mask
        column[other] = other_kind + np.uint32(CHANNELS_PER_CHIP)
        key += column
        self._window.count(key)

    def _count_rare(self, channels: ChannelCounts | UncountedChannels, slot: np.ndarray,
                    packet_type: np.ndarray, valid_parity: np.ndarray, word: np.ndarray,
                    channel_id: np.ndarray) -> None:
        """Rows with valid_parity == 0 or a FIFO flag: few, so counted apart."""
        kind = np.minimum(packet_type, UNKNOWN_TYPE)
        bad = valid_parity == 0
        np.add.at(self._parity.reshape(-1), slot[bad] * N_TYPES + kind[bad], 1)
        flagged = (word & np.uint32(FIFO_BITS) != 0) & (kind == DATA)
        np.add.at(self._fifo.reshape(-1), slot[flagged] * 16 + fifo_code(word[flagged]), 1)
        channels.add_rare(slot, kind, valid_parity, word, channel_id)

    def _count_adc_and_delay(self, block: Block, seg_group: np.ndarray,
                             seg_starts: np.ndarray) -> None:
        """Data rows by (io_group, delay bucket, dataword): both histograms in one count
        (the reader made the index, ``PacketWords.adc_delay``), and the delays' sum by
        io_group. ``seg_group`` and ``seg_starts`` are the io_groups and first rows of the
        block's segments."""
        self._adc_delay.add(block.adc_delay)
        if block.delay is not None:  # 0 for non-data rows
            np.add.at(self._delay_sum, seg_group,
                      np.add.reduceat(block.delay, seg_starts, dtype=np.int64))

    def _count_sync_and_triggers(self, rows: Rows, special: np.ndarray, kind: np.ndarray,
                                 seg: Segments) -> None:
        """``kind`` is the type of each of the ``special`` rows."""
        sync = special[kind == SYNC]
        sync_group = rows.group[sync].astype(np.intp)
        sync_type = rows.trigger_type[sync]
        self._detail.note_syncs(sync_group, rows.dataword(sync))
        np.add.at(self._sync, (sync_group, sync_type), 1)
        s_sync = sync[sync_type == _S_SYNC]
        s_group = sync_group[sync_type == _S_SYNC]
        if len(s_sync):
            last = len(s_sync) - 1 - np.unique(s_group[::-1], return_index=True)[1]
            stamps = rows.timestamp(s_sync[last]).astype(np.int64)
            self._sync_offset[s_group[last]] = stamps - SYNC_PERIOD_TICKS
            self._has_sync_offset[s_group[last]] = True
        self._gaps.add((seg.group[seg.is_timestamp], seg.second[seg.is_timestamp]),
                       (s_group, seg.second[seg.of_rows(s_sync)]))

        trigger = special[kind == TRIGGER]
        np.add.at(self._trigger, (rows.group[trigger].astype(np.intp),
                                  rows.trigger_type[trigger]), 1)

    def _take_snapshot(self) -> DetectorSnapshot:
        chips = self._chips
        groups = np.unique(chips.group[1:])  # io_groups with chips: the others have no data
        seen = self._adc_delay.total(groups)
        adc = np.zeros((N_GROUPS, ADC_VALUES), np.int64)
        adc[groups] = seen.sum(axis=1)
        delay = np.zeros((N_GROUPS, DELAY_BUCKETS), np.int64)
        delay[groups] = seen[:, :DELAY_BUCKETS].sum(axis=2)
        packets, window = self._window.view(chips.group)
        return DetectorSnapshot(
            chip_group=chips.group, chip_channel=chips.channel, chip_id=chips.chip,
            packets=packets, parity_errors=self._parity[:len(chips.keys)].copy(),
            fifo=self._fifo[:len(chips.keys)].copy(),
            adc=adc, delay=delay,
            delay_sum=self._delay_sum.copy(),
            sync=self._sync.copy(), trigger=self._trigger.copy(),
            sync_offset=self._sync_offset.copy(), has_sync_offset=self._has_sync_offset.copy(),
            sync_gaps=self._gaps.gaps.copy(), data_timestamp=self._window.latest.copy(),
            window=window, config=self._detail.config[:len(chips.keys)].copy(),
            clock_source=self._detail.clock_source.copy(),
            has_clock_source=self._detail.has_clock_source.copy(),
        )


def _blocks(rows: Rows) -> Iterator[tuple[slice, slice, Block]]:
    """The chunk in blocks of ``BLOCK_ROWS``: its rows, the slice of ``rows.other`` among
    them, and their words."""
    n = len(rows.ids)
    bounds = np.searchsorted(rows.other, np.arange(0, n + BLOCK_ROWS, BLOCK_ROWS))
    for i, start in enumerate(range(0, n, BLOCK_ROWS)):
        of_block = slice(start, min(start + BLOCK_ROWS, n))
        yield of_block, slice(bounds[i], bounds[i + 1]), rows.block(of_block)
