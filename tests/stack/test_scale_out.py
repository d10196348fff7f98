"""Scale-out for real: sharded exporters, one Prometheus, VictoriaMetrics behind remote_write.

Three ``larpix-monitor serve`` processes: ``--shard 0/2`` and ``--shard 1/2``
on one directory where the DAQ rotates files (io_groups 1 and 2 in every
file, so each io_group is split over both shards), and a third on its own
directory (another detector, a test stand, io_group 1 as well). One real
Prometheus scrapes all three with the repository's configuration and alert
rules and remote-writes to a real VictoriaMetrics. Every figure is checked
against the simulator's ground truth, on both engines.
"""

from __future__ import annotations

import binascii
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from support.scale import (
    start_victoria_metrics,
    sum_of_rate,
    truth_sums,
    write_scale_prometheus_config,
)
from support.service import mismatches, parse_exposition, truth_counters
from support.stack import (
    ManagedProcess,
    PrometheusAPI,
    dashboards,
    start_exporter,
    start_prometheus,
    substitute,
    targets,
)
from support.waiting import free_port, wait_for

from exporter.packets import tile_of
from exporter.simulate import simulate_file

SHARED_FILES = [f"run_{i:03d}.h5" for i in range(6)]
SECONDS, RATE, START = 12, 3000.0, 1_700_000_000  # per file: longer than the 10 s window
#: Counters that add up over files. Not larpix_sync_gaps_total: a file's last second is
#: judged only when a later second arrives, so a file's own truth leaves it out.
COUNTERS = ["larpix_packets_total", "larpix_data_packets_total", "larpix_parity_errors_total",
            "larpix_fifo_flags_total", "larpix_sync_packets_total", "larpix_trigger_packets_total"]
VALUES = {"io_group": "1", "io_channel": ".*", "__rate_interval": "10s"}


def owner(name: str, count: int = 2) -> int:
    """The shard of a file name, recomputed here with binascii's CRC-32."""
    return binascii.crc32(name.encode()) % count


@dataclass
class ScaleStack:
    prometheus: PrometheusAPI
    victoria: PrometheusAPI  # VictoriaMetrics answers the same query API
    exporters: dict[str, ManagedProcess]  # shard0, shard1, stand
    instances: dict[str, str]
    truths: dict[str, dict]  # file name -> ground truth
    stand_truth: dict


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleStack]:
    root = tmp_path_factory.mktemp("scale")
    shared, own, logs = root / "shared", root / "stand", root / "logs"
    for directory in (shared, own, logs, root / "prometheus", root / "vm"):
        directory.mkdir()
    ports = {name: free_port() for name in ("shard0", "shard1", "stand", "prometheus", "vm")}
    started: list[ManagedProcess] = []
    try:
        started.append(start_victoria_metrics(root / "vm", ports["vm"], logs))
        exporters: dict[str, ManagedProcess] = {}
        for name, data, extra in (("shard0", shared, ["--shard", "0/2"]),
                                  ("shard1", shared, ["--shard", "1/2"]), ("stand", own, [])):
            (logs / name).mkdir()
            exporters[name] = start_exporter(data, root / f"plots-{name}", ports[name],
                                             logs / name, ["--no-plots", "--poll", *extra])
            started.append(exporters[name])
        instances = {name: f"127.0.0.1:{ports[name]}" for name in exporters}
        config = write_scale_prometheus_config(
            root / "prometheus",
            {"2x2": [instances["shard0"], instances["shard1"]], "teststand": [instances["stand"]]},
            f"http://127.0.0.1:{ports['vm']}/api/v1/write")
        started.append(start_prometheus(config, root / "prometheus" / "tsdb",
                                        ports["prometheus"], logs))
        prometheus = PrometheusAPI(ports["prometheus"])
        wait_for(lambda: len(prometheus.query('up{job="larpix-monitor"} == 1')) == 3, 60,
                   "Prometheus's first scrape of the three exporters")

        # The DAQ rotates: one file after the other, data time running on.
        truths = {}
        for i, name in enumerate(SHARED_FILES):
            truths[name] = simulate_file(shared / name, "packet" if i % 2 else "raw",
                                         seconds=SECONDS, rate=RATE, io_groups=(1, 2), seed=i,
                                         start_time=START + SECONDS * i)
        stand_truth = simulate_file(own / "stand_000.h5", "packet", seconds=SECONDS, rate=RATE,
                                    io_groups=(1,), seed=99, start_time=START + 1000)
        yield ScaleStack(prometheus, PrometheusAPI(ports["vm"]), exporters, instances, truths,
                         stand_truth)
    finally:
        for process in reversed(started):
            process.stop()


def scrape(stack: ScaleStack, name: str) -> dict:
    return parse_exposition(httpx.get(f"http://{stack.instances[name]}/metrics", timeout=10).text)


def shard_truths(stack: ScaleStack, shard: int) -> list[dict]:
    return [t for name, t in stack.truths.items() if owner(name) == shard]


def test_each_file_is_read_by_exactly_one_shard(stack: ScaleStack) -> None:
    assert {owner(name) for name in SHARED_FILES} == {0, 1}, "the files must cover both shards"
    for shard in (0, 1):
        expected = truth_counters(shard_truths(stack, shard), COUNTERS)
        wait_for(lambda shard=shard, expected=expected: not mismatches(
                   scrape(stack, f"shard{shard}"), expected, COUNTERS),
                   60, f"shard {shard}'s counters to equal its files' truth")
        samples = scrape(stack, f"shard{shard}")
        files = sum(v for (n, _), v in samples.items() if n == "larpix_monitor_files")
        assert files == sum(owner(name) == shard for name in SHARED_FILES)


def counter_totals(api: PrometheusAPI, expr: str, by: tuple[str, ...]) -> dict:
    return {tuple(s["metric"].get(label, "") for label in by): float(s["value"][1])
            for s in api.query(expr) if float(s["value"][1])}


def counter_panels() -> list[tuple[str, str]]:
    found = [(panel["title"], target["expr"]) for d in dashboards().values()
             for panel, target in targets(d) if sum_of_rate(target["expr"])
             and sum_of_rate(target["expr"])[0] in COUNTERS]
    assert len(found) >= 5, found
    return found


def detector_choices(api: PrometheusAPI) -> set[str]:
    """The dashboards' detector variable as Grafana lists it from ``api``."""
    (query,) = {v["query"] for d in dashboards().values() for v in d["templating"]["list"]
                if v["name"] == "detector"}
    match, label = re.fullmatch(r"label_values\((.+), (\w+)\)", query).groups()
    return set(api.label_values(label, match))


@pytest.mark.parametrize("engine", ["prometheus", "victoria"])
def test_dashboard_counter_panels_total_the_truth(stack: ScaleStack, engine: str) -> None:
    """Every 'sum by (...) (rate(counter))' panel with $detector set to one detector: the
    truth of that detector's files summed over its shards, never both detectors' sum."""
    api = getattr(stack, engine)
    test_each_file_is_read_by_exactly_one_shard(stack)  # every exporter has read everything
    by_detector = {"2x2": list(stack.truths.values()), "teststand": [stack.stand_truth]}
    everything = [*by_detector["2x2"], *by_detector["teststand"]]
    wait_for(lambda: detector_choices(api) == set(by_detector), 60,
             f"{engine}: the detector variable to list both detectors")
    for title, expr in counter_panels():
        name, by, matchers = sum_of_rate(expr)
        assert ("detector", "=~", "$detector") in matchers, f"{title}: {expr}"
        matchers = [(label, op, substitute(value, VALUES)) for label, op, value in matchers
                    if label != "detector"]  # the truth is per detector already
        both = truth_sums(everything, name, by, matchers)
        for detector, truths in by_detector.items():
            query = re.sub(r"rate\((.*)\[10s\]\)", r"\1",
                           substitute(expr, {**VALUES, "detector": detector}))
            want = truth_sums(truths, name, by, matchers)
            assert want and want != both, f"{title}: no truth to tell {detector} apart"
            wait_for(lambda query=query, want=want, by=by:
                       counter_totals(api, query, by) == want, 60,
                       f"{engine}: {title} = {detector}'s truth ({query})")


def newest_window_truth(stack: ScaleStack, name: str) -> dict[str, float]:
    """A window gauge per io_group as the newest file of each io_group has it."""
    newest = stack.truths[SHARED_FILES[-1]]
    return {e["labels"]["io_group"]: e["value"] for e in newest["metrics"][name]}


def panel_expr(title: str, dashboard_title: str) -> str:
    (dashboard,) = [d for d in dashboards().values() if d["title"] == dashboard_title]
    (expr,) = {t["expr"] for p, t in targets(dashboard) if p["title"] == title}
    return expr


@pytest.mark.parametrize("engine", ["prometheus", "victoria"])
def test_window_gauges_come_from_the_shard_with_the_newest_data(stack: ScaleStack,
                                                                engine: str) -> None:
    api = getattr(stack, engine)
    test_each_file_is_read_by_exactly_one_shard(stack)
    active = newest_window_truth(stack, "larpix_active_channels")
    expected = {"2x2": sum(active.values()),
                "teststand": stack.stand_truth["metrics"]["larpix_active_channels"][0]["value"]}
    expr = panel_expr("Active channels", "LArPix overview")

    def total(query: str) -> float | None:
        result = api.query(query)
        return float(result[0]["value"][1]) if result else None
    for detector, want in expected.items():
        query = substitute(expr, {"detector": detector})
        wait_for(lambda query=query, want=want: total(query) == want, 60,
                 f"{engine}: active channels of {detector}'s newest data ({query})")
    # The older shard still holds its last file's window: a plain sum would be wrong.
    naive = float(api.query('sum(larpix_active_channels{detector="2x2"})')[0]["value"][1])
    assert naive != expected["2x2"]

    hot = newest_window_truth(stack, "larpix_hot_channels")
    hot_expr = substitute(panel_expr("Hot channels", "LArPix overview"), {"detector": "2x2"})
    got = {s["metric"]["io_group"]: float(s["value"][1]) for s in api.query(hot_expr)}
    assert got == hot

    newest = newest_window_truth(stack, "larpix_data_timestamp_seconds")
    latest = panel_expr("Data staleness", "LArPix overview").replace("time() - ", "")
    got = {(s["metric"].get("detector"), s["metric"]["io_group"]): float(s["value"][1])
           for detector in expected
           for s in api.query(substitute(latest, {"detector": detector}))}
    assert got == {**{("2x2", g): v for g, v in newest.items()},
                   ("teststand", "1"): stack.stand_truth["metrics"][
                       "larpix_data_timestamp_seconds"][0]["value"]}


@pytest.mark.parametrize("engine", ["prometheus", "victoria"])
def test_tile_panel_joins_the_tiles_of_both_shards(stack: ScaleStack, engine: str) -> None:
    """Both shards expose larpix_io_channel_info for the io_channels they saw: the per-tile
    join still finds one tile per io_channel, and the tiles total the 2x2 files' truth."""
    api = getattr(stack, engine)
    test_each_file_is_read_by_exactly_one_shard(stack)
    wait_for(lambda: api.query('count by (io_channel) (larpix_io_channel_info'
                               '{detector="2x2", io_group="1"}) > 1'), 60,
             f"{engine}: io_channels of io_group 1 seen by both shards")
    expected: dict[str, float] = {}
    for truth in stack.truths.values():
        for entry in truth["metrics"]["larpix_data_packets_total"]:
            if entry["labels"]["io_group"] == "1":
                tile = str(int(tile_of(np.array([int(entry["labels"]["io_channel"])]))[0]))
                expected[tile] = expected.get(tile, 0) + entry["value"]
    expr = re.sub(r"rate\((.*)\[10s\]\)", r"\1", substitute(
        panel_expr("Data rate per tile", "IO group detail"), {**VALUES, "detector": "2x2"}))
    wait_for(lambda: {s["metric"]["tile"]: float(s["value"][1])
                      for s in api.query(expr)} == expected, 60,
             f"{engine}: the 2x2's io_group 1 counted per tile ({expr})")


def test_killing_one_exporter_fires_its_alert_and_spares_the_others(stack: ScaleStack) -> None:
    test_each_file_is_read_by_exactly_one_shard(stack)
    prometheus = stack.prometheus
    others = ("shard0", "shard1")
    before = {name: counter_totals(
        prometheus, f'sum(larpix_packets_total{{instance="{stack.instances[name]}"}})', ())
        for name in others}
    stand = stack.exporters["stand"].process
    stand.send_signal(signal.SIGKILL)
    stand.wait(timeout=10)
    killed_at = time.time()
    wait_for(lambda: prometheus.firing("LArPixExporterDown", instance=stack.instances["stand"]),
               60, "LArPixExporterDown for the killed exporter")
    assert not [a for a in prometheus.firing("LArPixExporterDown")
                if a["labels"]["instance"] != stack.instances["stand"]]
    for name in others:
        instance = stack.instances[name]
        wait_for(lambda instance=instance: float(prometheus.query(
            f'timestamp(up{{instance="{instance}"}} == 1)')[0]["value"][1]) > killed_at + 1,
            30, f"a scrape of {name} after the kill")
        after = counter_totals(prometheus, f'sum(larpix_packets_total{{instance="{instance}"}})',
                               ())
        assert after == before[name]
        expected = truth_counters(shard_truths(stack, int(name[-1])), ["larpix_packets_total"])
        assert before[name][()] == sum(expected.values())
