"""Memory and checkpoint over a long run: a 5,000-file rotation through one service.

    .venv/bin/python benchmarks/bench_rotation.py [--files 5000] [--rows 300]

Small packet files land one after another in the data directory of a real
``larpix-monitor serve --no-plots``. Two ways a DAQ site keeps them:

* ``moved``: once counted, all but the newest 50 move away (a transfer daemon);
* ``kept``: every file stays in the directory.

Every 500 files the benchmark waits for the monitor to count what landed and
reports its RSS and checkpoint size; the baseline is the same process after the
first 500 files, so the growth is what each further file costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from _common import DATA, ServeProcess, cached_simulation, rows_read

from exporter.source.checkpoint import CHECKPOINT_FILE_NAME

KEEP = 50
STEP = 500


def run(mode: str, files: int, template: Path, rows_per_file: int, work: Path) -> list[tuple]:
    data, archive, plots = work / "data", work / "archive", work / "plots"
    for directory in (data, archive):
        directory.mkdir()
    body = template.read_bytes()
    monitor = ServeProcess(data, plots, "--no-plots", "--flush_interval", "5",
                           log_dir=work, log_name="monitor.log")
    points = []
    try:
        wait(lambda: _get(monitor, "/readyz") is not None, 30)
        process = psutil.Process(monitor.proc.pid)
        for n in range(1, files + 1):
            staged = work / "staged.h5"
            staged.write_bytes(body)
            os.replace(staged, data / f"run-{n:05d}.h5")
            if mode == "moved" and n > KEEP:
                os.replace(data / f"run-{n - KEEP:05d}.h5", archive / f"run-{n - KEEP:05d}.h5")
            if n % (KEEP // 2) == 0 or n == files:
                wait(lambda n=n: rows_read(_get(monitor, "/metrics") or "") == n * rows_per_file,
                     60)
            if n % STEP == 0:
                points.append((n, process.memory_info().rss,
                               (plots / CHECKPOINT_FILE_NAME).stat().st_size))
    finally:
        monitor.stop()
    return points


def _get(monitor: ServeProcess, path: str) -> str | None:
    try:
        return httpx.get(monitor.base + path, timeout=10).text
    except httpx.HTTPError:
        return None


def wait(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the monitor did not keep up")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5_000)
    parser.add_argument("--rows", type=int, default=300)
    args = parser.parse_args()
    template = cached_simulation(DATA / f"rotation-{args.rows}.h5", "packet",
                                 n_packets=args.rows, seed=9, io_groups=(1, 2))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    for mode in ("moved", "kept"):
        with tempfile.TemporaryDirectory() as work:
            started = time.monotonic()
            points = run(mode, args.files, template, args.rows, Path(work))
            took = time.monotonic() - started
        (n0, rss0, saved0), (n1, rss1, saved1) = points[0], points[-1]
        per_file = (rss1 - rss0) / (n1 - n0)
        print(f"{mode}: {args.files} files in {took:.0f} s; RSS {rss0 / 2**20:.1f} MB at "
              f"{n0} files, {rss1 / 2**20:.1f} MB at {n1} ({per_file:+.0f} B a file); "
              f"checkpoint {saved0:,} B -> {saved1:,} B "
              f"({(saved1 - saved0) / (n1 - n0):+.0f} B a file)")
        for n, rss, saved in points:
            print(f"  {n:5d} files: RSS {rss / 2**20:7.1f} MB, checkpoint {saved:8,} B")


if __name__ == "__main__":
    main()
