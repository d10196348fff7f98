"""The live service under load: a real ``larpix-monitor serve`` process, real HTTP.

    .venv/bin/python benchmarks/bench_service.py [--seconds 8] [--rates 100000 1000000]

1. Latency from a batch landing on disk to its counts in /metrics, at live rates:
   a writer appends flushes (the DAQ's way: open, resize, write, close) every
   ``--flush`` seconds while a client scrapes /metrics every 50 ms; a batch's
   latency is from its writer's close to the end of the first scrape that
   counts all of its rows. Packet and raw files; p50 and p99 per rate.
2. /metrics scrape time at 2x2 scale (8 io_groups x 32 io_channels x 25 chips,
   every chip with data): idle, back to back while a 100 k packets/s stream is
   ingested, and the first scrape after new rows (what a 15 s Prometheus scrape
   of a live run pays: the exposition is rebuilt).
3. Plot image throughput with 50 concurrent clients (200 and 304 responses).

Targets: latency p50 <= 1 s and p99 <= 2 s; scrape <= 50 ms.
Source data are simulated once and cached under benchmarks/data/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import h5py
import httpx
import numpy as np
from _common import DATA, ServeProcess, cached_simulation, rows_read
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulate import simulate_file
from exporter.simulate.writers import PacketFileWriter, RawFileWriter

TWO_BY_TWO_GROUPS = tuple(range(1, 9))
PLOTS = ["AdcSpectrum", "PacketRate"]
#: Pause between two scrapes of the latency probe (its resolution, with the scrape time).
SCRAPE_EVERY = 0.05


def source_file(fmt: str, n_packets: int, io_groups: tuple[int, ...]) -> Path:
    """A simulated file to copy live appends from (cached)."""
    return cached_simulation(DATA / f"service_{fmt}_{n_packets}_{len(io_groups)}g.h5", fmt,
                             n_packets=n_packets, seed=1, io_groups=io_groups)


class Monitor(ServeProcess):
    """``larpix-monitor serve`` in a subprocess, returned once it is ready."""

    def __init__(self, data: Path, plots: Path, *extra: str) -> None:
        super().__init__(data, plots, "--interval", "2", *extra, log_dir=plots.parent,
                         log_name="monitor-{port}.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("monitor did not start")


def percentiles(values: list[float]) -> str:
    a = np.asarray(values)
    return (f"p50 {np.percentile(a, 50) * 1000:7.1f} ms  p99 {np.percentile(a, 99) * 1000:7.1f} ms"
            f"  max {a.max() * 1000:7.1f} ms  (n={len(a)})")


# -- 1. latency ---------------------------------------------------------------------------

class Appender:
    """Appends slices of a source file to a live file, the DAQ's way."""

    def __init__(self, fmt: str, source: Path, live: Path) -> None:
        self.fmt = fmt
        truth = json.loads(Path(f"{source}.truth.json").read_text())
        self.packets_per_row = truth["packets"] / truth["rows"]
        with h5py.File(source, "r") as f:
            if fmt == "packet":
                self.rows = f["packets"][:]
            else:
                self.rows = f["msgs"][:]
                self.groups = f["msg_headers"]["io_groups"][:]
        self.writer = PacketFileWriter(live) if fmt == "packet" else RawFileWriter(live)
        self.position = 0

    def append(self, n_packets: float) -> int:
        n = max(1, int(round(n_packets / self.packets_per_row)))
        index = (self.position + np.arange(n)) % len(self.rows)
        self.position += n
        if self.fmt == "packet":
            self.writer.append(self.rows[index])
        else:
            self.writer.append([self.rows[i] for i in index], self.groups[index])
        return n


def measure_latency(fmt: str, rate: float, seconds: float, flush: float, work: Path,
                    plot_args: list[str]) -> str:
    source = source_file(fmt, 2_000_000, (1, 2, 3, 4))
    data, plots = work / f"lat-{fmt}-{int(rate)}" / "data", work / f"lat-{fmt}-{int(rate)}" / "p"
    data.mkdir(parents=True)
    appender = Appender(fmt, source, data / "live.h5")
    monitor = Monitor(data, plots, *plot_args)
    latencies, note = live_latencies(monitor, appender, rate, seconds, flush)
    return f"{fmt:6} {rate / 1000:6.0f} k packets/s: {percentiles(latencies)}{note}"


def live_latencies(monitor: Monitor, appender: Appender, rate: float, seconds: float,
                   flush: float) -> tuple[list[float], str]:
    """Append ``rate`` packets/s every ``flush`` s for ``seconds`` while scraping; stop the
    monitor; each batch's latency, and a note if something went wrong."""
    base_rows = rows_read(httpx.get(monitor.base + "/metrics", timeout=30).text)
    scrapes: list[tuple[float, float]] = []
    done = threading.Event()

    def scrape_forever() -> None:
        with httpx.Client() as client:
            while not done.wait(SCRAPE_EVERY):
                text = client.get(monitor.base + "/metrics", timeout=30).text
                scrapes.append((time.monotonic(), rows_read(text) - base_rows))

    scraper = threading.Thread(target=scrape_forever)
    scraper.start()
    landed: list[tuple[float, int]] = []
    total = 0
    started = time.monotonic()
    behind = 0.0
    for i in range(int(seconds / flush)):
        due = started + (i + 1) * flush
        time.sleep(max(0.0, due - time.monotonic()))
        behind = max(behind, time.monotonic() - due)
        total += appender.append(rate * flush)
        landed.append((time.monotonic(), total))
    deadline = time.monotonic() + 30
    while (not scrapes or scrapes[-1][1] < total) and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    scraper.join()
    monitor.stop()
    latencies = []
    for t_landed, rows in landed:
        seen = next((t for t, counted in scrapes if t >= t_landed and counted >= rows), None)
        latencies.append(float("inf") if seen is None else seen - t_landed)
    note = f"  (writer fell behind by up to {behind:.2f} s)" if behind > flush else ""
    if not np.isfinite(latencies).all():
        tail = monitor.log_path.read_text(errors="replace").splitlines()[-15:]
        note += ("\n  some rows were never counted; the monitor's log ends:\n    "
                 + "\n    ".join(tail))
    return latencies, note


# -- 2. scrape time -----------------------------------------------------------------------

def scrape_times(base: str, n: int) -> list[float]:
    times = []
    with httpx.Client() as client:
        for _ in range(n):
            t = time.perf_counter()
            response = client.get(base + "/metrics", timeout=30)
            times.append(time.perf_counter() - t)
            assert response.status_code == 200
    return times


def measure_scrape(work: Path) -> list[str]:
    source = source_file("packet", 4_000_000, TWO_BY_TWO_GROUPS)
    data, plots = work / "scrape" / "data", work / "scrape" / "p"
    data.mkdir(parents=True)
    os.symlink(source, data / "two_by_two.h5")
    monitor = Monitor(data, plots, "--no-plots", "--read-all")
    with h5py.File(source, "r") as f:
        expected = f["packets"].shape[0]
    while rows_read(httpx.get(monitor.base + "/metrics", timeout=30).text) < expected:
        time.sleep(0.2)
    text = httpx.get(monitor.base + "/metrics").text
    chips = sum(len(f.samples) for f in text_string_to_metric_families(text)
                if f.name == "larpix_data_packets")
    lines = [f"2x2 scale: {chips} chip series, {text.count(chr(10))} lines, "
             f"{len(text) / 1e6:.1f} MB"]
    lines.append(f"  idle            {percentiles(scrape_times(monitor.base, 50))}")
    appender = Appender("packet", source_file("packet", 2_000_000, TWO_BY_TWO_GROUPS),
                        data / "live.h5")
    stop = threading.Event()

    def write_100k() -> None:
        while not stop.is_set():
            appender.append(25_000)
            time.sleep(0.25)

    writer = threading.Thread(target=write_100k)
    writer.start()
    time.sleep(1)
    lines.append(f"  during ingest   {percentiles(scrape_times(monitor.base, 50))}")
    stop.set()
    writer.join()
    fresh = []
    for _ in range(20):  # each scrape after new rows: as Prometheus sees a live run
        appender.append(25_000)
        time.sleep(0.7)
        fresh += scrape_times(monitor.base, 1)
    lines.append(f"  first after new rows {percentiles(fresh)}")
    monitor.stop()
    return lines


# -- 3. image throughput ------------------------------------------------------------------

async def one_client(port: int, request: bytes, end: float, expect: int,
                     times: list[float]) -> None:
    """A keep-alive HTTP/1.1 connection sending one request after another (a lean client:
    httpx's async pool would be the bottleneck on a small machine)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.monotonic() < end:
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if length:
            await reader.readexactly(length)
        times.append(time.perf_counter() - started)
        assert status == expect, status
    writer.close()


async def hammer(port: int, path: str, headers: dict[str, str], clients: int,
                 seconds: float, expect: int) -> list[float]:
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    times: list[float] = []
    end = time.monotonic() + seconds
    await asyncio.gather(*(one_client(port, request, end, expect, times)
                           for _ in range(clients)))
    return times


def measure_images(work: Path, clients: int = 50, seconds: float = 5.0) -> list[str]:
    data, plots = work / "images" / "data", work / "images" / "p"
    data.mkdir(parents=True)
    simulate_file(data / "run.h5", "packet", n_packets=100_000, seed=3)
    monitor = Monitor(data, plots, "--plots", "AdcSpectrum")
    while not httpx.get(monitor.base + "/api/plots").json():
        time.sleep(0.2)
    path = "/plots/run/AdcSpectrum.png"
    first = httpx.get(monitor.base + path)
    lines = [f"image {len(first.content) / 1000:.0f} kB, {clients} concurrent keep-alive clients:"]
    for label, headers, expect in (("200 full", {}, 200),
                                   ("304 etag", {"If-None-Match": first.headers["etag"]}, 304)):
        times = asyncio.run(hammer(monitor.port, path, headers, clients, seconds, expect))
        lines.append(f"  {label}: {len(times) / seconds:7.0f} req/s   {percentiles(times)}")
    monitor.stop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="live writing per rate")
    parser.add_argument("--flush", type=float, default=0.25, help="seconds between flushes")
    parser.add_argument("--rates", type=float, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["packet", "raw"])
    parser.add_argument("--plots", nargs="+", default=PLOTS, help="plots rendered meanwhile")
    parser.add_argument("--no-plots", action="store_true", help="metrics only")
    args = parser.parse_args()
    plot_args = ["--no-plots"] if args.no_plots else ["--plots", *args.plots]
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        work = Path(tmp)
        print("\n1. batch on disk -> counted in /metrics "
              f"(flush every {args.flush:g} s, {' '.join(plot_args)})")
        for fmt in args.formats:
            for rate in args.rates:
                print("  " + measure_latency(fmt, rate, args.seconds, args.flush, work,
                                             plot_args), flush=True)
        print("\n2. /metrics scrape time")
        for line in measure_scrape(work):
            print("  " + line, flush=True)
        print("\n3. plot images")
        for line in measure_images(work):
            print("  " + line, flush=True)


if __name__ == "__main__":
    main()
