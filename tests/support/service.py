"""Helpers for the service tests: a real ``larpix-monitor serve`` subprocess on a free port,
scraping and parsing its /metrics, and comparing with the simulator's ground truth."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from support.waiting import free_port

#: The installed console scripts (pyproject's ``[project.scripts]``).
MONITOR = str(Path(sys.executable).parent / "larpix-monitor")
RUN_MONITOR = str(Path(sys.executable).parent / "run_monitor.py")

Samples = dict[tuple[str, frozenset], float]

COUNTERS = ["larpix_packets_total", "larpix_data_packets_total", "larpix_parity_errors_total",
            "larpix_fifo_flags_total", "larpix_sync_packets_total", "larpix_sync_gaps_total",
            "larpix_trigger_packets_total"]
GAUGES = ["larpix_sync_offset_ticks", "larpix_data_timestamp_seconds", "larpix_packet_rate_hz",
          "larpix_active_channels", "larpix_hot_channels"]
HISTOGRAMS = ["larpix_adc", "larpix_readout_delay_ticks"]


class MonitorProcess:
    """``larpix-monitor serve`` as a user runs it, logging to ``log_path``."""

    def __init__(self, data_dir: Path, plot_dir: Path, *extra: str, port: int | None = None,
                 interval: float = 1.0, log_path: Path | None = None,
                 command: tuple[str, ...] = (MONITOR, "serve")) -> None:
        self.data_dir, self.plot_dir = data_dir, plot_dir
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or plot_dir.parent / f"monitor-{self.port}.log"
        self.args = [*command, "-i", str(data_dir), "-o", str(plot_dir),
                     "--port", str(self.port), "--interval", str(interval), *extra]
        self.proc: subprocess.Popen | None = None
        self.headers: dict[str, str] = {}

    def start(self, wait: bool = True) -> MonitorProcess:
        # a second start would leave the first process running, unowned, on the same port
        assert self.proc is None or self.proc.poll() is not None, "monitor already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        self._log = log
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if wait:
            self.wait_ready()
        return self

    def __enter__(self) -> MonitorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"monitor exited with {self.proc.returncode}:\n"
                                     + self.log_text()[-3000:])
            try:
                if httpx.get(self.base + "/readyz", headers=self.headers, timeout=1).status_code \
                        == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("monitor not ready in time:\n" + self.log_text()[-3000:])

    def get(self, path: str, **kwargs) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.get(self.base + path, headers=headers, timeout=10, **kwargs)

    def scrape(self) -> Samples:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return parse_exposition(response.text)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            self._log.close()
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def _samples(families: Iterable) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def parse_exposition(text: str) -> Samples:
    return _samples(text_string_to_metric_families(text))


def parse_openmetrics(text: str) -> Samples:
    return _samples(openmetrics_families(text))


def series(samples: Samples, name: str) -> dict[frozenset, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample of one series; a series that is not there fails (it is not 0)."""
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no series {name}{labels} in the scrape"
    return samples[key]


# -- ground truth --------------------------------------------------------------------------

def load_truth(data_file: Path) -> dict:
    return json.loads(Path(f"{data_file}.truth.json").read_text())


def truth_counters(truths: Iterable[dict], names: Iterable[str]) -> dict[tuple[str, frozenset],
                                                                          float]:
    """Counter series summed over several files (counters add up across files)."""
    total: dict[tuple[str, frozenset], float] = {}
    for truth in truths:
        for name in names:
            for entry in truth["metrics"].get(name, []):
                key = (name, frozenset(entry["labels"].items()))
                total[key] = total.get(key, 0.0) + entry["value"]
    return total


def mismatches(samples: Samples, expected: dict[tuple[str, frozenset], float],
               names: Iterable[str]) -> list[str]:
    """Every series of ``names`` that differs from ``expected`` (absent means zero)."""
    names = set(names)
    keys = set(expected) | {k for k in samples if k[0] in names}
    wrong = []
    for key in sorted(keys, key=str):
        want, got = expected.get(key, 0.0), samples.get(key, 0.0)
        if not math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-9):
            wrong.append(f"{key[0]}{dict(key[1])}: expected {want}, got {got}")
    return wrong


def histogram_from_counts(name: str, counts_by_group: dict[str, dict[int, int]]
                          ) -> Callable[[Samples], list[str]]:
    """Checks ``name``'s cumulative buckets, count and sum against raw value counts."""

    def check(samples: Samples) -> list[str]:
        wrong = []
        groups = set(counts_by_group) | {dict(labels)["io_group"] for labels in
                                         series(samples, name + "_count")}
        for group in sorted(groups):
            counts = counts_by_group.get(group, {})
            buckets = {dict(labels)["le"]: v
                       for labels, v in series(samples, name + "_bucket").items()
                       if dict(labels)["io_group"] == group}
            for le, got in buckets.items():
                want = sum(c for v, c in counts.items() if v <= float(le))
                if got != want:
                    wrong.append(f"{name}_bucket io_group={group} le={le}: {want} != {got}")
            if value(samples, name + "_count", io_group=group) != sum(counts.values()):
                wrong.append(f"{name}_count io_group={group}")
            if value(samples, name + "_sum", io_group=group) != sum(v * c for v, c in
                                                                      counts.items()):
                wrong.append(f"{name}_sum io_group={group}")
        return wrong

    return check


def all_mismatches(samples: Samples, truths: list[dict], names: Iterable[str] = (
        *COUNTERS, *GAUGES, *HISTOGRAMS)) -> list[str]:
    """Metrics of the design table against the truths of files with disjoint io_groups."""
    names = list(names)
    wrong = mismatches(samples, truth_counters(truths, names), [
        n for n in names if n not in HISTOGRAMS])
    if "larpix_adc" in names:
        adc = {g: dict(enumerate(c)) for t in truths for g, c in t["adc_counts"].items()}
        wrong += histogram_from_counts("larpix_adc", adc)(samples)
    if "larpix_readout_delay_ticks" in names:
        delay = {g: {int(d): n for d, n in c.items()}
                 for t in truths for g, c in t["readout_delay_counts"].items()}
        wrong += histogram_from_counts("larpix_readout_delay_ticks", delay)(samples)
    return wrong
