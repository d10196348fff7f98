"""Ground truth of a simulated file, tallied from the simulator's own records.

The tally sees each batch of rows exactly as written, together with the data
second the simulator put each row in (-1: none), and keeps what the metric
definitions of docs/architecture.md need: counters by label set, the last
values of the gauges, and per-second counts of the last ``rate_window``
seconds. It never uses the monitor's reader or metrics code.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from exporter.packets import (
    DATA,
    PACKET_TYPE_NAMES,
    PARITY_TYPES,
    SYNC,
    SYNC_PERIOD_TICKS,
    TIMESTAMP,
    TRIGGER,
    sync_type_label,
)
from exporter.simulate.truth_channels import ChannelTally

_S = ord("S")
#: Key ranges up to this size are counted with ``bincount`` rather than a sort.
_BINCOUNT_RANGE = 1 << 20


def truth_path(path: str | Path) -> Path:
    """Where the ground truth of a simulated file lives: ``<file>.truth.json``."""
    return Path(f"{path}.truth.json")


def detector_path(path: str | Path) -> Path:
    """Where the simulated detector of a file is described: ``<file>.detector.json``."""
    return Path(f"{path}.detector.json")


def _count(counter: Counter, keys: np.ndarray) -> None:
    """Add the occurrences of each integer key to ``counter``."""
    if len(keys) == 0:
        return
    keys = keys.astype(np.int64)
    low = int(keys.min())
    if int(keys.max()) - low < _BINCOUNT_RANGE:
        counts = np.bincount(keys - low)
        values = np.flatnonzero(counts)
        values, counts = values + low, counts[values]
    else:
        values, counts = np.unique(keys, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        counter[value] += count


class TruthTally:
    """Counts of everything the monitor must show, updated batch by batch."""

    def __init__(self, fmt: str, rate_window: float = 10.0, hot_rate: float = 20.0,
                 has_receipt_timestamp: bool = True) -> None:
        self.fmt = fmt
        self.rate_window = rate_window
        self.hot_rate = hot_rate
        self.has_receipt_timestamp = has_receipt_timestamp
        self.rows = 0
        self.packets = 0
        self._packets: Counter = Counter()        # (g << 16 | io_channel << 8 | type)
        self._data: Counter = Counter()           # (g << 16 | io_channel << 8 | chip)
        self._parity: Counter = Counter()         # (g << 8 | io_channel)
        self._fifo: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self._sync: Counter = Counter()           # (g << 8 | sync type)
        self._trigger: Counter = Counter()        # (g << 8 | trigger type)
        self._adc: dict[int, np.ndarray] = {}
        self._delay: dict[int, Counter] = defaultdict(Counter)
        self._latest_time: dict[int, int] = {}
        self._sync_offset: dict[int, int] = {}
        self._data_seconds: dict[int, set[int]] = defaultdict(set)
        self._synced_seconds: dict[int, set[int]] = defaultdict(set)
        # io_group -> second -> (packets per type, channel keys, their counts)
        self._window: dict[int, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = (
            defaultdict(dict))
        self._channels = ChannelTally(rate_window, hot_rate)

    def add(self, rows: np.ndarray, seconds: np.ndarray, file_rows: int) -> None:
        """Count one written batch: ``rows`` (2.4 dtype), data second of each, rows it added."""
        self.rows += file_rows
        self.packets += len(rows)
        group = rows["io_group"].astype(np.int64)
        channel = rows["io_channel"].astype(np.int64)
        kind = rows["packet_type"].astype(np.int64)
        group_channel = group << 8 | channel
        _count(self._packets, group_channel << 8 | kind)

        data = kind == DATA
        _count(self._data, (group_channel << 8 | rows["chip_id"])[data])
        parity_error = np.isin(kind, PARITY_TYPES) & (rows["valid_parity"] == 0)
        _count(self._parity, group_channel[parity_error])
        for fifo in ("local", "shared"):
            flags = rows[f"{fifo}_fifo"][data]
            for level, bit in (("half", 1), ("full", 2)):
                _count(self._fifo[fifo, level], group_channel[data][flags & bit > 0])
        sync = kind == SYNC
        _count(self._sync, (group << 8 | rows["trigger_type"])[sync])
        _count(self._trigger, (group << 8 | rows["trigger_type"])[kind == TRIGGER])
        s_sync = sync & (rows["trigger_type"] == _S)
        self._channels.add(rows, seconds)
        for g in np.unique(group).tolist():
            self._add_group(g, rows, np.flatnonzero(group == g), kind, seconds, s_sync)

    def _add_group(self, g: int, rows: np.ndarray, mine: np.ndarray, kind: np.ndarray,
                   seconds: np.ndarray, s_sync: np.ndarray) -> None:
        """Per-io_group parts of ``add``; ``mine`` indexes the io_group's rows."""
        kind, seconds = kind[mine], seconds[mine]
        data = mine[kind == DATA]
        if len(data):
            adc = np.bincount(rows["dataword"][data], minlength=256)
            self._adc[g] = self._adc.get(g, np.zeros(256, np.int64)) + adc
            if self.has_receipt_timestamp:
                delay = (rows["receipt_timestamp"][data].astype(np.int64) % (1 << 31)
                         - rows["timestamp"][data].astype(np.int64))
                _count(self._delay[g], delay)
        timestamps = kind == TIMESTAMP
        if timestamps.any():
            latest = int(rows["timestamp"][mine[timestamps]].max())
            self._latest_time[g] = max(self._latest_time.get(g, 0), latest)
        synced = s_sync[mine]
        if synced.any():
            last = int(rows["timestamp"][mine[synced][-1]])
            self._sync_offset[g] = last - SYNC_PERIOD_TICKS
        timed = seconds >= 0
        self._data_seconds[g].update(np.unique(seconds[timestamps & timed]).tolist())
        self._synced_seconds[g].update(np.unique(seconds[synced & timed]).tolist())
        self._add_window(g, rows, mine[timed], kind[timed], seconds[timed])

    def _add_window(self, g: int, rows: np.ndarray, index: np.ndarray, kind: np.ndarray,
                    seconds: np.ndarray) -> None:
        """Per-second counts of the seconds that can still fall in the window.

        ``index`` gives the io_group's rows that have a data time. The simulator
        emits data seconds in increasing order, so they are sorted by second.
        """
        if len(seconds) == 0:
            return
        begin = np.searchsorted(seconds, seconds[-1] - self.rate_window - 1)
        index, kind, seconds = index[begin:], kind[begin:], seconds[begin:]
        channel_key = (rows["io_channel"][index].astype(np.int64) << 16
                       | rows["chip_id"][index].astype(np.int64) << 8
                       | rows["channel_id"][index])
        window = self._window[g]
        present = np.unique(seconds)
        bounds = np.searchsorted(seconds, np.append(present, present[-1] + 1))
        for s, lo, hi in zip(present.tolist(), bounds[:-1], bounds[1:], strict=True):
            types = np.bincount(kind[lo:hi], minlength=len(PACKET_TYPE_NAMES))
            keys, counts = np.unique(channel_key[lo:hi][kind[lo:hi] == DATA],
                                     return_counts=True)
            if s in window:
                old_types, old_keys, old_counts = window[s]
                keys, inverse = np.unique(np.concatenate([old_keys, keys]), return_inverse=True)
                counts = np.bincount(inverse, weights=np.concatenate([old_counts, counts]),
                                     minlength=len(keys)).astype(np.int64)
                types = types + old_types
            window[s] = (types, keys, counts)
        latest = max(window)
        for s in [s for s in window if s < latest - self.rate_window]:
            del window[s]

    def snapshot(self) -> dict:
        """The truth document (schema: docs/architecture.md, "Simulator ground truth")."""
        m: dict[str, list[dict]] = {}

        def put(name: str, labels: dict[str, str], value: float) -> None:
            if value:
                m.setdefault(name, []).append({"labels": labels, "value": value})

        for key, n in sorted(self._packets.items()):
            put("larpix_packets_total", {"io_group": str(key >> 16),
                                         "io_channel": str(key >> 8 & 255),
                                         "packet_type": PACKET_TYPE_NAMES[key & 255]}, n)
        for key, n in sorted(self._data.items()):
            put("larpix_data_packets_total", {"io_group": str(key >> 16),
                                              "io_channel": str(key >> 8 & 255),
                                              "chip_id": str(key & 255)}, n)
        for key, n in sorted(self._parity.items()):
            put("larpix_parity_errors_total", _group_channel(key), n)
        for (fifo, level), counter in sorted(self._fifo.items()):
            for key, n in sorted(counter.items()):
                put("larpix_fifo_flags_total",
                    {**_group_channel(key), "fifo": fifo, "level": level}, n)
        for key, n in sorted(self._sync.items()):
            put("larpix_sync_packets_total",
                {"io_group": str(key >> 8), "sync_type": sync_type_label(key & 255)}, n)
        for key, n in sorted(self._trigger.items()):
            put("larpix_trigger_packets_total",
                {"io_group": str(key >> 8), "trigger_type": str(key & 255)}, n)
        for g, seconds in sorted(self._data_seconds.items()):
            final = [s for s in seconds if s < max(seconds)] if seconds else []
            put("larpix_sync_gaps_total", {"io_group": str(g)},
                sum(s not in self._synced_seconds[g] for s in final))
        for g, offset in sorted(self._sync_offset.items()):
            put("larpix_sync_offset_ticks", {"io_group": str(g)}, offset)
        for g, latest in sorted(self._latest_time.items()):
            put("larpix_data_timestamp_seconds", {"io_group": str(g)}, latest)
        self._window_gauges(put)
        latest = {g: max(s) for g, s in self._data_seconds.items() if s}
        return {
            **self._channels.snapshot(latest),
            "format": self.fmt,
            "rows": self.rows,
            "packets": self.packets,
            "rate_window": self.rate_window,
            "hot_rate": self.hot_rate,
            "metrics": m,
            "adc_counts": {str(g): adc.tolist() for g, adc in sorted(self._adc.items())},
            "readout_delay_counts": {
                str(g): {str(d): n for d, n in sorted(c.items())}
                for g, c in sorted(self._delay.items())},
        }

    def _window_gauges(self, put) -> None:
        """Rates and channel gauges over the complete seconds ``T-W <= s < T``."""
        w = self.rate_window
        for g, window in sorted(self._window.items()):
            latest = max(self._data_seconds[g], default=None)
            if latest is None:
                continue
            inside = [s for s in window if latest - w <= s < latest]
            types = sum((window[s][0] for s in inside), np.zeros(len(PACKET_TYPE_NAMES), int))
            for code, n in enumerate(types.tolist()):
                put("larpix_packet_rate_hz",
                    {"io_group": str(g), "packet_type": PACKET_TYPE_NAMES[code]}, n / w)
            keys = np.concatenate([window[s][1] for s in inside] + [np.zeros(0, np.int64)])
            counts = np.concatenate([window[s][2] for s in inside] + [np.zeros(0, np.int64)])
            unique, inverse = np.unique(keys, return_inverse=True)
            per_channel = np.bincount(inverse, weights=counts, minlength=len(unique))
            put("larpix_active_channels", {"io_group": str(g)}, len(unique))
            put("larpix_hot_channels", {"io_group": str(g)},
                int((per_channel / w > self.hot_rate).sum()))


def _group_channel(key: int) -> dict[str, str]:
    return {"io_group": str(key >> 8), "io_channel": str(key & 255)}


def write_truth(path: str | Path, truth: dict) -> Path:
    """Write the truth beside the file atomically (temporary file, then rename)."""
    return write_json(truth_path(path), truth)


def write_json(target: Path, document: dict) -> Path:
    """Write a JSON document atomically (temporary file, then rename)."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, target)
    return target
