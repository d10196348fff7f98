"""The stack for real: Prometheus and Alertmanager, configured from the repository's
files, watching a larpix-monitor exporter that reads simulated live data.

One stack serves the whole module. Prometheus scrapes and evaluates every
second and the rules' ``for:`` is cut to 1 s; everything else (rule
expressions, receivers, inhibitions, Alertmanager's start script) is the
repository's. The data directory holds:

* ``run_a.h5`` (packet format, io_group 1) and ``run_b.h5`` (raw format,
  io_group 2), appended live; run_a has a burst of bad parity at data second
  ``BURST_START``;
* ``stopped.h5`` (io_group 4): a writer that stopped ``STOPPED_AGO`` s ago;
* ``not-a-run.h5``: not HDF5 at all;

and the exporter runs two plugins: ``HitCount`` and ``AlwaysFails``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.stack import (
    ALERT_RULES,
    ManagedProcess,
    PrometheusAPI,
    WebhookReceiver,
    alert_rules,
    dashboards,
    free_port,
    healthcheck_command,
    load_yaml,
    panels,
    quality_alert_rules,
    start_alertmanager,
    start_exporter,
    start_prometheus,
    substitute,
    targets,
    wait_until,
    write_alertmanager_test_config,
    write_prometheus_test_config,
)

from exporter import DEFAULT_PORT
from exporter.packets import tile_of
from exporter.simulate import LiveSimulation, simulate_file

RATE = 1500.0  # packets per data second of each simulated file
BURST_START, BURST_SECONDS, BURST_FRACTION = 25, 8, 0.3
STOPPED_AGO = 400  # seconds since the stopped writer's last data
WEBHOOK_PATH = "/alerts?stack=integration&from=compose-entrypoint"
#: Grafana's variables, as it would set them for a 1 s scrape interval.
GRAFANA_INTERVALS = {"__rate_interval": "10s", "__interval": "2s", "__range": "1m"}

PLUGINS = '''
import numpy as np
from matplotlib.figure import Figure


class HitCount:
    """Data packets seen so far in the file."""

    def __init__(self):
        self.hits = 0

    def __call__(self, filename, fh, fig=None):
        self.hits += int(np.count_nonzero(fh["packets"]["packet_type"] == 0))
        fig = fig or Figure(figsize=(3, 2))
        fig.clear()
        fig.add_subplot().bar(["data"], [self.hits])
        return fig


class AlwaysFails:
    def __call__(self, filename, fh, fig=None):
        raise RuntimeError("this plot never draws")
'''


@dataclass
class Stack:
    prometheus: PrometheusAPI
    alertmanager_url: str
    exporter: ManagedProcess
    exporter_url: str
    exporter_port: int
    webhook: WebhookReceiver
    live_start: float  # unix time of the live files' data second 0
    stopped_truth: dict  # ground truth of stopped.h5
    prometheus_config: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    data, plots, plugins, logs = (root / name for name in ("data", "plots", "plugins", "logs"))
    for directory in (data, plots, plugins, logs, root / "prometheus", root / "am-config",
                      root / "alertmanager"):
        directory.mkdir()
    (plugins / "integration_plots.py").write_text(PLUGINS)
    (data / "not-a-run.h5").write_bytes(b"this is not an HDF5 file\n" * 8)

    ports = {name: free_port() for name in ("exporter", "prometheus", "alertmanager")}
    webhook = WebhookReceiver()
    started: list[ManagedProcess] = []
    stop_writers = threading.Event()
    writers: list[threading.Thread] = []
    try:
        started.append(start_alertmanager(
            write_alertmanager_test_config(root / "am-config"), root / "alertmanager",
            ports["alertmanager"], webhook.url(WEBHOOK_PATH), logs))
        exporter = start_exporter(data, plots, ports["exporter"], logs, [
            "--plugin-dir", str(plugins), "--plots", "HitCount", "AlwaysFails",
            "--interval", "2"])
        started.append(exporter)
        config = write_prometheus_test_config(
            root / "prometheus", exporter=f"127.0.0.1:{ports['exporter']}",
            alertmanager=f"127.0.0.1:{ports['alertmanager']}",
            prometheus=f"127.0.0.1:{ports['prometheus']}")
        started.append(start_prometheus(config, root / "prometheus" / "tsdb",
                                        ports["prometheus"], logs))
        prometheus = PrometheusAPI(ports["prometheus"])
        wait_until(lambda: prometheus.query('up{job="larpix-monitor"} == 1'), 60,
                   "Prometheus's first scrape of the exporter")

        live = [LiveSimulation(data / "run_a.h5", "packet", io_groups=(1,), rate=RATE, seed=1,
                               parity_burst=(BURST_START, BURST_SECONDS, BURST_FRACTION)),
                LiveSimulation(data / "run_b.h5", "raw", io_groups=(2,), rate=RATE, seed=2)]
        live_start = time.time()
        writers = [threading.Thread(target=sim.run, kwargs={"stop": stop_writers}, daemon=True)
                   for sim in live]
        for writer in writers:
            writer.start()
        stopped_truth = simulate_file(data / "stopped.h5", "packet", seconds=20,
                                      io_groups=(4,), rate=RATE, seed=3,
                                      start_time=int(time.time()) - STOPPED_AGO - 20)
        yield Stack(prometheus, f"http://127.0.0.1:{ports['alertmanager']}", exporter,
                    f"http://127.0.0.1:{ports['exporter']}", ports["exporter"], webhook,
                    int(live_start), stopped_truth, config)
    finally:
        stop_writers.set()
        for writer in writers:
            writer.join(timeout=30)
        for process in reversed(started):
            process.stop()
        webhook.close()


def truth_series(truth: dict, metric: str) -> list[tuple[dict, float]]:
    return [(s["labels"], s["value"]) for s in truth["metrics"].get(metric, [])]


def has_data(result: list[dict]) -> bool:
    """Whether a query result holds at least one finite sample."""
    values = [v for series in result
              for _, v in series.get("values", [series.get("value", (0, "NaN"))])]
    return any(np.isfinite(float(v)) for v in values)


def dashboard_queries() -> list[tuple[str, str, dict]]:
    """(dashboard title, panel title, target) of every dashboard query."""
    return [(d["title"], panel["title"], target) for d in dashboards().values()
            for panel, target in targets(d)]


def evaluate(prometheus: PrometheusAPI, target: dict, values: dict[str, str]) -> list[dict]:
    expr = substitute(target["expr"], values)
    if target.get("instant"):
        return prometheus.query(expr)
    now = time.time()
    return prometheus.query_range(expr, now - 20, now, 1)


def counters_instead_of_rates(expr: str) -> str:
    """A rate panel's expression over the counters themselves: totals instead of rates."""
    return re.sub(r"rate\(([^\[]+)\[\$__rate_interval\]\)", r"\1", expr)


def panel_expr(title: str, dashboard_title: str) -> str:
    (dashboard,) = [d for d in dashboards().values() if d["title"] == dashboard_title]
    (panel,) = [p for p in panels(dashboard) if p["title"] == title]
    (target,) = panel["targets"]
    return target["expr"]


def rule_value_expr(alert: str) -> str:
    """An alert's expression without its final comparison: the value it compares."""
    (rule,) = [r for r in alert_rules() if r["alert"] == alert]
    return re.sub(r">\s*[0-9.]+\s*$", "", rule["expr"].strip())


# -- every query of every dashboard and rule, on real data ------------------------------


def test_test_copy_changes_only_timing(stack: Stack) -> None:
    copied = load_yaml(stack.prometheus_config.parent / "alerts.yml")
    original = load_yaml(ALERT_RULES)
    pairs = zip([r for g in copied["groups"] for r in g["rules"]],
                [r for g in original["groups"] for r in g["rules"]], strict=True)
    for copy, rule in pairs:
        assert {k: v for k, v in copy.items() if k != "for"} == \
            {k: v for k, v in rule.items() if k != "for"}


def test_every_alert_rule_parses_and_evaluates(stack: Stack) -> None:
    for rule in alert_rules():
        stack.prometheus.query(rule["expr"])  # fails on a parse error
    def all_evaluated() -> bool:
        rules = {r["name"]: r for r in stack.prometheus.rules() if r["type"] == "alerting"}
        assert set(rules) == {r["alert"] for r in alert_rules() + quality_alert_rules()}
        for rule in rules.values():
            assert rule["health"] in ("ok", "unknown"), f"{rule['name']}: {rule.get('lastError')}"
        return all(r["health"] == "ok" for r in rules.values())
    wait_until(all_evaluated, 30, "every rule to be evaluated")


def queries_without_data(prometheus: PrometheusAPI, values: dict[str, str]) -> list[str]:
    return [f"{dashboard} / {panel} / {target['refId']}"
            for dashboard, panel, target in dashboard_queries()
            if not has_data(evaluate(prometheus, target, values))]


@pytest.mark.parametrize("io_group", ["1", "2"])  # packet-format and raw-format data
def test_every_dashboard_query_returns_data(stack: Stack, io_group: str) -> None:
    values = {**GRAFANA_INTERVALS, "io_group": io_group, "io_channel": ".*",
              "exporter_url": stack.exporter_url, "file": "run_a", "plot": "HitCount"}
    deadline = time.monotonic() + 120
    while (empty := queries_without_data(stack.prometheus, values)) and \
            time.monotonic() < deadline:
        time.sleep(1)
    assert empty == []


def test_dashboard_queries_with_one_io_channel_selected(stack: Stack) -> None:
    (detail,) = [d for d in dashboards().values() if d["title"] == "IO group detail"]
    channels = stack.prometheus.label_values("io_channel", 'larpix_data_packets_total'
                                             '{io_group="1"}')
    values = {**GRAFANA_INTERVALS, "io_group": "1", "io_channel": channels[0]}
    for panel, target in targets(detail):
        if "$io_channel" in target["expr"]:
            result = evaluate(stack.prometheus, target, values)
            assert has_data(result), panel["title"]
            assert {s["metric"].get("io_channel", channels[0]) for s in result} == {channels[0]}


def test_template_variables_list_the_simulated_values(stack: Stack) -> None:
    variables = {v["name"]: v for d in dashboards().values() for v in d["templating"]["list"]}

    def values_of(name: str, **substitutions: str) -> set[str]:
        query = substitute(variables[name]["query"], substitutions)
        metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", query).groups()
        found = set(stack.prometheus.label_values(label, metric))
        pattern = variables[name].get("regex", "").strip("/")
        return {v for v in found if re.fullmatch(pattern, v)} if pattern else found

    wait_until(lambda: values_of("io_group") == {"1", "2", "4"}, 60, "io_groups 1, 2 and 4")
    expected = {labels["io_channel"] for labels, _ in
                truth_series(stack.stopped_truth, "larpix_data_packets_total")}
    assert values_of("io_channel", io_group="4") == expected
    wait_until(lambda: "HitCount" in values_of("plot"), 60, "the HitCount plot to render")


# -- dashboard panels against the simulator's ground truth ------------------------------


def test_tile_panel_sums_the_simulated_packets_per_tile(stack: Stack) -> None:
    expr = counters_instead_of_rates(panel_expr("Data rate per tile", "IO group detail"))
    expr = substitute(expr, {"io_group": "4", "io_channel": ".*"})
    expected: Counter[str] = Counter()
    for labels, value in truth_series(stack.stopped_truth, "larpix_data_packets_total"):
        tile = int(tile_of(np.array([int(labels["io_channel"])]))[0])
        expected[str(tile)] += value

    def per_tile() -> dict[str, float]:
        return {s["metric"]["tile"]: float(s["value"][1]) for s in stack.prometheus.query(expr)}
    wait_until(lambda: per_tile() == dict(expected), 60, "stopped.h5 counted per tile")
    assert set(expected) == {str(t) for t in range(1, 9)}


def test_parity_panel_divides_by_larpix_packets_only(stack: Stack) -> None:
    expr = counters_instead_of_rates(panel_expr("Parity-error fraction", "LArPix overview"))
    errors = sum(v for _, v in truth_series(stack.stopped_truth, "larpix_parity_errors_total"))
    words = sum(v for labels, v in truth_series(stack.stopped_truth, "larpix_packets_total")
                if labels["packet_type"] in {"data", "test", "config_write", "config_read"})
    assert errors > 0 and words > 0

    def fraction() -> float | None:
        result = [s for s in stack.prometheus.query(expr) if s["metric"]["io_group"] == "4"]
        return float(result[0]["value"][1]) if result else None
    wait_until(lambda: fraction() is not None, 60, "stopped.h5's parity fraction")
    assert fraction() == pytest.approx(errors / words, rel=1e-12)


# -- faults reach the shift through Alertmanager ----------------------------------------


def test_parity_burst_fires_and_reaches_the_webhook(stack: Stack) -> None:
    before = stack.live_start + BURST_START - 3
    wait_until(lambda: time.time() > before + 2, 60, "clean data before the burst")
    fraction = {s["metric"]["io_group"]: float(s["value"][1]) for s in
                stack.prometheus.query(rule_value_expr("LArPixParityErrorsHigh"), at=before)}
    assert 0 < fraction["1"] < 0.01, "the clean run must be measured, and below the threshold"

    wait_until(lambda: stack.prometheus.firing("LArPixParityErrorsHigh", io_group="1"), 90,
               "LArPixParityErrorsHigh for io_group 1 in Prometheus")
    (alert,) = wait_until(lambda: stack.webhook.alerts("LArPixParityErrorsHigh", io_group="1"),
                          60, "the parity alert at the webhook")
    assert alert["labels"]["severity"] == "warning"
    assert re.fullmatch(r"\d+(\.\d+)?% of io_group 1 packets fail parity",
                        alert["annotations"]["summary"])
    assert alert["annotations"]["runbook"]
    assert WEBHOOK_PATH in stack.webhook.paths
    assert not stack.prometheus.firing("LArPixParityErrorsHigh", io_group="2")
    assert not stack.webhook.alerts("LArPixParityErrorsHigh", io_group="2")


def test_stopped_writer_is_reported_once(stack: Stack) -> None:
    (stale,) = wait_until(lambda: stack.webhook.alerts("LArPixDataStale", io_group="4"), 90,
                          "LArPixDataStale for io_group 4 at the webhook")
    assert stale["labels"]["severity"] == "critical"
    assert stale["annotations"]["summary"].startswith("No new data from io_group 4 for ")
    # Prometheus also sees io_group 4 lagging the live io_groups, but Alertmanager
    # inhibits that alert: one stopped writer, one notification.
    wait_until(lambda: stack.prometheus.firing("LArPixIOGroupNoData", io_group="4"), 60,
               "LArPixIOGroupNoData for io_group 4 in Prometheus")

    def inhibited() -> bool:
        alerts = httpx.get(f"{stack.alertmanager_url}/api/v2/alerts", timeout=5,
                           params={"filter": 'alertname="LArPixIOGroupNoData"'}).json()
        return any(a["labels"].get("io_group") == "4" and a["status"]["state"] == "suppressed"
                   and a["status"]["inhibitedBy"] for a in alerts)
    wait_until(inhibited, 30, "Alertmanager to inhibit LArPixIOGroupNoData for io_group 4")
    assert not stack.webhook.alerts("LArPixIOGroupNoData")
    for live_group in ("1", "2"):
        assert not stack.prometheus.firing("LArPixDataStale", io_group=live_group)
        assert not stack.prometheus.firing("LArPixIOGroupNoData", io_group=live_group)


def test_unreadable_file_and_failing_plot_are_reported(stack: Stack) -> None:
    (read_error,) = wait_until(
        lambda: stack.webhook.alerts("LArPixFileReadErrors", reason="not_hdf5"), 60,
        "LArPixFileReadErrors at the webhook")
    assert read_error["labels"]["instance"] == f"127.0.0.1:{stack.exporter_port}"
    wait_until(lambda: stack.webhook.alerts("LArPixPlotsFailing", plot="AlwaysFails"), 60,
               "LArPixPlotsFailing at the webhook")
    assert not stack.prometheus.firing("LArPixPlotsFailing", plot="HitCount"), \
        stack.exporter.log_tail()


# -- what the exporter serves, as the stack's files use it ------------------------------


def test_every_metric_the_stack_uses_is_exposed(stack: Stack) -> None:
    used = set()
    exprs = [r["expr"] for r in alert_rules()]
    exprs += [t["expr"] for d in dashboards().values() for _, t in targets(d)]
    exprs += [v["query"] for d in dashboards().values() for v in d["templating"]["list"]
              if v["type"] == "query"]
    for expr in exprs:
        used |= set(re.findall(r"\blarpix_\w+", expr))

    def exposed() -> set[str]:
        text = httpx.get(f"{stack.exporter_url}/metrics", timeout=5).text
        return {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    wait_until(lambda: used <= exposed(), 60, f"the exporter to expose {sorted(used)}")


def test_plots_dashboard_links_resolve(stack: Stack) -> None:
    (plots,) = [d for d in dashboards().values() if d["title"] == "Plots"]
    wait_until(lambda: any(p["plot"] == "HitCount" and p["file"] == "run_a" for p in
                           httpx.get(f"{stack.exporter_url}/api/plots", timeout=5).json()),
               60, "the HitCount plot of run_a")
    values = {"exporter_url": stack.exporter_url, "file": "run_a", "plot": "HitCount",
              "__to": str(int(time.time() * 1000))}
    html = " ".join(substitute(p["options"]["content"], values) for p in panels(plots)
                    if p["type"] == "text")
    urls = set(re.findall(r'(?:src|href)="([^"]+)"', html))
    assert len(urls) >= 4
    for url in urls:
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, url
        if ".png" in url:
            assert response.headers["content-type"] == "image/png"
            assert response.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_image_healthcheck_probes_the_exporter(stack: Stack) -> None:
    """The image's HEALTHCHECK command, pointed at the test's port: 0 when up, not 0 when not."""
    probe = healthcheck_command()
    assert probe[0] == "python" and f"127.0.0.1:{DEFAULT_PORT}" in probe[-1]
    for port, healthy in ((stack.exporter_port, True), (free_port(), False)):
        command = [sys.executable, *probe[1:-1],
                   probe[-1].replace(f"127.0.0.1:{DEFAULT_PORT}", f"127.0.0.1:{port}")]
        result = subprocess.run(command, capture_output=True, timeout=30)
        assert (result.returncode == 0) == healthy, (port, result.stderr)


# -- last: the exporter goes away -------------------------------------------------------


def test_exporter_down_reaches_the_webhook(stack: Stack) -> None:
    stack.exporter.stop()
    instance = f"127.0.0.1:{stack.exporter_port}"
    (down,) = wait_until(lambda: stack.webhook.alerts("LArPixExporterDown", instance=instance),
                         60, "LArPixExporterDown at the webhook")
    assert down["labels"]["severity"] == "critical" and down["labels"]["job"] == "larpix-monitor"
    assert down["annotations"]["summary"] == f"larpix-monitor exporter {instance} is down"
