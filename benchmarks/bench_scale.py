"""What one exporter costs Prometheus, and what Prometheus costs per series.

    .venv/bin/python benchmarks/bench_scale.py [--scrapes 200] [--seconds 120]

1. Series and exposition per exporter: a real ``larpix-monitor serve`` reads a
   simulated file in which every chip of every tile has data, at 2x2 scale
   (8 io_groups x 8 tiles x 100 chips x 64 channels) and at ND-LAr-module
   scale (taken here as 10 io_groups x 8 tiles: 80 tiles, an upper estimate
   for the 60-70 tiles of a module's two 1 m x 3 m anodes). Series per
   family, exposition bytes (plain and gzip, as Prometheus asks for it),
   scrape time p50/p99 of back-to-back scrapes.
2. Prometheus with 4 such exporters at 2x2 scale, scraped at the repository's
   10 s interval: head series, samples/s, RSS and CPU over ``--seconds``,
   against the same Prometheus scraping only itself (the baseline, same run).

Source data are simulated once and cached under benchmarks/data/.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import yaml
from _common import DATA, ROOT, ServeProcess, cached_simulation, free_port, rows_read

SCALES = {"2x2": tuple(range(1, 9)), "ND-LAr module": tuple(range(1, 11))}
PACKETS_PER_GROUP = 500_000  # enough for every chip of every tile to have data
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ", re.MULTILINE)
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count|created)$")


def source_file(io_groups: tuple[int, ...]) -> Path:
    n_packets = PACKETS_PER_GROUP * len(io_groups)
    return cached_simulation(DATA / f"scale_packet_{n_packets}_{len(io_groups)}g.h5", "packet",
                             n_packets=n_packets, seed=7, io_groups=io_groups, rate=200_000.0)


class Exporter(ServeProcess):
    """``larpix-monitor serve --no-plots --read-all`` on a directory holding one file."""

    def __init__(self, source: Path, work: Path) -> None:
        data = work / "data"
        data.mkdir(parents=True)
        os.symlink(source, data / source.name)
        super().__init__(data, work / "plots", "--no-plots", "--read-all", log_dir=work,
                         log_name="exporter.log")
        self.expected = simulate_truth_rows(source)

    def wait_read(self, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = httpx.get(self.base + "/metrics", timeout=30).text
                if rows_read(text) >= self.expected:
                    return text
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.proc.returncode}")
            time.sleep(0.5)
        raise RuntimeError("exporter did not read its file in time")


def simulate_truth_rows(source: Path) -> int:
    import json
    return json.loads(Path(f"{source}.truth.json").read_text())["rows"]


def series_by_family(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name, _ in SAMPLE.findall(text):
        counts[HISTOGRAM_SUFFIX.sub("", name)] += 1
    return counts


def percentiles_ms(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def scrape_times(base: str, n: int, gzipped: bool) -> list[float]:
    headers = {"Accept-Encoding": "gzip" if gzipped else "identity"}
    times = []
    with httpx.Client() as client:
        for _ in range(n):
            t = time.perf_counter()
            response = client.get(base + "/metrics", headers=headers, timeout=30)
            response.read()
            times.append(time.perf_counter() - t)
            assert response.status_code == 200
    return times


def measure_exporter(scale: str, work: Path, scrapes: int) -> None:
    exporter = Exporter(source_file(SCALES[scale]), work / scale.replace(" ", "-"))
    try:
        text = exporter.wait_read()
        families = series_by_family(text)
        body = text.encode()
        plain = percentiles_ms(scrape_times(exporter.base, scrapes, gzipped=False))
        zipped = percentiles_ms(scrape_times(exporter.base, scrapes, gzipped=True))
        served = httpx.get(exporter.base + "/metrics", headers={"Accept-Encoding": "gzip"},
                           timeout=30)
        encoding = served.headers.get("content-encoding", "identity")
        print(f"\n{scale}: {len(SCALES[scale])} io_groups, {sum(families.values())} series, "
              f"{len(body) / 1e6:.2f} MB plain, {len(gzip.compress(body, 6)) / 1e3:.0f} kB gzip; "
              f"served as {encoding} ({served.num_bytes_downloaded / 1e3:.0f} kB on the wire) "
              "when Prometheus asks for gzip")
        print(f"  scrape plain p50 {plain[0]:.1f} ms p99 {plain[1]:.1f} ms; "
              f"gzip p50 {zipped[0]:.1f} ms p99 {zipped[1]:.1f} ms (n={scrapes} each)")
        for name, n in families.most_common():
            print(f"  {n:7d}  {name}")
    finally:
        exporter.stop()


# -- 2. Prometheus ---------------------------------------------------------------------


def proc_cpu_rss(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    return cpu, rss


def prometheus_value(port: int, expr: str) -> float:
    body = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr},
                     timeout=10).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def run_prometheus(work: Path, targets: list[str], seconds: float) -> dict[str, float]:
    """Start Prometheus on ``targets`` at the repository's scrape interval; measure it."""
    port = free_port()
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config.pop("remote_write", None)
    config.pop("alerting", None)
    config["rule_files"] = [str(ROOT / "prometheus" / "alerts.yml")]
    config["scrape_configs"] = [
        {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]
    if targets:
        config["scrape_configs"].append({"job_name": "larpix-monitor", "static_configs": [
            {"targets": targets, "labels": {"detector": "2x2"}}]})
    work.mkdir(parents=True)
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([shutil.which("prometheus"), f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Prometheus did not start")
            time.sleep(0.2)
        scraped = f"count(count_over_time(up[5m]) >= 3) == {1 + len(targets)}"
        while not httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": scraped},
                            timeout=10).json()["data"]["result"]:
            time.sleep(1)  # poll: every target scraped three times, its series created
        cpu0, _ = proc_cpu_rss(proc.pid)
        appended0 = prometheus_value(port, "prometheus_tsdb_head_samples_appended_total")
        t0 = time.monotonic()
        rss = []
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            rss.append(proc_cpu_rss(proc.pid)[1])
        cpu1, _ = proc_cpu_rss(proc.pid)
        elapsed = time.monotonic() - t0
        appended1 = prometheus_value(port, "prometheus_tsdb_head_samples_appended_total")
        return {"series": prometheus_value(port, "prometheus_tsdb_head_series"),
                "samples_per_s": (appended1 - appended0) / elapsed,
                "cpu_percent": 100 * (cpu1 - cpu0) / elapsed,
                "rss_mb": float(np.median(rss)), "rss_max_mb": float(np.max(rss)),
                "scrape_s": prometheus_value(
                    port, 'max(scrape_duration_seconds{job="larpix-monitor"})')}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()


def measure_prometheus(work: Path, n_exporters: int, seconds: float) -> None:
    source = source_file(SCALES["2x2"])
    exporters = [Exporter(source, work / f"exporter-{i}") for i in range(n_exporters)]
    try:
        for exporter in exporters:
            exporter.wait_read()
        base = run_prometheus(work / "prom-baseline", [], seconds)
        loaded = run_prometheus(work / "prom-loaded", [e.base[7:] for e in exporters], seconds)
    finally:
        for exporter in exporters:
            exporter.stop()
    print(f"\nPrometheus, {n_exporters} exporters at 2x2 scale, 10 s scrape, {seconds:.0f} s "
          f"measured after three scrapes of each target:")
    for label, m in (("baseline (itself only)", base), (f"{n_exporters} exporters", loaded)):
        print(f"  {label:24s} {m['series']:8.0f} series  {m['samples_per_s']:8.0f} samples/s  "
              f"RSS {m['rss_mb']:6.0f} MB (max {m['rss_max_mb']:.0f})  "
              f"CPU {m['cpu_percent']:5.2f} %  slowest scrape {m['scrape_s'] * 1000:.0f} ms")
    extra = loaded["series"] - base["series"]
    per = 100_000 / extra
    print(f"  per 100 k series: RSS +{(loaded['rss_mb'] - base['rss_mb']) * per:.0f} MB, "
          f"CPU +{(loaded['cpu_percent'] - base['cpu_percent']) * per:.2f} % of one core, "
          f"{(loaded['samples_per_s'] - base['samples_per_s']) * per:.0f} samples/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--exporters", type=int, default=4)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        for scale in SCALES:
            measure_exporter(scale, work, args.scrapes)
        measure_prometheus(work / "prometheus", args.exporters, args.seconds)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
