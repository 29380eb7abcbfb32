"""The forecast service's Prometheus alert rules, checked and unit-tested by the real promtool (`make promtool`)."""

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

RULES = ROOT / "serving" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "serving" / "prometheus" / "alerts_test.yml"
ALERTS = {"TradecastServiceDown", "TradecastBreakerOpen", "TradecastHighErrorRate", "TradecastP99LatencyHigh",
          "TradecastNoBarsIngested"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:  # a missing tool fails, never skips: the rules would otherwise go unchecked silently
        pytest.fail("promtool not found: run make promtool")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid_promql_and_their_unit_tests_pass():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout
    assert set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M)) == ALERTS
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested_alerts == ALERTS  # every alert has a firing and a quiet case


def test_a_bad_expression_fails_the_check(tmp_path):
    broken = tmp_path / "alerts.yml"
    broken.write_text(RULES.read_text().replace("expr: tradecast_breaker_state > 0",
                                                "expr: tradecast_breaker_state > > 0"))
    assert broken.read_text() != RULES.read_text()
    checked = promtool("check", "rules", str(broken))
    assert checked.returncode != 0
    out = checked.stdout + checked.stderr
    assert '"TradecastBreakerOpen": could not parse expression' in out, out


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path):
    """The same tests against rules whose 5xx threshold is 50%: the 9% case no longer fires, so they fail."""
    (tmp_path / "alerts.yml").write_text(RULES.read_text().replace(
        "sum by (job, instance) (rate(tradecast_requests_total[5m])) > 0.05",
        "sum by (job, instance) (rate(tradecast_requests_total[5m])) > 0.5"))
    assert (tmp_path / "alerts.yml").read_text() != RULES.read_text()
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    tested = promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert tested.returncode != 0
    assert "TradecastHighErrorRate" in tested.stdout + tested.stderr
