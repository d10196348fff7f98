"""Kill anywhere: counters continue across any stop, as Prometheus sees them.

larpix-control's own writers (the packet logger and the raw writer) append to
packet and raw files and rotate them, while a real ``larpix-monitor serve`` is
stopped at 20 random instants (start-up, restore, reading, checkpoint writes,
serving) and started again on the same port, with a real Prometheus scraping it
every second and the test scraping it as fast as it answers. At the end:

* every counter equals a numpy recount of the rows on disk (raw files through
  larpix-control's own conversion);
* no scraped counter series ever went down, in the test's scrapes or in
  Prometheus's samples, and Prometheus's ``resets()`` is 0 for every series;
* Prometheus's ``increase()`` of the rows-read counter over the run (its
  first sample, 0 before any row was written, to its last) equals the rows
  on disk.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
import yaml
from larpix.format import hdf5format, pacman_msg_format, rawhdf5format
from support.recount import adc_bucket_mismatches, expected_counts, scraped_counts
from support.service import MonitorProcess, Samples, parse_exposition
from support.stack import PrometheusAPI, start_prometheus
from support.waiting import free_port, wait_for

KILLS = 20
#: Stops fall uniformly within this many seconds: of start-up (import, restore, first scan)
#: for odd-numbered processes, of serving (reading, checkpoints, scrapes) for even ones.
STOP_WITHIN_SECONDS = 2.0
ROTATE_SECONDS = 3.0

#: larpix-control's writers, as the DAQ runs them: HDF5Logger for packet files (its flush
#: thread appends with to_file), to_rawfile for raw files; a new pair of files every
#: ``rotate`` seconds, until a line arrives on stdin.
WRITERS = r"""
import json, random, sys, threading, time
from larpix import Packet_v2, SyncPacket, TimestampPacket, TriggerPacket
from larpix.format import pacman_msg_format, rawhdf5format
from larpix.logger import HDF5Logger

out, rotate, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
failures = []
threading.excepthook = lambda hook: failures.append(repr(hook.exc_value))
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()

def data_packet(io_group):
    # random words (types, parity, FIFO flags), from a test stand's worth of chips
    p = Packet_v2(rng.randbytes(8))
    p.io_group, p.io_channel, p.chip_id = io_group, rng.randint(1, 16), rng.randint(11, 20)
    return p

files, second, part = [], 0, 0
print("ready", flush=True)
while not stop.is_set():
    packet_path, raw_path = f"{out}/packets-{part:03d}.h5", f"{out}/raw-{part:03d}.h5"
    logger = HDF5Logger(filename=packet_path, buffer_length=100_000)
    logger.enable()
    files += [packet_path, raw_path]
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < rotate:
        packets = [TimestampPacket(timestamp=1_700_000_000 + second)]
        packets += [data_packet(rng.randint(1, 2)) for _ in range(150)]
        packets.append(SyncPacket(sync_type=b"S", clk_source=0, timestamp=second, io_group=1))
        logger.record(packets)
        logger.flush(block=False)
        msgs, groups = [], []
        for _ in range(3):
            group = rng.randint(3, 4)
            words = [data_packet(group) for _ in range(rng.randint(0, 50))]
            words.append(SyncPacket(sync_type=b"S", clk_source=1, timestamp=second))
            words.append(TriggerPacket(trigger_type=b"\x02", timestamp=second))
            msgs.append(pacman_msg_format.format(words, msg_type="DATA"))
            groups.append(group)
        rawhdf5format.to_rawfile(raw_path, msgs=msgs, msg_headers={"io_groups": groups})
        second += 1
        time.sleep(0.02)
    logger.disable()
    part += 1
print(json.dumps({"files": files, "failures": failures}), flush=True)
"""

COUNTER_PATTERN = "larpix_.*_total|larpix_adc_bucket|larpix_readout_delay_ticks_bucket"


def clean_env() -> dict[str, str]:
    """Our environment without the lock switch that importing rawhdf5format sets."""
    return {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}


def start_writers(data: Path, seed: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITERS, str(data), str(ROTATE_SECONDS),
                             str(seed)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env())
    assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)
    return proc


def stop_writers(proc: subprocess.Popen) -> list[Path]:
    out, err = proc.communicate("stop\n", timeout=120)
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["failures"] == [], report
    return [Path(f) for f in report["files"]]


def rows_on_disk(files: list[Path], workdir: Path) -> tuple[dict[str, int], np.ndarray]:
    """Rows per format and every packet, read with h5py and larpix-control (not the monitor)."""
    rows = {"packet": 0, "raw": 0}
    arrays = []
    for path in files:
        if path.name.startswith("packets"):
            with h5py.File(path, "r", locking=False) as f:
                arrays.append(f["packets"][:])
            rows["packet"] += len(arrays[-1])
            continue
        raw = rawhdf5format.from_rawfile(str(path))
        rows["raw"] += len(raw["msgs"])
        packets = []
        for io_group, msg in zip(raw["msg_headers"]["io_groups"], raw["msgs"], strict=True):
            packets.extend(pacman_msg_format.parse(msg, io_group=io_group))
        converted = workdir / f"converted-{path.name}"
        hdf5format.to_file(str(converted), packet_list=packets)
        with h5py.File(converted, "r") as f:
            arrays.append(f["packets"][:])
    fields = ["io_group", "io_channel", "chip_id", "packet_type", "valid_parity", "dataword"]
    return rows, np.concatenate([a[fields] for a in arrays])


def try_scrape(monitor: MonitorProcess) -> Samples | None:
    try:
        response = httpx.get(monitor.base + "/metrics", timeout=2)
    except httpx.TransportError:
        return None
    return parse_exposition(response.text) if response.status_code == 200 else None


def counter_samples(samples: Samples) -> dict[tuple, float]:
    return {k: v for k, v in samples.items()
            if k[0].endswith(("_total", "_bucket")) and k[0].startswith("larpix_")}


def decreases(scrapes: list[Samples]) -> list[str]:
    """Counter series that one scrape shows lower than an earlier one (or not at all)."""
    highest: dict[tuple, float] = {}
    wrong = []
    for n, samples in enumerate(scrapes):
        counters = counter_samples(samples)
        wrong += [f"scrape {n}: {key} {v} -> {counters.get(key)}" for key, v in highest.items()
                  if not counters.get(key, -1.0) >= v]
        highest.update(counters)
    return wrong


def rows_read(samples: Samples, fmt: str) -> float:
    return samples[("larpix_monitor_rows_read_total", frozenset({("format", fmt)}))]


def prometheus_config(directory: Path, target: str) -> Path:
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
              "scrape_configs": [{"job_name": "larpix-monitor",
                                  "static_configs": [{"targets": [target]}]}]}
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_counters_continue_across_stops_at_random_instants(tmp_path, stop_signal) -> None:
    data, plots, logs = tmp_path / "data", tmp_path / "plots", tmp_path / "logs"
    for directory in (data, plots, logs):
        directory.mkdir()
    rng = random.Random(int(stop_signal))
    port, prometheus_port = free_port(), free_port()
    began = time.time()
    prometheus = start_prometheus(prometheus_config(tmp_path, f"127.0.0.1:{port}"),
                                  tmp_path / "tsdb", prometheus_port, logs)
    api = PrometheusAPI(prometheus_port)
    writers = None
    scrapes: list[Samples] = []
    try:
        def monitor(n: int) -> MonitorProcess:
            return MonitorProcess(data, plots, "--no-plots", port=port,
                                  log_path=logs / f"monitor-{n:02d}.log")

        first = monitor(0).start()
        # Prometheus holds the rows-read counters at 0 before any row exists.
        wait_for(lambda: len(api.query("larpix_monitor_rows_read_total == 0")) == 2, 30,
                 "Prometheus's first scrape")
        writers = start_writers(data, seed=int(stop_signal))
        current = first
        for n in range(1, KILLS + 1):
            if n % 2:
                current.wait_ready()
            stop_at = time.monotonic() + rng.uniform(0.0, STOP_WITHIN_SECONDS)
            while time.monotonic() < stop_at:
                if (samples := try_scrape(current)) is not None:
                    scrapes.append(samples)
            current.stop(stop_signal)
            current = monitor(n).start(wait=False)
        files = stop_writers(writers)
        writers = None
        rows, packets = rows_on_disk(files, tmp_path)
        current.wait_ready()
        final = wait_for(lambda: (lambda s: s if s is not None and all(
            rows_read(s, fmt) == n for fmt, n in rows.items()) else None)(try_scrape(current)),
            120, "the last process to count every row on disk")
        scrapes.append(final)
        # Prometheus has the final values too
        wait_for(lambda: {r["metric"]["format"]: float(r["value"][1]) for r in api.query(
            "larpix_monitor_rows_read_total")} == rows, 30, "Prometheus's last scrape")
        # every query looks at the same span: some take long (thousands of per-chip series)
        at = time.time()
        run = f"[{int(at - began) + 5}s]"
        names = api.label_values("__name__", f'{{__name__=~"{COUNTER_PATTERN}"}}')
        resets = [r for name in names for r in api.query(f"resets({name}{run}) > 0", at=at)]
        history = api.query(f'{{__name__=~"{COUNTER_PATTERN}"}}{run}', at=at)
        increases = {fmt: prometheus_increase(api, fmt, run, at) for fmt in rows}
        current.stop(signal.SIGTERM)
    finally:
        if writers is not None:
            writers.kill()
            writers.communicate()
        prometheus.stop()

    expected = expected_counts(packets)
    assert scraped_counts(final) == {k: v for k, v in expected.items() if k != "adc"}
    assert adc_bucket_mismatches(final, expected["adc"]) == []
    assert len(scrapes) > KILLS // 2, "the processes were hardly ever scraped"
    assert decreases(scrapes) == []
    assert len(names) >= 8 and resets == []
    assert [series["metric"] for series in history
            if np.any(np.diff([float(v) for _, v in series["values"]]) < 0)] == []
    assert increases == rows
    monitor_logs = "".join(p.read_text(errors="replace") for p in sorted(logs.glob("monitor-*")))
    assert "Traceback" not in monitor_logs
    assert monitor_logs.count("counters continue from the checkpoint") >= KILLS // 2


def prometheus_increase(api: PrometheusAPI, fmt: str, run: str, at: float) -> float:
    """Prometheus's increase() over exactly the span of the series' samples, so that it
    extrapolates nothing: from the first sample (0) to the last one."""
    selector = f'larpix_monitor_rows_read_total{{format="{fmt}"}}'
    (series,) = api.query(f"{selector}{run}", at=at)
    first, last = float(series["values"][0][0]), float(series["values"][-1][0])
    (result,) = api.query(f"increase({selector}[{round((last - first) * 1000)}ms])", at=last)
    assert float(series["values"][0][1]) == 0.0
    return float(result["value"][1])
