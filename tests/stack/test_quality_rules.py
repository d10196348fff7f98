"""The quality roll-ups (recording rules) and their alerts, checked and unit-tested by
promtool; every rule's tests are shown to catch a broken copy of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from support.stack import PROMETHEUS_CONFIG, load_yaml, require_tool

RULES = PROMETHEUS_CONFIG.parent / "rules.yml"
RULE_TESTS = PROMETHEUS_CONFIG.parent / "rules.test.yml"


def _rules() -> list[dict]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


ALERTS = [rule["alert"] for rule in _rules() if "alert" in rule]
RECORDS = [rule["record"] for rule in _rules() if "record" in rule]


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_the_prometheus_config_loads_the_quality_rules() -> None:
    assert "rules.yml" in load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_the_roll_ups_are_the_contract() -> None:
    exprs = {rule["record"]: rule["expr"] for rule in _rules() if "record" in rule}
    assert exprs == {
        "larpix:quality:io_group": "max by (detector, check, io_group) (larpix_quality)",
        "larpix:quality:detector": "max by (detector, check) (larpix_quality)"}
    assert set(ALERTS) == {"LArPixQualityBad", "LArPixQualityWarning"}


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_is_unit_tested_firing_and_quiet() -> None:
    firing, quiet, recorded = set(), set(), set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
        recorded |= {check["expr"] for check in case.get("promql_expr_test", [])}
    assert firing == quiet == set(ALERTS)
    assert recorded == set(RECORDS)


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_tells_the_shifter_what_to_do(alert: str) -> None:
    rule = next(r for r in _rules() if r.get("alert") == alert)
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert set(rule["annotations"]) == {"summary", "description", "runbook"}
    assert len(rule["annotations"]["runbook"].split()) >= 15


def _with(tmp_path: Path, name: str, expr: str) -> subprocess.CompletedProcess:
    rules = load_yaml(RULES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if name in (rule.get("alert"), rule.get("record")):
                rule["expr"] = expr
    (tmp_path / RULES.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    return promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)


@pytest.mark.parametrize("name", ALERTS + RECORDS)
def test_the_copies_pass_unchanged(tmp_path: Path, name: str) -> None:
    rule = next(r for r in _rules() if name in (r.get("alert"), r.get("record")))
    result = _with(tmp_path, name, rule["expr"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", ALERTS)
@pytest.mark.parametrize("expr", ["vector(1) == 0", "vector(1)"])
def test_the_tests_catch_an_alert_that_never_or_always_fires(tmp_path: Path, alert: str,
                                                           expr: str) -> None:
    result = _with(tmp_path, alert, expr)
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


@pytest.mark.parametrize(("record", "expr"), [
    ("larpix:quality:io_group", "min by (detector, check, io_group) (larpix_quality)"),
    ("larpix:quality:io_group", "max by (detector, check, io_group, tile) (larpix_quality)"),
    ("larpix:quality:io_group", "max by (check, io_group) (larpix_quality)"),  # mixes detectors
    ("larpix:quality:detector", "min by (detector, check) (larpix_quality)"),
    ("larpix:quality:detector", "max by (detector, check, io_group) (larpix_quality)"),
    ("larpix:quality:detector", "max by (check) (larpix_quality)"),  # mixes detectors
])
def test_the_tests_catch_a_wrong_roll_up(tmp_path: Path, record: str, expr: str) -> None:
    result = _with(tmp_path, record, expr)
    assert result.returncode != 0
    assert record in result.stdout + result.stderr
