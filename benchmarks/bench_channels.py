"""At 2x2 scale (8 io_groups x 8 tiles x 100 chips x 64 channels): the first /metrics scrape
and the first /api/channels?limit=100 after new rows, over real HTTP, and the memory of the
per-channel state.

    .venv/bin/python benchmarks/bench_channels.py [--seconds 12] [--rate 500000] [--rounds 60]

A simulated 2x2 run is read up to its last rows; then, round after round, a
slice of new rows is counted, the exposition is built ahead as the ingest
loop does after new rows (``MetricsCollector.prepare``, timed apart), and the
two routes are asked once each (the per-channel table is rebuilt on the
request: the worst case a dashboard panel meets). The service is the real FastAPI app under
uvicorn on a thread of this process, asked with httpx.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.metrics import DetectorMetrics, MonitorHealth, build_registry  # noqa: E402
from exporter.packets import Chunk  # noqa: E402
from exporter.simulate import simulate_file  # noqa: E402
from exporter.source.reader import FileReader  # noqa: E402
from exporter.web.app import create_app  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
GROUPS = tuple(range(1, 9))


class Ready:
    def is_ready(self) -> bool:
        return True

    def is_alive(self) -> bool:
        return True

    def files(self) -> list:
        return []


def run_file(seconds: int, rate: float) -> Path:
    path = DATA / f"2x2-{seconds}s-{int(rate)}.h5"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        simulate_file(partial, "packet", seconds=seconds, rate=rate, seed=1, io_groups=GROUPS)
        partial.rename(path)
    return path


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--rate", type=float, default=500_000.0)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    path = run_file(args.seconds, args.rate)
    packets = np.concatenate([c.packets for c in FileReader(path).read_new()])
    cut = len(packets) - args.rounds * 2000
    detector = DetectorMetrics()
    for start in range(0, cut, 1 << 20):
        rows = packets[start:min(start + (1 << 20), cut)]
        detector.update(Chunk(rows, len(rows), rows.nbytes, "packet", True), str(path))
    registry = build_registry(detector, MonitorHealth())
    app = create_app(registry, Ready(), detector=detector)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    scrape, build, table, size = [], [], [], 0
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/metrics")
        client.get("/api/channels?limit=100")
        for i in range(args.rounds):
            rows = packets[cut + 2000 * i:cut + 2000 * (i + 1)]
            detector.update(Chunk(rows, len(rows), rows.nbytes, "packet", True), str(path))
            started = time.perf_counter()
            registry.collector.prepare()   # what the ingest loop does after new rows
            build.append(time.perf_counter() - started)
            started = time.perf_counter()
            body = client.get("/metrics").content
            scrape.append(time.perf_counter() - started)
            size = len(body)
            started = time.perf_counter()
            response = client.get("/api/channels?limit=100")
            table.append(time.perf_counter() - started)
            assert len(response.json()["rows"]) == 100
    server.should_exit = True
    thread.join(10)
    full = detector.channel_table()
    counts = detector.channels.counts(str(path))
    chips = len(np.unique(full.io_group * 65536 + full.io_channel * 256 + full.chip_id))
    resident = (chips + 1) * 64 * (256 * 2 + 8 * 8)   # histogram rows and 8 int64 columns
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"2x2 run: {len(packets):,} packets, {len(full):,} channels of {chips:,} chips "
          f"(load average {load})")
    print(f"exposition built ahead after new rows (ingest thread): p50 "
          f"{percentile(build, 50):.1f} ms, p99 {percentile(build, 99):.1f} ms")
    print(f"/metrics first scrape after new rows: p50 {percentile(scrape, 50):.1f} ms, "
          f"p99 {percentile(scrape, 99):.1f} ms (target <= 50), exposition {size / 1e6:.2f} MB")
    print(f"/api/channels?limit=100 after new rows: p50 {percentile(table, 50):.1f} ms, "
          f"p99 {percentile(table, 99):.1f} ms (target <= 100)")
    print(f"per-channel state of the file: {resident / 2**20:.0f} MiB resident for its chips "
          f"(uint16 histograms {(chips + 1) * 64 * 512 / 2**20:.0f} MiB), "
          f"{counts.nbytes() / 2**20:.0f} MiB allocated (pages never touched are not resident); "
          f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    ok = percentile(scrape, 99) <= 50 and percentile(table, 99) <= 100
    print("targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
