"""The alert rules with sharded exporters and several detectors, unit-tested by promtool."""

from __future__ import annotations

import subprocess

from support.stack import ALERT_RULES, require_tool

SHARDING_TESTS = ALERT_RULES.parent / "sharding.test.yml"


def test_promtool_sharding_unit_tests_pass() -> None:
    result = subprocess.run([require_tool("promtool"), "test", "rules", SHARDING_TESTS.name],
                            capture_output=True, text=True, cwd=ALERT_RULES.parent, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
