"""Does a replay after a restart delay the metrics of a live file?

    .venv/bin/python benchmarks/bench_replay.py [--pairs 3] [--seconds 6] [--rate 1000000]

A real ``larpix-monitor serve`` restarts on a directory whose checkpoint covers a big
finished-but-recent file (3 M packets). In the *replay* runs its mtime is recent, so the
new process replays it into its channel table and plots; in the *baseline* runs it is an
hour old and is not replayed. Everything else is the same: meanwhile a writer appends a
live file (1 M packets/s, a flush every 0.25 s) and the latency from a batch landing on
disk to its counts in /metrics is measured (as in bench_service.py). Baseline and replay
runs alternate; p50/p99 per run, and whether the replay finished within the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from _common import DATA, cached_simulation, rows_read
from bench_service import PLOTS, Appender, Monitor, live_latencies, percentiles, source_file


def backlog_file() -> Path:
    return cached_simulation(DATA / "replay_packet_3000000.h5", "packet", n_packets=3_000_000,
                             seed=5, io_groups=(5, 6))


def checkpointed(work: Path, plot_args: list[str]) -> tuple[Path, Path]:
    """A data directory holding the backlog file, and a plot directory whose checkpoint
    covers all of it (a first monitor read it to its end)."""
    data, plots = work / "data", work / "plots"
    data.mkdir(parents=True)
    shutil.copy(backlog_file(), data / "backlog.h5")
    monitor = Monitor(data, plots, "--read-all", *plot_args)
    deadline = time.monotonic() + 120
    want = 3_000_000
    while time.monotonic() < deadline:
        if rows_read(httpx.get(monitor.base + "/metrics", timeout=30).text) >= want:
            break
        time.sleep(0.2)
    monitor.stop()
    return data, plots


def one_run(work: Path, replay: bool, rate: float, seconds: float, flush: float,
            plot_args: list[str]) -> str:
    data, plots = checkpointed(work, plot_args)
    stamp = time.time() if replay else time.time() - 3600
    os.utime(data / "backlog.h5", (stamp, stamp))
    appender = Appender("packet", source_file("packet", 2_000_000, (1, 2, 3, 4)),
                        data / "live.h5")
    monitor = Monitor(data, plots, "--flush_interval", "60", *plot_args)
    latencies, note = live_latencies(monitor, appender, rate, seconds, flush)
    log = monitor.log_path.read_text(errors="replace")
    if replay:
        state = "replay done" if "backlog.h5: replay done" in log else "replay still running"
        assert "backlog.h5: replaying" in log, "the backlog file was not replayed"
    else:
        state = "no replay"
        assert "backlog.h5: replaying" not in log
    return f"{'replay' if replay else 'baseline':8} {percentiles(latencies)}  [{state}]{note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--flush", type=float, default=0.25)
    parser.add_argument("--rate", type=float, default=1_000_000)
    parser.add_argument("--plots", nargs="+", default=PLOTS)
    args = parser.parse_args()
    plot_args = ["--plots", *args.plots]
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"live file {args.rate / 1e6:g} M packets/s, flush every {args.flush:g} s, "
          f"{args.seconds:g} s a run, {' '.join(plot_args)}")
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        for pair in range(args.pairs):
            for replay in (False, True):
                work = Path(tmp) / f"{pair}-{replay}"
                print("  " + one_run(work, replay, args.rate, args.seconds, args.flush,
                                     plot_args), f"(load {os.getloadavg()[0]:.1f})",
                      flush=True)


if __name__ == "__main__":
    main()
