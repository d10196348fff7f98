"""Several exporters, one Prometheus and VictoriaMetrics: the scale-out stack as tests run it.

The Prometheus configuration is the repository's (global settings, external
labels, remote_write, alert rules); only addresses, targets and timings are
changed for this machine.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import yaml

from support.stack import (
    ALERT_RULES,
    PROMETHEUS_CONFIG,
    ManagedProcess,
    compose_model,
    load_yaml,
    require_tool,
    wait_http_ok,
)

#: A dashboard query that sums a counter's rate by some labels, and nothing else.
_SUM_OF_RATE = re.compile(
    r"^sum by \((?P<by>[\w, ]*)\) \(rate\((?P<name>\w+)(?:\{(?P<matchers>[^}]*)\})?"
    r"\[\$__rate_interval\]\)\)$")
_MATCHER = re.compile(r'(\w+)(=~|=)"([^"]*)"')
#: ``${NAME:-default}`` in the compose file.
_DEFAULT = re.compile(r"\$\{\w+:-([^}]*)\}")


def write_scale_prometheus_config(directory: Path, targets: dict[str, list[str]],
                                  remote_write_url: str) -> Path:
    """The repository's prometheus.yml for ``targets`` (detector -> exporters) at 1 s.

    Alert rules are the real ones with ``for:`` cut to 1 s; there is no Alertmanager.
    """
    config = load_yaml(PROMETHEUS_CONFIG)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "larpix-monitor"]
    job["static_configs"] = [{"targets": addresses, "labels": {"detector": detector}}
                             for detector, addresses in targets.items()]
    config["scrape_configs"] = [job]
    config.pop("alerting", None)
    (remote,) = config["remote_write"]
    remote["url"] = remote_write_url
    remote.setdefault("queue_config", {})["batch_send_deadline"] = "1s"
    rules = load_yaml(ALERT_RULES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    (directory / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config["rule_files"] = ["alerts.yml"]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def victoria_metrics_flags(storage: Path, port: int) -> list[str]:
    """The compose service's flags (environment defaults filled in), pointed at this machine."""
    local = {"-storageDataPath": str(storage), "-httpListenAddr": f"127.0.0.1:{port}"}
    flags = []
    for flag in compose_model()["services"]["victoriametrics"]["command"]:
        name, _, value = flag.partition("=")
        value = local.get(name, _DEFAULT.sub(r"\1", value))
        flags.append(f"{name}={value}")
    assert set(local) <= {f.partition("=")[0] for f in flags}, flags
    return flags


def start_victoria_metrics(storage: Path, port: int, log_dir: Path) -> ManagedProcess:
    """VictoriaMetrics as compose runs it; queries see samples at once (no 30 s latency offset)."""
    process = ManagedProcess("victoria-metrics", [
        require_tool("victoria-metrics"), *victoria_metrics_flags(storage, port),
        "-search.latencyOffset=0s", "-search.disableCache",
    ], log_dir / "victoria-metrics.log")
    wait_http_ok(process, f"http://127.0.0.1:{port}/health", timeout=60)
    return process


def sum_of_rate(expr: str) -> tuple[str, tuple[str, ...], list[tuple[str, str, str]]] | None:
    """(counter, by-labels, matchers) of a ``sum by (...) (rate(counter{...}[...]))`` query."""
    match = _SUM_OF_RATE.match(expr.strip())
    if match is None:
        return None
    by = tuple(label.strip() for label in match["by"].split(",") if label.strip())
    return match["name"], by, _MATCHER.findall(match["matchers"] or "")


def truth_sums(truths: list[dict], name: str, by: tuple[str, ...],
               matchers: list[tuple[str, str, str]]) -> dict[tuple[str, ...], float]:
    """The simulator's counter ``name`` summed over files and grouped ``by``, as PromQL would."""
    total: dict[tuple[str, ...], float] = defaultdict(float)
    for truth in truths:
        for entry in truth["metrics"].get(name, []):
            labels = entry["labels"]
            if all(re.fullmatch(value, labels.get(label, "")) if op == "=~"
                   else labels.get(label, "") == value for label, op, value in matchers):
                total[tuple(labels.get(label, "") for label in by)] += entry["value"]
    return {key: value for key, value in total.items() if value}
