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
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.stack import (
    ALERT_RULES,
    PROMETHEUS_CONFIG,
    ManagedProcess,
    PrometheusAPI,
    WebhookReceiver,
    alert_rules,
    dashboards,
    healthcheck_command,
    infinity_targets,
    load_yaml,
    panels,
    quality_alert_rules,
    start_alertmanager,
    start_exporter,
    start_prometheus,
    substitute,
    targets,
    write_alertmanager_test_config,
    write_prometheus_test_config,
)
from support.waiting import free_port, wait_for

from exporter import DEFAULT_PORT
from exporter.packets import tile_of
from exporter.simulate import LiveSimulation, simulate_file

RATE = 1500.0  # packets per data second of each simulated file
BURST_START, BURST_SECONDS, BURST_FRACTION = 25, 8, 0.3
STOPPED_AGO = 400  # seconds since the stopped writer's last data
WEBHOOK_PATH = "/alerts?stack=integration&from=compose-entrypoint"
#: The detector the repository's prometheus.yml names for its exporter (the test copy keeps it).
(DETECTOR,) = {group["labels"]["detector"] for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
               if job["job_name"] == "larpix-monitor" for group in job["static_configs"]}
#: Grafana's variables, as it would set them for a 1 s scrape interval (and the one detector).
GRAFANA_INTERVALS = {"__rate_interval": "10s", "__interval": "2s", "__range": "1m",
                     "detector": DETECTOR}
#: Series of the quality checks (and their recording rules): their queries must parse, and
#: return data once the exporter exposes larpix_quality.
QUALITY_SERIES = re.compile(r"larpix(_quality\b|:quality:|_channels\b)")

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
    live: list[LiveSimulation]  # run_a and run_b, written by ``writers`` until ``stop_writers``
    writers: list[threading.Thread]
    stop_writers: threading.Event


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
        wait_for(lambda: prometheus.query('up{job="larpix-monitor"} == 1'), 60,
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
                    int(live_start), stopped_truth, config, live, writers, stop_writers)
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
    wait_for(all_evaluated, 30, "every rule to be evaluated")


def exposed_metrics(stack: Stack) -> set[str]:
    text = httpx.get(f"{stack.exporter_url}/metrics", timeout=5).text
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def quality_exposed(stack: Stack) -> bool:
    return "larpix_quality" in exposed_metrics(stack)


def queries_without_data(prometheus: PrometheusAPI, values: dict[str, str],
                         parse_only: re.Pattern | None = None) -> list[str]:
    """Queries that return no data (all are evaluated: one that does not parse fails)."""
    return [f"{dashboard} / {panel} / {target['refId']}"
            for dashboard, panel, target in dashboard_queries()
            if not has_data(evaluate(prometheus, target, values))
            and not (parse_only and parse_only.search(target["expr"]))]


def grafana_query_result(prometheus: PrometheusAPI, query: str) -> list[str]:
    """Grafana's ``query_result(expr)`` variable: one ``{labels} value time`` line a sample."""
    expr = re.fullmatch(r"query_result\((.*)\)", query, re.S).group(1)
    return ["{" + ", ".join(f'{k}="{v}"' for k, v in s["metric"].items()) + "} "
            f"{s['value'][1]} {int(s['value'][0] * 1000)}" for s in prometheus.query(expr)]


def variable_values(prometheus: PrometheusAPI, variable: dict, values: dict[str, str]
                    ) -> list[str]:
    """A query variable's values as Grafana lists them (label_values or query_result)."""
    query = substitute(variable["query"], values)
    if query.startswith("query_result("):
        found = grafana_query_result(prometheus, query)
    else:
        metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", query).groups()
        found = prometheus.label_values(label, metric)
    pattern = variable.get("regex", "").strip("/")
    if not pattern:
        return sorted(found)
    matches = [re.search(pattern, text) for text in found]
    return sorted({m.group(1) if m.groups() else m.group(0) for m in matches if m})


def drill_down_values(prometheus: PrometheusAPI, io_group: str) -> dict[str, str]:
    """tile, chip and neighbours as Grafana would set them: the first tile listed, and its
    first chip that had config traffic (the simulator configures only some chips)."""
    (chip_page,) = [d for d in dashboards().values() if d["title"] == "Chip detail"]
    variables = {v["name"]: v for v in chip_page["templating"]["list"]}
    values = {"detector": DETECTOR, "io_group": io_group}
    tiles = variable_values(prometheus, variables["tile"], values)
    if not tiles:
        return {}
    values["tile"] = tiles[0]
    configured = {sample["metric"]["chip_id"] for sample in prometheus.query(
        f'sum by (chip_id) (larpix_config_packets_total{{io_group="{io_group}"}} * on '
        f'(io_group, io_channel) group_left(tile) larpix_io_channel_info{{tile="{tiles[0]}"}})')}
    chips = sorted(configured & set(variable_values(prometheus, variables["chip"], values)),
                   key=int)
    if not chips:
        return {}
    values["chip"] = chips[0]
    values["neighbours"] = "|".join(variable_values(prometheus, variables["neighbours"], values))
    return values


@pytest.mark.parametrize("io_group", ["1", "2"])  # packet-format and raw-format data
def test_every_dashboard_query_returns_data(stack: Stack, io_group: str) -> None:
    values = {**GRAFANA_INTERVALS, "io_group": io_group, "io_channel": ".*",
              "exporter_url": stack.exporter_url, "file": "run_a", "plot": "HitCount"}
    values |= wait_for(lambda: drill_down_values(stack.prometheus, io_group), 60,
                       f"a tile and a chip of io_group {io_group}")
    parse_only = None if quality_exposed(stack) else QUALITY_SERIES
    deadline = time.monotonic() + 240  # up to 82 s seen on a loaded machine
    while (empty := queries_without_data(stack.prometheus, values, parse_only)) and \
            time.monotonic() < deadline:
        time.sleep(1)
    assert empty == []


def test_chip_page_variables_name_the_chip_and_its_four_neighbours(stack: Stack) -> None:
    values = wait_for(lambda: drill_down_values(stack.prometheus, "4"), 60, "io_group 4's chips")
    expected_chips = {labels["chip_id"] for labels, _ in
                      truth_series(stack.stopped_truth, "larpix_data_packets_total")
                      if tile_of(np.array([int(labels["io_channel"])]))[0] == int(values["tile"])}
    (chip_page,) = [d for d in dashboards().values() if d["title"] == "Chip detail"]
    (chip,) = [v for v in chip_page["templating"]["list"] if v["name"] == "chip"]
    assert set(variable_values(stack.prometheus, chip, values)) == expected_chips
    chip_id = int(values["chip"])
    assert sorted(map(int, values["neighbours"].split("|"))) == \
        [c for c in (chip_id - 10, chip_id - 1, chip_id + 1, chip_id + 10) if c >= 0]


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

    assert values_of("detector") == {DETECTOR}
    wait_for(lambda: values_of("io_group", detector=DETECTOR) == {"1", "2", "4"}, 60,
             "io_groups 1, 2 and 4")
    assert values_of("io_group", detector="another") == set()
    expected = {labels["io_channel"] for labels, _ in
                truth_series(stack.stopped_truth, "larpix_data_packets_total")}
    assert values_of("io_channel", detector=DETECTOR, io_group="4") == expected
    wait_for(lambda: "HitCount" in values_of("plot", detector=DETECTOR), 60,
             "the HitCount plot to render")


# -- dashboard panels against the simulator's ground truth ------------------------------


def test_tile_panel_sums_the_simulated_packets_per_tile(stack: Stack) -> None:
    expr = counters_instead_of_rates(panel_expr("Data rate per tile", "IO group detail"))
    expr = substitute(expr, {"detector": DETECTOR, "io_group": "4", "io_channel": ".*"})
    expected: Counter[str] = Counter()
    for labels, value in truth_series(stack.stopped_truth, "larpix_data_packets_total"):
        tile = int(tile_of(np.array([int(labels["io_channel"])]))[0])
        expected[str(tile)] += value

    def per_tile() -> dict[str, float]:
        return {s["metric"]["tile"]: float(s["value"][1]) for s in stack.prometheus.query(expr)}
    wait_for(lambda: per_tile() == dict(expected), 60, "stopped.h5 counted per tile")
    assert set(expected) == {str(t) for t in range(1, 9)}


def test_parity_panel_divides_by_larpix_packets_only(stack: Stack) -> None:
    expr = substitute(counters_instead_of_rates(
        panel_expr("Parity-error fraction", "LArPix overview")), {"detector": DETECTOR})
    errors = sum(v for _, v in truth_series(stack.stopped_truth, "larpix_parity_errors_total"))
    words = sum(v for labels, v in truth_series(stack.stopped_truth, "larpix_packets_total")
                if labels["packet_type"] in {"data", "test", "config_write", "config_read"})
    assert errors > 0 and words > 0

    def fraction() -> float | None:
        result = [s for s in stack.prometheus.query(expr) if s["metric"]["io_group"] == "4"]
        return float(result[0]["value"][1]) if result else None
    wait_for(lambda: fraction() is not None, 60, "stopped.h5's parity fraction")
    assert fraction() == pytest.approx(errors / words, rel=1e-12)


def test_candlesticks_are_the_quartiles_of_the_tiles_chips(stack: Stack) -> None:
    """The Tile page's boxes for stopped.h5, against the truth's per-chip window means and RMS."""
    (tile_page,) = [d for d in dashboards().values() if d["title"] == "Tile detail"]
    sticks = [p for p in panels(tile_page) if p["type"] == "candlestick"]
    window = stack.stopped_truth["chips_window"]
    tile = 3
    for panel in sticks:
        column = "adc_mean" if "mean" in panel["targets"][0]["expr"] else "adc_rms"
        chips = np.array([v for v, channel, n in zip(window[column], window["io_channel"],
                                                      window["count"], strict=True)
                          if (channel - 1) // 4 + 1 == tile and n > 0])
        assert len(chips) > 50
        expected = {"low": chips.min(), "open": np.quantile(chips, 0.25),
                    "close": np.quantile(chips, 0.75), "high": chips.max()}
        for target in panel["targets"]:
            expr = substitute(target["expr"],
                              {"detector": DETECTOR, "io_group": "4", "tile": str(tile)})
            (sample,) = wait_for(lambda e=expr: stack.prometheus.query(e), 60, expr)
            assert float(sample["value"][1]) == pytest.approx(
                expected[target["legendFormat"]], rel=1e-9), (panel["title"], target["refId"])


# -- faults reach the shift through Alertmanager ----------------------------------------


def test_parity_burst_fires_and_reaches_the_webhook(stack: Stack) -> None:
    before = stack.live_start + BURST_START - 3
    wait_for(lambda: time.time() > before + 2, 60, "clean data before the burst")
    fraction = {s["metric"]["io_group"]: float(s["value"][1]) for s in
                stack.prometheus.query(rule_value_expr("LArPixParityErrorsHigh"), at=before)}
    assert 0 < fraction["1"] < 0.01, "the clean run must be measured, and below the threshold"

    wait_for(lambda: stack.prometheus.firing("LArPixParityErrorsHigh", io_group="1"), 90,
               "LArPixParityErrorsHigh for io_group 1 in Prometheus")
    (alert,) = wait_for(lambda: stack.webhook.alerts("LArPixParityErrorsHigh", io_group="1"),
                          60, "the parity alert at the webhook")
    assert alert["labels"]["severity"] == "warning"
    assert re.fullmatch(r"\d+(\.\d+)?% of io_group 1 packets fail parity",
                        alert["annotations"]["summary"])
    assert alert["annotations"]["runbook"]
    assert WEBHOOK_PATH in stack.webhook.paths
    assert not stack.prometheus.firing("LArPixParityErrorsHigh", io_group="2")
    assert not stack.webhook.alerts("LArPixParityErrorsHigh", io_group="2")


def test_stopped_writer_is_reported_once(stack: Stack) -> None:
    (stale,) = wait_for(lambda: stack.webhook.alerts("LArPixDataStale", io_group="4"), 90,
                          "LArPixDataStale for io_group 4 at the webhook")
    assert stale["labels"]["severity"] == "critical"
    assert stale["annotations"]["summary"].startswith("No new data from io_group 4 for ")
    # Prometheus also sees io_group 4 lagging the live io_groups, but Alertmanager
    # inhibits that alert: one stopped writer, one notification.
    wait_for(lambda: stack.prometheus.firing("LArPixIOGroupNoData", io_group="4"), 60,
               "LArPixIOGroupNoData for io_group 4 in Prometheus")

    def inhibited() -> bool:
        alerts = httpx.get(f"{stack.alertmanager_url}/api/v2/alerts", timeout=5,
                           params={"filter": 'alertname="LArPixIOGroupNoData"'}).json()
        return any(a["labels"].get("io_group") == "4" and a["status"]["state"] == "suppressed"
                   and a["status"]["inhibitedBy"] for a in alerts)
    wait_for(inhibited, 30, "Alertmanager to inhibit LArPixIOGroupNoData for io_group 4")
    assert not stack.webhook.alerts("LArPixIOGroupNoData")
    for live_group in ("1", "2"):
        assert not stack.prometheus.firing("LArPixDataStale", io_group=live_group)
        assert not stack.prometheus.firing("LArPixIOGroupNoData", io_group=live_group)


def test_unreadable_file_and_failing_plot_are_reported(stack: Stack) -> None:
    (read_error,) = wait_for(
        lambda: stack.webhook.alerts("LArPixFileReadErrors", reason="not_hdf5"), 60,
        "LArPixFileReadErrors at the webhook")
    assert read_error["labels"]["instance"] == f"127.0.0.1:{stack.exporter_port}"
    wait_for(lambda: stack.webhook.alerts("LArPixPlotsFailing", plot="AlwaysFails"), 60,
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

    if not quality_exposed(stack):  # checked once the exporter grades quality
        used -= {"larpix_quality", "larpix_channels"}
    wait_for(lambda: used <= exposed_metrics(stack), 60,
             f"the exporter to expose {sorted(used)}")


def test_plots_dashboard_links_resolve(stack: Stack) -> None:
    (plots,) = [d for d in dashboards().values() if d["title"] == "Plots"]
    wait_for(lambda: any(p["plot"] == "HitCount" and p["file"] == "run_a" for p in
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


# -- the per-pixel tables: the Infinity panels' URLs on the live exporter ----------------------

#: Columns of /api/channels the tables show, compared with the truth's.
CHANNEL_IDS = ("io_group", "io_channel", "tile", "chip_id", "channel_id")
CHANNEL_NUMBERS = ("count", "rate_hz", "adc_mean", "adc_rms", "parity_errors", "fifo_half",
                   "fifo_full")


def truth_channel_rows(truth: dict) -> dict[tuple[int, ...], dict]:
    """The simulator's per-channel truth, one row a channel, by (io_group, io_channel, chip,
    channel)."""
    table = truth["channels"]
    rows = [dict(zip(table, row, strict=True)) for row in zip(*table.values(), strict=True)]
    for row in rows:
        row["tile"] = (row["io_channel"] - 1) // 4 + 1
    return {tuple(row[k] for k in ("io_group", "io_channel", "chip_id", "channel_id")): row
            for row in rows}


def test_pixel_tables_return_the_truths_top_rows(stack: Stack) -> None:
    """Every Infinity panel's URL, as Grafana would call it for run_a (io_group 1), once its
    writer has stopped and the exporter has read every row (the table keeps the files that
    received data last)."""
    values = wait_for(lambda: drill_down_values(stack.prometheus, "1"), 60, "io_group 1's chips")
    stack.stop_writers.set()
    for writer in stack.writers:
        writer.join(timeout=60)
    (run_a,) = [sim for sim in stack.live if sim.path.stem == "run_a"]
    truth = truth_channel_rows(run_a.truth)
    total = sum(row["count"] for row in truth.values())

    def caught_up() -> bool:
        body = httpx.get(f"{stack.exporter_url}/api/channels?file=run_a&limit=0", timeout=10)
        return body.status_code == 200 and sum(r["count"] for r in body.json()["rows"]) == total
    wait_for(caught_up, 60, "the exporter to read all of run_a")
    values["file"] = "run_a"
    called = 0
    for dashboard in dashboards().values():
        for panel, target in infinity_targets(dashboard):
            url = substitute(target["url"], values)
            response = httpx.get(stack.exporter_url + url, timeout=10)
            assert response.status_code == 200, (panel["title"], url, response.text)
            rows = response.json()
            for step in filter(None, target["root_selector"].split(".")):
                rows = rows[step]
            query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
            sort, limit = query["sort"], int(query["limit"])
            chosen = [r for r in truth.values()
                      if all(str(r[k]) == query[k] for k in CHANNEL_IDS if k in query)]
            chosen.sort(key=lambda r: r[sort], reverse=True)
            expected = chosen[:limit] if limit else chosen
            assert len(rows) == len(expected) > 0, panel["title"]
            assert [r[sort] for r in rows] == pytest.approx([r[sort] for r in expected]), \
                panel["title"]
            for row in rows:
                assert {c["selector"] for c in target["columns"]} <= set(row)
                own = truth[tuple(row[k] for k in ("io_group", "io_channel", "chip_id",
                                                   "channel_id"))]
                assert {k: row[k] for k in CHANNEL_IDS} == {k: own[k] for k in CHANNEL_IDS}
                assert [row[k] for k in CHANNEL_NUMBERS] == \
                    pytest.approx([own[k] for k in CHANNEL_NUMBERS]), panel["title"]
            called += 1
    assert called == 11
    # The dashboards' default, an empty file: the run that received data last.
    latest = httpx.get(f"{stack.exporter_url}/api/channels?file=&limit=1", timeout=10)
    assert latest.status_code == 200 and latest.json()["file"] in {"run_a", "run_b"}


# -- last: the exporter goes away -------------------------------------------------------


def test_exporter_down_reaches_the_webhook(stack: Stack) -> None:
    stack.exporter.stop()
    instance = f"127.0.0.1:{stack.exporter_port}"
    (down,) = wait_for(lambda: stack.webhook.alerts("LArPixExporterDown", instance=instance),
                         60, "LArPixExporterDown at the webhook")
    assert down["labels"]["severity"] == "critical" and down["labels"]["job"] == "larpix-monitor"
    assert down["annotations"]["summary"] == f"larpix-monitor exporter {instance} is down"
