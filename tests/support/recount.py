"""Counters and packet words recounted with numpy from the rows; counters read from a scrape.

Independent of the monitor: the rows come from h5py (packet files) or from
larpix-control's own conversion of raw files.
"""

from __future__ import annotations

import numpy as np

from exporter.packets import DELAY_BUCKETS, DELAY_EDGES, NOT_DATA, PACKET_TYPE_NAMES
from support.service import Samples, series


def expected_counts(packets: np.ndarray) -> dict[str, dict[tuple, int]]:
    """Counter values of a slice of a 2.4 packet file, computed here with numpy."""
    def tally(*columns: np.ndarray) -> dict[tuple, int]:
        keys = np.zeros(len(columns[0]), np.int64)
        for column in columns:
            keys = keys << 8 | column.astype(np.int64)
        unique, counts = np.unique(keys, return_counts=True)
        return {tuple(str(k >> 8 * (len(columns) - 1 - i) & 255) for i in range(len(columns))):
                n for k, n in zip(unique.tolist(), counts.tolist(), strict=True)}

    g, ch, kind = packets["io_group"], packets["io_channel"], packets["packet_type"]
    data = kind == 0
    bad = (kind <= 3) & (packets["valid_parity"] == 0)
    return {
        "larpix_packets_total": tally(g, ch, kind),
        "larpix_data_packets_total": tally(g[data], ch[data], packets["chip_id"][data]),
        "larpix_parity_errors_total": tally(g[bad], ch[bad]),
        "adc": tally(g[data], packets["dataword"][data]),
    }


def scraped_counts(samples: Samples) -> dict[str, dict[tuple, int]]:
    def keyed(name: str, labels: tuple[str, ...]) -> dict[tuple, int]:
        return {tuple(dict(k)[label] for label in labels): int(v)
                for k, v in series(samples, name).items() if v}

    types = {name: str(code) for code, name in enumerate(PACKET_TYPE_NAMES)}
    packets = {(gr, ch, types[t]): v for (gr, ch, t), v in keyed(
        "larpix_packets_total", ("io_group", "io_channel", "packet_type")).items()}
    return {
        "larpix_packets_total": packets,
        "larpix_data_packets_total": keyed("larpix_data_packets_total",
                                           ("io_group", "io_channel", "chip_id")),
        "larpix_parity_errors_total": keyed("larpix_parity_errors_total",
                                            ("io_group", "io_channel")),
    }


def adc_bucket_mismatches(samples: Samples, adc: dict[tuple, int]) -> list[str]:
    wrong = []
    for labels, got in series(samples, "larpix_adc_bucket").items():
        group, le = dict(labels)["io_group"], float(dict(labels)["le"])
        want = sum(n for (g, v), n in adc.items() if g == group and int(v) <= le)
        if want != got:
            wrong.append(f"io_group={group} le={le}: expected {want}, got {got}")
    return wrong


def channel_columns(packets: np.ndarray) -> dict[tuple[int, ...], dict[str, float]]:
    """The per-channel table of some 2.4 rows, recounted here with numpy: (io_group,
    io_channel, chip_id, channel_id) -> count, ADC mean and RMS (ddof 0), parity errors and
    FIFO flags (bit 0: half, bit 1: full, of local_fifo | shared_fifo) of its data packets."""
    data = packets[packets["packet_type"] == 0]
    key = ((data["io_group"].astype(np.int64) << 24) | (data["io_channel"].astype(np.int64) << 16)
           | (data["chip_id"].astype(np.int64) << 8) | data["channel_id"])
    keys, index = np.unique(key, return_inverse=True)
    adc = data["dataword"].astype(np.float64)
    fifo = data["local_fifo"] | data["shared_fifo"]
    count = np.bincount(index)
    mean = np.bincount(index, weights=adc) / count
    spread = np.bincount(index, weights=(adc - mean[index]) ** 2) / count
    columns = {"count": count, "adc_mean": mean, "adc_rms": np.sqrt(spread),
               "parity_errors": np.bincount(index, weights=data["valid_parity"] == 0),
               "fifo_half": np.bincount(index, weights=(fifo & 1) > 0),
               "fifo_full": np.bincount(index, weights=(fifo & 2) > 0)}
    return {(k >> 24 & 255, k >> 16 & 255, k >> 8 & 255, k & 255):
            {name: column[i].item() for name, column in columns.items()}
            for i, k in enumerate(keys.tolist())}


def words_recount(rows: np.ndarray, has_receipt: bool = True) -> dict[str, np.ndarray | None]:
    """The words the hot paths read (``PacketWords``), from the rows' fields byte by byte:
    readout delays of data rows, and their (io_group, delay bucket, dataword) index, the
    bucket counted as the delay edges below the delay (``DELAY_BUCKETS`` without receipt
    times)."""
    def word(*names: str) -> np.ndarray:
        out = np.zeros(len(rows), np.uint32)
        for i, name in enumerate(names):
            out |= rows[name].astype(np.uint32) << np.uint32(8 * i)
        return out
    data = rows["packet_type"] == 0
    delay = None
    bucket = np.full(len(rows), DELAY_BUCKETS)
    if has_receipt:
        delay = np.where(data, rows["receipt_timestamp"].astype(np.int64) % 2**31
                         - rows["timestamp"].astype(np.int64), 0)
        bucket = np.searchsorted(DELAY_EDGES, delay, side="left")
    index = ((rows["io_group"].astype(np.int64) * (DELAY_BUCKETS + 1) + bucket) * 256
             + rows["dataword"])
    return {
        "ids": word("packet_type", "chip_id", "io_channel", "io_group"),
        "flags": word("downstream_marker", "parity", "valid_parity", "channel_id"),
        "word": word("dataword", "trigger_type", "local_fifo", "shared_fifo"),
        "other": np.flatnonzero(~data),
        "flagged": np.flatnonzero((rows["valid_parity"] == 0) | (rows["local_fifo"] & 3 > 0)
                                  | (rows["shared_fifo"] & 3 > 0)),
        "delay": delay,
        "adc_delay": np.where(data, index, NOT_DATA),
    }
