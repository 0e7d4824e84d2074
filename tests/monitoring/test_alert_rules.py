"""The alert rules of configs/monitoring through promtool (Debian's prometheus package): valid, and each alert
fires on its firing series and stays quiet on the others (configs/monitoring/alerts_test.yaml)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.support import ROOT

pytestmark = pytest.mark.prometheus

MONITORING = ROOT / "configs" / "monitoring"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)


def test_the_rules_are_valid():
    result = promtool("check", "rules", "alerts.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_every_alert_has_unit_tests_and_they_pass():
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((MONITORING / "alerts_test.yaml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert tested == alerts and firing == alerts
    result = promtool("test", "rules", "alerts_test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(tmp_path):
    """The rule tests can fail: one expected annotation changed is reported."""
    tests = yaml.safe_load((MONITORING / "alerts_test.yaml").read_text())
    expected = tests["tests"][0]["alert_rule_test"][1]["exp_alerts"][0]["exp_annotations"]
    expected["summary"] = "something else"
    tests["rule_files"] = [str(MONITORING / "alerts.yaml")]
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "wrong.yaml")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "something else" in result.stdout + result.stderr
