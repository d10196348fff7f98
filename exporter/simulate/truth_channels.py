"""Ground truth per channel and per chip, tallied from the simulator's own rows.

Per channel (data packets of a file): count, ADC mean and RMS (ddof 0), parity
errors, FIFO half/full flags, and the rate over the last rate window. Per chip
(io_group, io_channel, chip_id): LArPix words and their parity errors, FIFO
flags, config packets by op and direction, and the ADC mean and RMS over the
rate window. The monitor's code is never used here: keys are merged with
``np.unique`` as the batches come.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from exporter.packets import CONFIG_READ, CONFIG_WRITE, DATA, PARITY_TYPES, SYNC

#: Columns of the per-channel sums kept for the whole file.
_CHANNEL_SUMS = ("count", "adc_sum", "adc_sq", "parity_errors", "fifo_half", "fifo_full")
#: Columns of the per-chip sums kept for the whole file.
_CHIP_SUMS = ("words", "parity_errors", "local_half", "local_full", "shared_half",
              "shared_full", "config_write_downstream", "config_write_upstream",
              "config_read_downstream", "config_read_upstream")


def _merge(keys: np.ndarray, values: np.ndarray, new_keys: np.ndarray, new_values: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys with the sum of their values (rows of 2-D ``values``)."""
    merged, inverse = np.unique(np.concatenate([keys, new_keys]), return_inverse=True)
    out = np.zeros((len(merged), values.shape[1]), np.int64)
    np.add.at(out, inverse, np.concatenate([values, new_values]))
    return merged, out


def _sums(keys: np.ndarray, columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    distinct, inverse = np.unique(keys, return_inverse=True)
    values = np.stack([np.bincount(inverse, weights=c, minlength=len(distinct))
                       for c in columns], axis=1)
    return distinct, np.rint(values).astype(np.int64)


def _mean_rms(n: np.ndarray, total: np.ndarray, squares: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 0) from exact integer sums."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        variance = (n * squares - total * total) / (n * n)
    return mean, np.sqrt(np.maximum(variance, 0))


class ChannelTally:
    """Per-channel and per-chip truth, batch by batch."""

    def __init__(self, rate_window: float, hot_rate: float) -> None:
        self.rate_window = rate_window
        self.hot_rate = hot_rate
        self._channel_keys = np.zeros(0, np.int64)   # g << 22 | io_channel << 14 | chip << 6 | ch
        self._channels = np.zeros((0, len(_CHANNEL_SUMS)), np.int64)
        self._chip_keys = np.zeros(0, np.int64)      # g << 16 | io_channel << 8 | chip
        self._chips = np.zeros((0, len(_CHIP_SUMS)), np.int64)
        # io_group -> second -> (channel keys, [count, adc sum, adc squares])
        self._seconds: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
        self._clock_source: dict[int, int] = {}

    def add(self, rows: np.ndarray, seconds: np.ndarray) -> None:
        group = rows["io_group"].astype(np.int64)
        channel = rows["io_channel"].astype(np.int64)
        chip = rows["chip_id"].astype(np.int64)
        kind = rows["packet_type"]
        data = kind == DATA
        adc = rows["dataword"].astype(np.int64)
        bad = rows["valid_parity"] == 0
        flags = rows["local_fifo"] | rows["shared_fifo"]
        key = (group << 22 | channel << 14 | chip << 6 | rows["channel_id"])[data]
        columns = [np.ones(len(key)), adc[data], adc[data] ** 2, bad[data],
                   (flags[data] & 1) > 0, (flags[data] & 2) > 0]
        self._channel_keys, self._channels = _merge(self._channel_keys, self._channels,
                                                    *_sums(key, columns))
        words = np.isin(kind, PARITY_TYPES)
        chip_key = (group << 16 | channel << 8 | chip)[words]
        w_kind, down = kind[words], rows["downstream_marker"][words] == 1
        local, shared = rows["local_fifo"][words], rows["shared_fifo"][words]
        w_data = w_kind == DATA
        columns = [np.ones(len(chip_key)), bad[words],
                   w_data & (local & 1 > 0), w_data & (local & 2 > 0),
                   w_data & (shared & 1 > 0), w_data & (shared & 2 > 0)]
        for op in (CONFIG_WRITE, CONFIG_READ):
            columns += [(w_kind == op) & down, (w_kind == op) & ~down]
        self._chip_keys, self._chips = _merge(self._chip_keys, self._chips,
                                              *_sums(chip_key, columns))
        sync = np.flatnonzero(kind == SYNC)
        for g, value in zip(group[sync].tolist(), rows["dataword"][sync].tolist(), strict=True):
            self._clock_source[g] = value
        timed = data & (seconds >= 0)
        self._add_seconds(group[timed], seconds[timed], key[timed[data]], adc[timed])

    def _add_seconds(self, group: np.ndarray, second: np.ndarray, key: np.ndarray,
                     adc: np.ndarray) -> None:
        pair = group << 40 | second
        for p in np.unique(pair).tolist():
            mine = pair == p
            g, s = p >> 40, p & ((1 << 40) - 1)
            new = _sums(key[mine], [np.ones(mine.sum()), adc[mine], adc[mine] ** 2])
            old = self._seconds[g].get(s)
            self._seconds[g][s] = new if old is None else _merge(*old, *new)
        for by_second in self._seconds.values():
            latest = max(by_second)
            for s in [s for s in by_second if s < latest - self.rate_window]:
                del by_second[s]

    def latest_seconds(self) -> dict[int, int]:
        return {g: max(s) for g, s in self._seconds.items() if s}

    def _window(self, latest: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Channel keys and [count, adc sum, adc squares] over ``T-W <= s < T`` of each group."""
        keys, values = np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
        for g, by_second in self._seconds.items():
            for s, (k, v) in by_second.items():
                if latest[g] - self.rate_window <= s < latest[g]:
                    keys, values = _merge(keys, values, k, v)
        return keys, values

    def snapshot(self, latest: dict[int, int]) -> dict:
        """``channels`` and ``chips`` tables (column lists) and ``clock_source`` per group.

        ``latest`` is the latest data second of each io_group (the window's end).
        """
        keys, sums = self._channel_keys, self._channels
        window_keys, window = self._window(latest)
        rate = np.zeros(len(keys))
        if len(window_keys):  # every window key is a key of the whole file
            at = np.minimum(np.searchsorted(window_keys, keys), len(window_keys) - 1)
            found = window_keys[at] == keys
            rate[found] = window[at[found], 0] / self.rate_window
        mean, rms = _mean_rms(*sums[:, :3].T)
        channels = {
            "io_group": (keys >> 22).tolist(), "io_channel": (keys >> 14 & 255).tolist(),
            "chip_id": (keys >> 6 & 255).tolist(), "channel_id": (keys & 63).tolist(),
            "count": sums[:, 0].tolist(), "adc_mean": mean.tolist(), "adc_rms": rms.tolist(),
            "parity_errors": sums[:, 3].tolist(), "fifo_half": sums[:, 4].tolist(),
            "fifo_full": sums[:, 5].tolist(), "rate_hz": rate.tolist(),
            "hot": (rate > self.hot_rate).tolist(),
        }
        chip_of_window = window_keys >> 6
        chip_window_keys, chip_window = (_sums(chip_of_window, list(window.T)) if len(window_keys)
                                         else (np.zeros(0, np.int64), np.zeros((0, 3), np.int64)))
        w_mean, w_rms = _mean_rms(*chip_window.T)
        chips = {"io_group": (self._chip_keys >> 16).tolist(),
                 "io_channel": (self._chip_keys >> 8 & 255).tolist(),
                 "chip_id": (self._chip_keys & 255).tolist(),
                 **{name: self._chips[:, i].tolist() for i, name in enumerate(_CHIP_SUMS)}}
        chip_window_table = {
            "io_group": (chip_window_keys >> 16).tolist(),
            "io_channel": (chip_window_keys >> 8 & 255).tolist(),
            "chip_id": (chip_window_keys & 255).tolist(),
            "count": chip_window[:, 0].tolist(), "adc_mean": w_mean.tolist(),
            "adc_rms": w_rms.tolist()}
        return {"channels": channels, "chips": chips, "chips_window": chip_window_table,
                "clock_source": {str(g): v for g, v in sorted(self._clock_source.items())}}
