"""Quality evaluation at 2x2 scale: every default check on 409,600 channels, with and
without a reference, against a baseline of one plain numpy pass over the same ADC
histograms (the per-channel mean and RMS), in the same process.

    .venv/bin/python benchmarks/bench_quality.py
"""

from __future__ import annotations

import os
import resource
import time
from types import SimpleNamespace

import numpy as np

from exporter.quality import CHECKS, RunChannels, build_checks, build_reference, evaluate

IO_GROUPS, TILES, CHANNELS_PER_TILE, PACKETS_PER_CHANNEL = 8, 8, 6400, 80


def table(seed: int) -> SimpleNamespace:
    """A 2x2-sized per-channel table: pedestal + noise + a signal tail, 80 packets each."""
    rng = np.random.default_rng(seed)
    index = np.arange(IO_GROUPS * TILES * CHANNELS_PER_TILE)
    group = index // (TILES * CHANNELS_PER_TILE) + 1
    tile = index // CHANNELS_PER_TILE % TILES
    chip = 11 + index // 64 % 100
    io_channel = tile * 4 + 1 + (chip - 11) * 4 // 100
    pedestal = np.random.default_rng(0).normal(75, 5, len(index))   # the same detector
    values = np.rint(pedestal[:, None] + 3 * rng.standard_normal((len(index),
                                                                   PACKETS_PER_CHANNEL)))
    values += (rng.random(values.shape) < 0.1) * rng.exponential(40, values.shape)
    values = np.clip(values, 0, 255).astype(np.int64)
    histogram = np.zeros((len(index), 256), np.uint16)
    np.add.at(histogram, (np.repeat(index, PACKETS_PER_CHANNEL), values.ravel()), 1)
    count = np.full(len(index), PACKETS_PER_CHANNEL)
    return SimpleNamespace(io_group=group, io_channel=io_channel, chip_id=chip,
                           channel_id=index % 64, count=count, rate_hz=count / 20.0,
                           parity_errors=np.zeros(len(index), int),
                           fifo_full=np.zeros(len(index), int), adc_histogram=histogram)


def best(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    reference = build_reference(table(1), ["reference.h5"], None)
    run = table(2)
    checks = build_checks(CHECKS)
    values = np.arange(256.0)
    baseline = best(lambda: (run.adc_histogram @ values, run.adc_histogram @ values**2))
    without = best(lambda: evaluate(checks, RunChannels.from_columns(run), rate_window=10,
                                    hot_rate=20))
    with_reference = best(lambda: evaluate(checks, RunChannels.from_columns(run),
                                           rate_window=10, hot_rate=20, reference=reference))
    print(f"channels: {len(run.count):,}; load average {os.getloadavg()[0]:.1f}")
    print(f"baseline (plain mean and RMS from the histograms): {baseline:.2f} s")
    print(f"evaluate, no reference:   {without:.2f} s ({without / baseline:.1f}x baseline)")
    print(f"evaluate, with reference: {with_reference:.2f} s "
          f"({with_reference / baseline:.1f}x baseline)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
