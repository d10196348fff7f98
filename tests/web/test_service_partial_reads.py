"""A real ``larpix-monitor serve`` reading a file with one corrupt stored chunk: the readable
rows are counted once each, the damage once, and the service keeps going, also past a bad
chunk of a file the DAQ keeps appending to. Counts are checked against larpix-control's own
parsing of the readable messages, or the rows its writer wrote."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from support.damage import (
    CHUNK,
    append_rows,
    corrupt_chunk,
    gzip_packet_file,
    larpix_packets,
    packet_file,
    raw_file,
)
from support.larpix import parse_messages
from support.service import MonitorProcess, Samples, series, value
from support.waiting import wait_for

from exporter.packets import PACKET_TYPE_NAMES
from exporter.source.reader import PERSIST_SECONDS, SETTLE_SECONDS


def packets_by_type(samples: Samples) -> Counter:
    counts: Counter = Counter()
    for labels, v in series(samples, "larpix_packets_total").items():
        counts[PACKET_TYPE_NAMES.index(dict(labels)["packet_type"])] += int(v)
    return +counts


def test_corrupt_chunk_is_skipped_and_the_rest_counted(tmp_path: Path) -> None:
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    path = data / "raw.h5"
    msgs, groups = raw_file(path, 4096, seed=1)
    bad = corrupt_chunk(path, "msgs", 1)
    good = [i for i in range(len(msgs)) if i not in bad]
    expected = Counter(int(p.packet_type) for p in parse_messages(
        [msgs[i] for i in good], [groups[i] for i in good]))
    with MonitorProcess(data, plots, "--no-plots") as monitor:
        wait_for(lambda: value(monitor.scrape(), "larpix_monitor_rows_read_total",
                               format="raw") == len(good), 20, "the readable messages")
        later = data / "later.h5"  # a file written after: the monitor goes on reading
        more, more_groups = raw_file(later, 10, seed=2)
        expected += Counter(int(p.packet_type) for p in parse_messages(more, more_groups))
        wait_for(lambda: value(monitor.scrape(), "larpix_monitor_rows_read_total",
                               format="raw") == len(good) + len(more), 20, "the next file")
        samples = monitor.scrape()
        assert monitor.proc.poll() is None
    assert value(samples, "larpix_monitor_read_errors_total", reason="corrupt_chunk") == 1
    assert packets_by_type(samples) == expected
    lines = [line for line in monitor.log_text().splitlines() if "unreadable" in line]
    assert len(lines) == 1 and f"{path}: rows 1024-2047 of 'msgs' unreadable" in lines[0]
    assert "Traceback" not in monitor.log_text()


def rows_read(samples: Samples, fmt: str) -> int:
    return int(samples.get(("larpix_monitor_rows_read_total", frozenset({"format": fmt}.items())),
                           0))


def test_bad_chunk_of_a_file_still_growing_is_skipped_and_the_rest_counted(tmp_path: Path
                                                                           ) -> None:
    """The DAQ appends a quarter chunk every ~0.2 s to a packet file whose second stored
    chunk is corrupt, so the file never rests: after ``PERSIST_SECONDS`` of finding the same
    rows unreadable the service skips them, while the writer is still appending, and counts
    every other row once."""
    data, plots = tmp_path / "data", tmp_path / "plots"
    data.mkdir()
    rows = packet_file(tmp_path / "plain.h5", larpix_packets(32 * CHUNK, seed=11))
    path, written = data / "run.h5", 3 * CHUNK
    with MonitorProcess(data, plots, "--no-plots", interval=0.2) as monitor:
        made = tmp_path / "run.h5"  # made apart and moved in, so it is fresh when first seen
        gzip_packet_file(made, rows[:written])
        bad = corrupt_chunk(made, "packets", 1)
        started = time.monotonic()
        made.rename(path)

        def append_until_read() -> bool:
            nonlocal written
            if rows_read(monitor.scrape(), "packet"):
                return True
            assert written < len(rows), "the bad chunk was not skipped while the file grew"
            append_rows(path, rows[written:written + CHUNK // 4])
            written += CHUNK // 4
            return False

        wait_for(append_until_read, 60, "the rows around the bad chunk", interval=0.2)
        assert time.monotonic() - started >= PERSIST_SECONDS > SETTLE_SECONDS
        append_rows(path, rows[written:])
        wait_for(lambda: rows_read(monitor.scrape(), "packet") == len(rows) - len(bad), 30,
                 "every readable row")
        samples = monitor.scrape()
    good = [*range(bad.start), *range(bad.stop, len(rows))]
    assert packets_by_type(samples) == +Counter(rows["packet_type"][good].tolist())
    assert value(samples, "larpix_monitor_read_errors_total", reason="corrupt_chunk") == 1
    lines = [line for line in monitor.log_text().splitlines() if "unreadable" in line]
    assert len(lines) == 1 and f"{path}: rows 1024-2047 of 'packets' unreadable" in lines[0]
    assert "Traceback" not in monitor.log_text()
