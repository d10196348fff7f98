"""Once mode through the real console script: summary, metrics file, plots, bad input.

Expected values come from the simulator's ground truth, from the file read
back with h5py, or from larpix-control's own parsing of the PACMAN bytes.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix import Packet_v2, SyncPacket, TimestampPacket, TriggerPacket
from larpix.format import pacman_msg_format, rawhdf5format
from prometheus_client.parser import text_string_to_metric_families
from support.paths import FIXTURES

from exporter import once
from exporter.simulate import simulate_file

CLI = Path(sys.executable).with_name("larpix-monitor")
FIXTURE = FIXTURES / "pacman-messages-tpc12-2023-03-15.json"
TYPE_NAMES = ("data", "test", "config_write", "config_read", "timestamp", "message", "sync",
              "trigger")
PLUGIN = '''
from pathlib import Path
from matplotlib.figure import Figure


class SeenPackets:
    """Counts the packets it is fed, beside the data file, and draws the count."""

    def __call__(self, filename, fh, fig=None):
        seen = Path(filename + ".seen")
        total = int(seen.read_text()) if seen.exists() else 0
        total += len(fh["packets"])
        seen.write_text(str(total))
        fig = fig or Figure()
        fig.suptitle(f"{total} packets")
        return fig
'''


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), "once", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def number(text: str) -> float:
    return float(text.replace(",", ""))


def parse_summaries(stdout: str) -> dict[str, dict]:
    """The summary of each file, as numbers."""
    summaries: dict[str, dict] = {}
    current: dict = {}
    for line in stdout.splitlines():
        if m := re.match(r"^(\S+): ([\d,]+) packets \((\w+) file, ([\d,]+) rows", line):
            current = summaries.setdefault(m[1], {"groups": {}})
            current.update(packets=number(m[2]), format=m[3], rows=number(m[4]))
        elif line.startswith("  by type: "):
            current["types"] = {k: number(v) for k, v in
                                re.findall(r"(\w+) ([\d,]+)", line[len("  by type: "):])}
        elif m := re.match(r"  time span: (.+) to (.+) UTC \(([\d,]+) s\)", line):
            current["span"] = (m[1], m[2], number(m[3]))
        elif m := re.match(r"  io_group (\d+): ([\d,]+) packets, ([\d,.]+) Hz over the last "
                           r"(\S+) s of data, ([\d,]+) active and ([\d,]+) hot channels", line):
            current["groups"][m[1]] = {"packets": number(m[2]), "rate": m[3],
                                       "active": number(m[5]), "hot": number(m[6])}
        elif m := re.match(r"  parity errors: (\S+) % of ([\d,]+) LArPix words \(([\d,]+)\)",
                           line):
            current["parity"] = (m[1], number(m[2]), number(m[3]))
        elif m := re.match(r"  FIFO flags of ([\d,]+) data packets: (.*)", line):
            current["fifo"] = {(f, lv): (share, number(n)) for f, lv, share, n in
                               re.findall(r"(local|shared) (half|full) (\S+) % \(([\d,]+)\)",
                                          m[2])}
            current["data"] = number(m[1])
        elif m := re.match(r"  plots: (\d+) written", line):
            current["plots"] = int(m[1])
    return summaries


def parse_metrics(path: Path) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text())
            for s in family.samples}


def truth_sums(truth: dict, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    sums: dict[tuple[str, ...], float] = defaultdict(float)
    for series in truth["metrics"].get(name, []):
        sums[tuple(series["labels"][label] for label in labels)] += series["value"]
    return sums


def share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.3f}"


def utc(unix: int) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def expected_summary(truth: dict, first: int, last: int) -> dict:
    """What the summary must say, computed from the simulator's truth."""
    by_type = {t: n for (t,), n in truth_sums(truth, "larpix_packets_total",
                                                "packet_type").items()}
    by_group = truth_sums(truth, "larpix_packets_total", "io_group")
    rates = truth_sums(truth, "larpix_packet_rate_hz", "io_group")
    active = truth_sums(truth, "larpix_active_channels", "io_group")
    hot = truth_sums(truth, "larpix_hot_channels", "io_group")
    timed = truth_sums(truth, "larpix_data_timestamp_seconds", "io_group")
    words = sum(by_type.get(t, 0) for t in TYPE_NAMES[:4])
    errors = sum(truth_sums(truth, "larpix_parity_errors_total").values())
    fifo = truth_sums(truth, "larpix_fifo_flags_total", "fifo", "level")
    data = by_type["data"]
    return {
        "packets": truth["packets"], "rows": truth["rows"], "format": truth["format"],
        "types": by_type, "span": (utc(first), utc(last), last - first),
        "groups": {g: {"packets": by_group[(g,)], "rate": f"{rates[(g,)]:,.1f}",
                       "active": active[(g,)], "hot": hot[(g,)]} for (g,) in timed},
        "parity": (share(errors, words), words, errors),
        "fifo": {key: (share(fifo[key], data), fifo[key])
                 for key in [("local", "half"), ("local", "full"),
                             ("shared", "half"), ("shared", "full")]},
        "data": data,
    }


def packet_file_span(path: Path) -> tuple[int, int]:
    with h5py.File(path, "r") as f:
        packets = f["packets"][:]
    stamps = packets["timestamp"][packets["packet_type"] == 4]
    return int(stamps.min()), int(stamps.max())


def raw_file_span(path: Path) -> tuple[int, int]:
    messages = rawhdf5format.from_rawfile(str(path))["msgs"]
    stamps = [pacman_msg_format.parse_header(bytes(m))[1] for m in messages]
    return min(stamps), max(stamps)


def test_summary_and_metrics_file_equal_truth(tmp_path):
    packet_file, raw_file = tmp_path / "packet_run.h5", tmp_path / "raw_run.h5"
    packet_truth = simulate_file(packet_file, "packet", n_packets=40_000, seed=11,
                                 io_groups=(1, 2), rate=2500.0)
    raw_truth = simulate_file(raw_file, "raw", n_packets=40_000, seed=12, io_groups=(3, 4),
                              rate=2500.0)
    metrics_file = tmp_path / "out" / "larpix.prom"
    metrics_file.parent.mkdir()

    result = run_cli(packet_file, raw_file, "-o", tmp_path / "plots", "--no-plots",
                     "--metrics-file", metrics_file)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    summaries = parse_summaries(result.stdout)
    expected = {str(packet_file): expected_summary(packet_truth, *packet_file_span(packet_file)),
                str(raw_file): expected_summary(raw_truth, *raw_file_span(raw_file))}
    for path, want in expected.items():
        got = {key: summaries[path].get(key) for key in want}
        assert got == want, path

    samples = parse_metrics(metrics_file)
    for truth in (packet_truth, raw_truth):     # io_groups differ: the files' series add up
        for name, series in truth["metrics"].items():
            for s in series:
                assert samples[name, tuple(sorted(s["labels"].items()))] == pytest.approx(
                    s["value"]), (name, s)
    assert samples["larpix_monitor_rows_read_total", (("format", "packet"),)] == 40_000
    assert samples["larpix_monitor_rows_read_total", (("format", "raw"),)] == raw_truth["rows"]


def test_bad_files_give_one_line_each_and_exit_2(tmp_path):
    good = tmp_path / "good.h5"
    truth = simulate_file(good, "packet", n_packets=5_000, seed=4)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "random.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "folder.h5").mkdir()
    with h5py.File(tmp_path / "nopackets.h5", "w") as f:
        f["other"] = np.arange(3)
    bad = {"truncated.h5": "truncated", "random.h5": "not_hdf5", "empty.h5": "empty_file",
           "folder.h5": "not_a_file", "missing.h5": "vanished",
           "nopackets.h5": "no_packet_dataset"}
    metrics_file = tmp_path / "m.prom"

    result = run_cli(*(tmp_path / name for name in ["random.h5", "good.h5", *bad]),
                     "-o", tmp_path / "plots", "--no-plots", "--metrics-file", metrics_file)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(bad) + 1            # random.h5 is given twice
    for name in bad:
        mine = [line for line in lines if line.startswith(f"{tmp_path / name}: ")]
        assert len(mine) == (2 if name == "random.h5" else 1), (name, lines)
    summaries = parse_summaries(result.stdout)
    assert list(summaries) == [str(good)]
    assert summaries[str(good)]["packets"] == truth["packets"]
    errors = {dict(labels)["reason"]: v for (name, labels), v in parse_metrics(metrics_file)
              .items() if name == "larpix_monitor_read_errors_total"}
    assert errors == {**{reason: 1 for reason in bad.values()}, "not_hdf5": 2}


def test_unwritable_outputs_are_one_line_each(tmp_path):
    good = tmp_path / "good.h5"
    simulate_file(good, "packet", n_packets=2_000)
    (tmp_path / "a_file").write_text("")
    metrics_file = tmp_path / "missing" / "m.prom"

    result = run_cli(good, "-o", tmp_path / "plots", "--no-plots", "--metrics-file", metrics_file)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{metrics_file}: cannot write the metrics file (No such file or directory)"]
    assert str(good) in parse_summaries(result.stdout)

    plot_dir = tmp_path / "a_file" / "plots"
    result = run_cli(good, "-o", plot_dir)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{plot_dir}: cannot create the plot directory (Not a directory)"]


def test_rate_window_out_of_range_is_a_usage_error(tmp_path):
    good = tmp_path / "good.h5"
    simulate_file(good, "packet", n_packets=1_000)
    result = run_cli(good, "-o", tmp_path / "plots", "--rate-window", "1000")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "larpix-monitor once: error: argument --rate-window: must be between 1 and 120 seconds")


def test_plots_are_written_with_every_packet(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "seen.py").write_text(PLUGIN)
    data = tmp_path / "data"
    data.mkdir()
    files = [data / "first.h5", data / "second.h5"]
    truths = [simulate_file(files[0], "packet", n_packets=12_000, seed=1),
              simulate_file(files[1], "raw", n_packets=9_000, seed=2)]

    result = run_cli(*files, "-o", tmp_path / "plots", "--plugin-dir", plugins,
                     "--plots", "SeenPackets", "--ext", ".svg")

    assert result.returncode == 0, result.stderr
    summaries = parse_summaries(result.stdout)
    for path, truth in zip(files, truths, strict=True):
        figure = tmp_path / "plots" / f"{path.stem}_dqm" / f"{path.stem}_SeenPackets.svg"
        assert figure.read_text().startswith("<?xml")
        assert int(Path(f"{path}.seen").read_text()) == truth["packets"]
        assert summaries[str(path)]["plots"] == 1


def test_unknown_plot_is_one_line_and_exit_2(tmp_path):
    good = tmp_path / "good.h5"
    simulate_file(good, "packet", n_packets=2_000)
    result = run_cli(good, "-o", tmp_path / "plots", "--plots", "NoSuchPlot")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "larpix-monitor once: unknown plot(s): NoSuchPlot (see 'larpix-monitor plots')")
    assert "Traceback" not in result.stderr


def test_real_detector_bytes(tmp_path):
    fixture = json.loads(FIXTURE.read_text())
    messages = [bytes.fromhex(h) for h in fixture["messages_hex"]]
    groups = fixture["io_groups"]
    path = tmp_path / "tpc12-binary-2023_03_15_03_45_CET.h5"
    rawhdf5format.to_rawfile(str(path), msgs=messages, msg_headers={"io_groups": groups})
    metrics_file = tmp_path / "real.prom"

    result = run_cli(path, "-o", tmp_path / "plots", "--no-plots", "--metrics-file", metrics_file)

    assert result.returncode == 0, result.stderr
    summary = parse_summaries(result.stdout)[str(path)]
    packets = [(g, p) for message, g in zip(messages, groups, strict=True)
               for p in pacman_msg_format.parse(message, io_group=g)]
    expected = _expected_from_larpix(packets, rate_window=10, hot_rate=20)
    expected["rows"] = len(messages)
    assert {key: summary.get(key) for key in expected} == expected

    samples = parse_metrics(metrics_file)
    by_chip = Counter((str(g), str(p.io_channel), str(p.chip_id)) for g, p in packets
                      if isinstance(p, Packet_v2) and p.packet_type == 0)
    exposed = {tuple(dict(labels)[k] for k in ("io_group", "io_channel", "chip_id")): v
               for (name, labels), v in samples.items() if name == "larpix_data_packets_total"}
    assert exposed == by_chip
    for g in set(groups):
        words = [p.dataword for gg, p in packets
                 if gg == g and isinstance(p, Packet_v2) and p.packet_type == 0]
        assert samples["larpix_adc_sum", (("io_group", str(g)),)] == sum(words)


def _expected_from_larpix(packets: list, rate_window: float, hot_rate: float) -> dict:
    """The summary's numbers, computed from larpix-control packet objects."""
    def type_name(p) -> str:
        if isinstance(p, TimestampPacket):
            return "timestamp"
        if isinstance(p, SyncPacket):
            return "sync"
        if isinstance(p, TriggerPacket):
            return "trigger"
        return TYPE_NAMES[p.packet_type]

    stamps = [p.timestamp for _, p in packets if isinstance(p, TimestampPacket)]
    latest: dict[int, int] = {}
    seconds = []
    for g, p in packets:            # data time: latest timestamp packet of the io_group
        if isinstance(p, TimestampPacket):
            latest[g] = p.timestamp
        seconds.append(latest.get(g))
    words = [p for _, p in packets if isinstance(p, Packet_v2)]
    data = [p for p in words if p.packet_type == 0]
    groups = {}
    for g in sorted({g for g, _ in packets}):
        top = max(s for (gg, _), s in zip(packets, seconds, strict=True) if gg == g)
        inside = [p for (gg, p), s in zip(packets, seconds, strict=True)
                  if gg == g and s is not None and top - rate_window <= s < top]
        channels = Counter((p.io_channel, p.chip_id, p.channel_id) for p in inside
                           if isinstance(p, Packet_v2) and p.packet_type == 0)
        groups[str(g)] = {
            "packets": sum(gg == g for gg, _ in packets),
            "rate": f"{len(inside) / rate_window:,.1f}", "active": len(channels),
            "hot": sum(n / rate_window > hot_rate for n in channels.values())}
    errors = sum(not p.has_valid_parity() for p in words)
    fifo = {("local", "half"): sum(p.local_fifo & 1 > 0 for p in data),
            ("local", "full"): sum(p.local_fifo & 2 > 0 for p in data),
            ("shared", "half"): sum(p.shared_fifo & 1 > 0 for p in data),
            ("shared", "full"): sum(p.shared_fifo & 2 > 0 for p in data)}
    return {
        "packets": len(packets), "format": "raw",
        "types": dict(Counter(type_name(p) for _, p in packets)),
        "span": (utc(min(stamps)), utc(max(stamps)), max(stamps) - min(stamps)),
        "groups": groups,
        "parity": (share(errors, len(words)), len(words), errors),
        "fifo": {key: (share(n, len(data)), n) for key, n in fifo.items()},
        "data": len(data),
    }


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch, capsys, terminal):
    path = tmp_path / "run.h5"
    simulate_file(path, "packet", n_packets=3_000)
    stderr = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(once, "PROGRESS_MIN_BYTES", 1)

    status = once.run_once([path], tmp_path / "plots", no_plots=True)

    assert status == 0
    assert ("%|" in stderr.getvalue()) == terminal
    assert parse_summaries(capsys.readouterr().out)[str(path)]["packets"] == 3_000


def test_the_output_directory_is_created_even_without_plots(tmp_path):
    """``-o DIR --no-plots --metrics-file DIR/m.prom``: DIR is created, the metrics written."""
    path = tmp_path / "run.h5"
    truth = simulate_file(path, "packet", n_packets=2_000, seed=5)
    out = tmp_path / "new" / "dir"
    result = run_cli(path, "-o", out, "--no-plots", "--metrics-file", out / "m.prom")
    assert result.returncode == 0, result.stderr
    samples = parse_metrics(out / "m.prom")
    assert samples[("larpix_monitor_rows_read_total", (("format", "packet"),))] == truth["rows"]


FIGURE_COUNTER = r'''
import json
import os

import matplotlib.pyplot as plt


class OpenFigures:
    """Notes how many pyplot figures are open when it first sees each file."""

    def __call__(self, filename, fh, fig=None):
        if fig is None:
            with open(os.environ["OPEN_FIGURES_LOG"], "a") as log:
                log.write(json.dumps([os.path.basename(filename), len(plt.get_fignums())]) + "\n")
            fig = plt.figure(figsize=(2, 2))
        return fig
'''


def test_each_file_s_figures_are_closed_once_written(tmp_path):
    """``once *.h5`` over many files keeps one file's figures at a time, not all of them."""
    plugins, names = tmp_path / "plugins", [f"run-{n}.h5" for n in range(4)]
    plugins.mkdir()
    (plugins / "open_figures.py").write_text(FIGURE_COUNTER)
    for n, name in enumerate(names):
        simulate_file(tmp_path / name, "packet", n_packets=2_000, seed=70 + n)
    log = tmp_path / "open-figures.jsonl"
    result = subprocess.run(
        [str(CLI), "once", *(str(tmp_path / name) for name in names), "-o", str(tmp_path / "out"),
         "--plugin-dir", str(plugins), "--plots", "OpenFigures", "AdcSpectrum"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OPEN_FIGURES_LOG": str(log)})
    assert result.returncode == 0, result.stderr
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert seen == [[name, 0] for name in names]
    assert len(list((tmp_path / "out").rglob("*.png"))) == 2 * len(names)
    summaries = parse_summaries(result.stdout)
    assert [summaries[str(tmp_path / name)]["plots"] for name in names] == [2] * len(names)
