"""Once mode with a file read in part: the readable rows are counted, the damage is one
line and one count, and the exit status is 1 (2 stays for unusable input). Expected
counts come from larpix-control's own parsing of the readable messages."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from support.damage import corrupt_chunk, raw_file
from support.larpix import parse_messages

from exporter.packets import PACKET_TYPE_NAMES

CLI = Path(sys.executable).with_name("larpix-monitor")


def once(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), "once", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def metrics(path: Path) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text())
            for s in family.samples}


def damaged_run(tmp_path: Path) -> tuple[Path, Counter, int]:
    """A raw file with msgs chunk 1 corrupt; packets by type and messages still readable."""
    path = tmp_path / "raw.h5"
    msgs, groups = raw_file(path, 4096, seed=7)
    bad = corrupt_chunk(path, "msgs", 1)
    good = [i for i in range(len(msgs)) if i not in bad]
    packets = parse_messages([msgs[i] for i in good], [groups[i] for i in good])
    return path, Counter(int(p.packet_type) for p in packets), len(good)


def test_partly_read_file_exits_1_with_its_readable_rows_counted(tmp_path):
    path, expected, messages = damaged_run(tmp_path)
    out = tmp_path / "m.prom"
    result = once(path, "-o", tmp_path / "plots", "--no-plots", "--metrics-file", out)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"{path}: rows 1024-2047 of 'msgs' unreadable "
        "(filter returned failure during read); skipped"]
    assert "unreadable rows skipped: 1,024 (read in part)" in result.stdout
    samples = metrics(out)
    assert samples[("larpix_monitor_rows_read_total", (("format", "raw"),))] == messages
    assert samples[("larpix_monitor_read_errors_total", (("reason", "corrupt_chunk"),))] == 1
    by_type = Counter()
    for (name, labels), v in samples.items():
        if name == "larpix_packets_total":
            by_type[PACKET_TYPE_NAMES.index(dict(labels)["packet_type"])] += int(v)
    assert +by_type == expected


def test_unusable_input_still_exits_2(tmp_path):
    path, _, _ = damaged_run(tmp_path)
    (tmp_path / "random.h5").write_bytes(b"not hdf5" * 100)
    result = once(path, tmp_path / "random.h5", "-o", tmp_path / "plots", "--no-plots")
    assert result.returncode == 2
    assert [line.split(": ")[0] for line in result.stderr.splitlines()] == [
        str(path), str(tmp_path / "random.h5")]
