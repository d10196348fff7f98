"""Months of file rotation in a minute or two: 5,000 files land in the data directory and,
once counted, move away (as a DAQ and its transfer daemon do), while one real
``larpix-monitor serve`` runs. Every row is counted once, and neither the process's memory
nor its checkpoint grows with the number of files it has seen."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
from support.service import MonitorProcess, series, value
from support.waiting import wait_for

from exporter.simulate import simulate_file
from exporter.source.checkpoint import CHECKPOINT_FILE_NAME

FILES = 5_000
KEEP = 50  # files left in the data directory; older ones move to the archive
CHECK_EVERY = 25  # files between two waits for the monitor to count what landed
#: What may be allocated after the first 1,000 files (allocator noise, not per-file state).
RSS_SLACK = 12 * 1024 * 1024


def test_a_5000_file_rotation_keeps_memory_and_checkpoint_flat(tmp_path: Path) -> None:
    data, archive, plots = tmp_path / "data", tmp_path / "archive", tmp_path / "plots"
    for directory in (data, archive):
        directory.mkdir()
    template = tmp_path / "template.h5"
    truth = simulate_file(template, "packet", n_packets=300, seed=9, io_groups=(1, 2))
    body = template.read_bytes()
    checkpoint = plots / CHECKPOINT_FILE_NAME
    footprint: dict[int, tuple[int, int]] = {}
    with MonitorProcess(data, plots, "--no-plots", "--flush_interval", "2") as monitor:
        process = psutil.Process(monitor.proc.pid)
        for n in range(1, FILES + 1):
            staged = tmp_path / "staged.h5"
            staged.write_bytes(body)
            os.replace(staged, data / f"run-{n:05d}.h5")  # lands whole, as a closed file
            if n > KEEP:
                os.replace(data / f"run-{n - KEEP:05d}.h5", archive / f"run-{n - KEEP:05d}.h5")
            if n % CHECK_EVERY == 0:  # counted before it can move away
                wait_for(lambda n=n: value(monitor.scrape(), "larpix_monitor_rows_read_total",
                                           format="packet") == n * truth["rows"],
                         30, f"the first {n} files counted", interval=0.02)
            if n in (1_000, FILES):
                wait_for(lambda: value(monitor.scrape(), "larpix_monitor_files",
                                       state="active") + value(monitor.scrape(),
                                       "larpix_monitor_files", state="idle") == KEEP, 30,
                         "the moved files forgotten")
                footprint[n] = (process.memory_info().rss, checkpoint.stat().st_size)
        final = monitor.scrape()
        log = monitor.log_text()

    assert value(final, "larpix_monitor_rows_read_total", format="packet") == FILES * truth["rows"]
    packets = series(final, "larpix_packets_total")
    assert sum(packets.values()) == FILES * truth["packets"]
    (rss_early, saved_early), (rss_late, saved_late) = footprint[1_000], footprint[FILES]
    assert rss_late - rss_early < RSS_SLACK, (rss_early, rss_late)
    assert abs(saved_late - saved_early) < 1024, (saved_early, saved_late)
    assert log.count("no longer watched") == FILES - KEEP
    assert "Traceback" not in log
