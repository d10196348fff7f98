"""The quality roll-ups and alerts in a real Prometheus, configured from the repository's
files (only ``for:`` cut to 1 s), scraping a real exporter that grades a run against the
reference: they fire for the faulty run and stay quiet for a clean run of the detector.

The exporter reads static files, whose data time never moves, so the test's limits file
raises the staleness limits; every other limit is the default.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from support.quality_runs import FAULT_TILES
from support.service import load_truth, parse_exposition
from support.stack import (
    ManagedProcess,
    PrometheusAPI,
    start_exporter,
    start_prometheus,
    write_prometheus_test_config,
)
from support.waiting import free_port, wait_for

QUALITY_ALERTS = ("LArPixQualityBad", "LArPixQualityWarning")


@dataclass
class QualityStack:
    prometheus: PrometheusAPI
    exporter_url: str
    document: dict      # the exporter's /api/quality once the whole file was graded


@pytest.fixture(scope="module", params=["faulty", "clean"])
def stack(request, runs, tmp_path_factory) -> Iterator[QualityStack]:
    root = tmp_path_factory.mktemp(f"quality-stack-{request.param}")
    data, plots, logs, prom = (root / n for n in ("data", "plots", "logs", "prometheus"))
    for directory in (data, plots, logs, prom):
        directory.mkdir()
    reference = root / "REF.h5"
    subprocess.run([sys.executable, "-m", "exporter.cli", "reference", str(runs["reference"]),
                    "-o", str(reference), "--name", "ref-1"], check=True, capture_output=True)
    checks = root / "checks.yaml"
    checks.write_text("staleness:\n  warning: 3600\n  bad: 7200\n")
    shutil.copyfile(runs[request.param], data / f"{request.param}.h5")
    ports = {name: free_port() for name in ("exporter", "prometheus", "alertmanager")}
    started: list[ManagedProcess] = []
    try:
        started.append(start_exporter(data, plots, ports["exporter"], logs, [
            "--read-all", "--no-plots", "--interval", "1", "--reference", str(reference),
            "--checks", str(checks)]))
        url = f"http://127.0.0.1:{ports['exporter']}"
        packets = load_truth(runs[request.param])["packets"]
        read = wait_for(lambda: _read_all(url, packets), 180, "the whole file read")
        document = wait_for(lambda: (d := httpx.get(url + "/api/quality").json()).get(
            "evaluated") and d["updated"] > read and d, 60, "a grading of the whole file")
        config = write_prometheus_test_config(
            prom, exporter=f"127.0.0.1:{ports['exporter']}",
            alertmanager=f"127.0.0.1:{ports['alertmanager']}",
            prometheus=f"127.0.0.1:{ports['prometheus']}")
        started.append(start_prometheus(config, prom / "tsdb", ports["prometheus"], logs))
        yield QualityStack(PrometheusAPI(ports["prometheus"]), url, document)
    finally:
        for process in reversed(started):
            process.stop()


def _read_all(url: str, packets: int) -> float | None:
    """The time by which the exporter had counted every packet of its file, else None."""
    samples = parse_exposition(httpx.get(url + "/metrics").text)
    counted = sum(v for (name, _), v in samples.items() if name == "larpix_packets_total")
    return time.time() if counted == packets else None


def _by_labels(result: list[dict], *names: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(n, "") for n in names): float(r["value"][1]) for r in result}


def _worst(document: dict, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """max of the grades over everything but ``by``: the roll-ups, computed from the API."""
    out: dict[tuple[str, ...], float] = {}
    for grade in document["grades"]:
        key = tuple(str(grade[n]) for n in by)
        out[key] = max(out.get(key, -1), grade["grade"])
    return out


def test_the_roll_ups_are_the_worst_tile(stack: QualityStack) -> None:
    prometheus = stack.prometheus
    io_group = wait_for(lambda: _by_labels(prometheus.query("larpix:quality:io_group"),
                                             "check", "io_group") or None, 60,
                          "the io_group roll-up")
    assert io_group == _worst(stack.document, ("check", "io_group"))
    detector = _by_labels(prometheus.query("larpix:quality:detector"), "check")
    assert detector == _worst(stack.document, ("check",))


def _quality_alerts(prometheus: PrometheusAPI) -> set[tuple[str, str, str, str]]:
    return {(a["labels"]["alertname"], a["labels"]["check"], a["labels"]["io_group"],
             a["state"]) for a in prometheus.alerts()
            if a["labels"]["alertname"] in QUALITY_ALERTS}


def test_the_alerts_fire_for_the_faulty_run_only(stack: QualityStack, request) -> None:
    prometheus = stack.prometheus
    if "faulty" in request.node.callspec.id:
        expected = {("LArPixQualityBad", check, str(group), "firing")
                    for check, tiles in FAULT_TILES.items() if check != "hot_vs_reference"
                    for group, _ in tiles}
        expected.add(("LArPixQualityWarning", "hot_vs_reference", "1", "firing"))
        firing = wait_for(lambda: (f := _quality_alerts(prometheus)) >= expected and f, 60,
                            f"the quality alerts {sorted(expected)}")
        worst = _worst(stack.document, ("check", "io_group"))
        assert firing == {({2: "LArPixQualityBad", 1: "LArPixQualityWarning"}[int(v)], c, g,
                           "firing") for (c, g), v in worst.items() if v >= 1}
    else:
        # quiet after the rules have been evaluated on the graded run for several seconds
        wait_for(lambda: prometheus.query(
            "count_over_time(larpix:quality:detector[30s]) >= 5"), 60,
            "five evaluations of the roll-ups")
        assert _quality_alerts(prometheus) == set()
        assert max(_by_labels(prometheus.query("larpix:quality:detector"), "check").values()) \
            <= 0
