"""Prometheus configuration and alert rules, checked and unit-tested by promtool itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from support.stack import (
    ALERT_RULES,
    ALERT_TESTS,
    PROMETHEUS_CONFIG,
    alert_rules,
    load_yaml,
    require_tool,
)

SEVERITIES = {"critical", "warning", "info"}
RULE_NAMES = [rule["alert"] for rule in alert_rules()]


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_promtool_accepts_the_prometheus_config() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_NAMES)} rules found" in result.stdout


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(ALERT_RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_expected_alerts_exist() -> None:
    assert set(RULE_NAMES) == {
        "LArPixExporterDown", "LArPixDataStale", "LArPixIOGroupNoData",
        "LArPixParityErrorsHigh", "LArPixFifoFullHigh", "LArPixHotChannels",
        "LArPixSyncOffsetDrift", "LArPixSyncMissing", "LArPixFileReadErrors",
        "LArPixPlotsFailing", "LArPixMonitorLagging",
    }
    assert len(RULE_NAMES) == len(set(RULE_NAMES))


@pytest.mark.parametrize("rule", alert_rules(), ids=RULE_NAMES)
def test_every_alert_tells_the_shifter_what_to_do(rule: dict) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook"}
    assert "\n" not in annotations["summary"].strip()
    assert len(annotations["description"].split()) >= 10
    assert len(annotations["runbook"].split()) >= 15


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == set(RULE_NAMES)
    assert quiet == set(RULE_NAMES)


def run_unit_tests_with(tmp_path: Path, alert: str, expr: str) -> subprocess.CompletedProcess:
    """promtool's unit tests of ``alert`` against a copy of the rules where it has ``expr``."""
    rules = load_yaml(ALERT_RULES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
    (tmp_path / ALERT_RULES.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    tests = load_yaml(ALERT_TESTS)
    tests["tests"] = [case for case in tests["tests"]
                      if any(c["alertname"] == alert for c in case.get("alert_rule_test", []))]
    (tmp_path / ALERT_TESTS.name).write_text(yaml.safe_dump(tests, sort_keys=False))
    return promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)


@pytest.mark.parametrize("rule", alert_rules(), ids=RULE_NAMES)
def test_each_rules_own_unit_tests_pass_unchanged(tmp_path: Path, rule: dict) -> None:
    """The copies the mutation tests below run are sound: unmutated, they pass."""
    result = run_unit_tests_with(tmp_path, rule["alert"], rule["expr"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", RULE_NAMES)
def test_unit_tests_catch_a_rule_that_never_fires(tmp_path: Path, alert: str) -> None:
    result = run_unit_tests_with(tmp_path, alert, "vector(1) == 0")
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


@pytest.mark.parametrize("alert", RULE_NAMES)
def test_unit_tests_catch_a_rule_that_always_fires(tmp_path: Path, alert: str) -> None:
    result = run_unit_tests_with(tmp_path, alert, "vector(1)")
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


def test_deployment_doc_lists_every_alert_with_its_severity() -> None:
    doc = (ALERT_RULES.parent.parent / "docs" / "deployment.md").read_text()
    listed = dict(re.findall(r"^\| (LArPix\w+) \| (\w+) \|", doc, flags=re.MULTILINE))
    assert listed == {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}
