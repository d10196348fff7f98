"""A real ``larpix-monitor serve`` reading a raw file with one corrupt stored chunk: the
readable messages are counted once each, the damage once, and the service keeps going.
Counts are checked against larpix-control's own parsing of the readable messages."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from support.damage import corrupt_chunk, raw_file
from support.larpix import parse_messages
from support.service import MonitorProcess, Samples, series, value
from support.waiting import wait_for

from exporter.packets import PACKET_TYPE_NAMES


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
