"""The monitoring stack's files as the tests read them, and the real processes they run.

Prometheus, Alertmanager and the exporter run as child processes on free
127.0.0.1 ports with temporary storage; each is stopped by the handle that
started it. The webhook receiver is a small HTTP server in the test process.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dockerfile
import httpx
import yaml

from support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
DATASOURCE_FILE = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
INFINITY_DATASOURCE_FILE = ROOT / "grafana" / "provisioning" / "datasources" / "infinity.yml"
DASHBOARD_PROVIDER_FILE = ROOT / "grafana" / "provisioning" / "dashboards" / "larpix.yml"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
ALERT_RULES = ROOT / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "prometheus" / "alerts.test.yml"
QUALITY_RULES = ROOT / "prometheus" / "rules.yml"
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

#: Grafana's own variables, which dashboards use without defining them.
GRAFANA_GLOBAL_VARIABLES = frozenset({
    "__interval", "__interval_ms", "__rate_interval", "__rate_interval_ms", "__range",
    "__range_s", "__range_ms", "__from", "__to", "__dashboard", "__org", "__user", "__name",
    "__timeFilter", "__all_variables", "__url_time_range", "timeFilter",
    "__all",  # the value of a variable's "All" option
})
_VARIABLE_USE = re.compile(r"\$(?:\{(\w+)(?::[\w:]+)?\}|(\w+)|\[\[(\w+)\]\])")

INFINITY_TYPE = "yesoreyeram-infinity-datasource"


def require_tool(name: str) -> str:
    """Path of a system tool the tests run for real; a missing one fails, never skips."""
    path = shutil.which(name)
    assert path, f"{name} is not installed: `make system-deps` installs it"
    return path


# -- the stack's files ----------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboards() -> dict[str, dict]:
    """Every provisioned dashboard, by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, including those nested in rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(dashboard: dict) -> Iterator[tuple[dict, dict]]:
    """(panel, target) for every PromQL query of the dashboard."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == "prometheus":
                yield panel, target


def infinity_targets(dashboard: dict) -> Iterator[tuple[dict, dict]]:
    """(panel, target) for every query of the exporter's JSON API (Infinity datasource)."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == INFINITY_TYPE:
                yield panel, target


def variables_used(value: Any) -> set[str]:
    """Names of the template variables referenced anywhere in ``value`` ($v, ${v}, [[v]])."""
    if isinstance(value, dict):
        return set().union(*(variables_used(v) for v in value.values()), set())
    if isinstance(value, list):
        return set().union(*(variables_used(v) for v in value), set())
    if isinstance(value, str):
        return {next(g for g in m.groups() if g) for m in _VARIABLE_USE.finditer(value)}
    return set()


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace the template variables of ``text`` as Grafana would, from ``values``."""
    def replace(match: re.Match) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"no value for ${name} in {text!r}")
        return values[name]
    return _VARIABLE_USE.sub(replace, text)


def alert_rules() -> list[dict]:
    return [rule for group in load_yaml(ALERT_RULES)["groups"] for rule in group["rules"]
            if "alert" in rule]


def quality_alert_rules() -> list[dict]:
    """The alerts of the quality rules file (beside its recording rules)."""
    return [rule for group in load_yaml(QUALITY_RULES)["groups"] for rule in group["rules"]
            if "alert" in rule]


def compose_model() -> dict:
    return load_yaml(COMPOSE_FILE)


def compose_service(name: str) -> dict:
    """One service of docker-compose.yml."""
    return compose_model()["services"][name]


def provisioning(path: Path) -> tuple[dict, dict]:
    """A Grafana datasource provisioning file and the one datasource it declares."""
    config = load_yaml(path)
    (datasource,) = config["datasources"]
    return config, datasource


def url_host_port(url: str) -> tuple[str, str]:
    """Host and port of an ``http://host:port`` URL, the form the provisioned datasources use."""
    return re.fullmatch(r"http://([\w-]+):(\d+)", url).groups()


def instructions(cmd: str) -> list[dockerfile.Command]:
    """The Dockerfile's instructions of one kind, as BuildKit's parser reads them."""
    return [c for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd == cmd.upper()]


def healthcheck_command() -> list[str]:
    """The exec-form command of the image's HEALTHCHECK."""
    (check,) = instructions("healthcheck")
    assert check.value[0] == "CMD"
    return json.loads(check.original[check.original.index("["):])


# -- test copies of the configuration -------------------------------------------------


def write_prometheus_test_config(directory: Path, exporter: str, alertmanager: str,
                                 prometheus: str, rule_for: str = "1s") -> Path:
    """prometheus.yml with 1 s scrape and evaluation, local targets and quick ``for:``.

    The rule expressions and the targets' labels (the exporter's ``detector``)
    are the real ones: only addresses and ``for:`` durations change.
    """
    config = load_yaml(PROMETHEUS_CONFIG)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    local = {"larpix-monitor": exporter, "prometheus": prometheus, "alertmanager": alertmanager}
    for job in config["scrape_configs"]:
        labels = job["static_configs"][0].get("labels", {})
        job["static_configs"] = [{"targets": [local[job["job_name"]]], "labels": labels}]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    config.pop("remote_write", None)  # the long-term store has its own tests (test_scale_out)
    for source in (ALERT_RULES, QUALITY_RULES):
        rules = load_yaml(source)
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = rule_for
        (directory / source.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    config["rule_files"] = [ALERT_RULES.name, QUALITY_RULES.name]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_alertmanager_test_config(directory: Path) -> Path:
    """alertmanager.yml with second-scale grouping waits; receivers and inhibitions unchanged."""
    config = load_yaml(ALERTMANAGER_CONFIG)
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1m")
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def alertmanager_start_script(config: Path, rendered: Path, binary: str) -> str:
    """The shell script compose runs as Alertmanager's entrypoint, for this machine.

    Compose's ``$$`` escapes are undone and the container paths (configuration
    mount, rendered copy, Alertmanager binary) replaced in one pass.
    """
    entrypoint = compose_model()["services"]["alertmanager"]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"], entrypoint
    local = {"/etc/alertmanager/alertmanager.yml": str(config),
             "/alertmanager/alertmanager.yml": str(rendered), "/bin/alertmanager": binary}
    script = entrypoint[2].replace("$$", "$")
    for container_path in local:
        assert container_path in script, f"{container_path} not in the entrypoint script"
    pattern = "|".join(re.escape(p) for p in sorted(local, key=len, reverse=True))
    return re.sub(pattern, lambda m: local[m.group(0)], script)


# -- processes --------------------------------------------------------------------------


class ManagedProcess:
    """A child process with its output in a log file; ``stop`` ends it and only it."""

    def __init__(self, name: str, args: list[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def assert_running(self) -> None:
        code = self.process.poll()
        assert code is None, f"{self.name} exited with {code}:\n{self.log_tail()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


def wait_http_ok(process: ManagedProcess, url: str, timeout: float) -> None:
    def ok() -> bool:
        process.assert_running()
        return httpx.get(url, timeout=2).status_code == 200
    try:
        wait_for(ok, timeout, f"{process.name} at {url}")
    except AssertionError as error:
        process.stop()
        raise AssertionError(f"{error}\n{process.name}'s log:\n{process.log_tail()}") from None


def start_prometheus(config: Path, storage: Path, port: int, log_dir: Path) -> ManagedProcess:
    process = ManagedProcess("prometheus", [
        require_tool("prometheus"), f"--config.file={config}",
        f"--storage.tsdb.path={storage}", f"--web.listen-address=127.0.0.1:{port}",
    ], log_dir / "prometheus.log")
    wait_http_ok(process, f"http://127.0.0.1:{port}/-/ready", timeout=60)
    return process


def start_alertmanager(config: Path, storage: Path, port: int, webhook_url: str,
                       log_dir: Path) -> ManagedProcess:
    """Alertmanager started by compose's own entrypoint script, webhook URL from the environment.

    Only the script's container paths are pointed at the test's files and binary.
    """
    script = alertmanager_start_script(config, storage / "alertmanager.yml",
                                       require_tool("prometheus-alertmanager"))
    process = ManagedProcess("alertmanager", [
        "/bin/sh", "-c", script, "alertmanager", f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
    ], log_dir / "alertmanager.log", env={"ALERT_WEBHOOK_URL": webhook_url,
                                           "PATH": "/usr/bin:/bin"})
    wait_http_ok(process, f"http://127.0.0.1:{port}/-/ready", timeout=30)
    return process


def start_exporter(data_dir: Path, plot_dir: Path, port: int, log_dir: Path,
                   extra: list[str]) -> ManagedProcess:
    process = ManagedProcess("exporter", [
        sys.executable, "-m", "exporter.cli", "serve", "-i", str(data_dir), "-o", str(plot_dir),
        "--host", "127.0.0.1", "--port", str(port), *extra,
    ], log_dir / "exporter.log")
    wait_http_ok(process, f"http://127.0.0.1:{port}/readyz", timeout=60)
    return process


# -- Prometheus's HTTP API -------------------------------------------------------------


class PrometheusAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"

    def _get(self, path: str, **params: Any) -> Any:
        # Range queries over every counter of a run return ~10^6 samples: give them time.
        response = httpx.get(f"{self.base}/{path}", params=params, timeout=60)
        body = response.json()
        assert body["status"] == "success", f"{path} {params}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} if at is None else {"query": expr, "time": at}
        return self._get("query", **params)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self._get("query_range", query=expr, start=start, end=end, step=step)["result"]

    def label_values(self, label: str, match: str) -> list[str]:
        return self._get(f"label/{label}/values", **{"match[]": match})

    def alerts(self) -> list[dict]:
        return self._get("alerts")["alerts"]

    def rules(self) -> list[dict]:
        return [rule for group in self._get("rules")["groups"] for rule in group["rules"]]

    def firing(self, alertname: str, **labels: str) -> list[dict]:
        return [a for a in self.alerts() if a["state"] == "firing"
                and a["labels"]["alertname"] == alertname
                and all(a["labels"].get(k) == v for k, v in labels.items())]


# -- webhook receiver -----------------------------------------------------------------


class WebhookReceiver:
    """Records every notification Alertmanager posts (its webhook JSON), with the request path."""

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.notifications.append(json.loads(body))
                    receiver.paths.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def alerts(self, alertname: str | None = None, status: str = "firing",
               **labels: str) -> list[dict]:
        """Distinct alerts received (Alertmanager repeats a group's alerts in later posts)."""
        with self._lock:
            received = {a["fingerprint"]: a for n in self.notifications for a in n["alerts"]
                        if a["status"] == status}
        return [a for a in received.values()
                if (alertname is None or a["labels"]["alertname"] == alertname)
                and all(a["labels"].get(k) == v for k, v in labels.items())]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
