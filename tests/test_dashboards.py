"""dashboards/: fresh, valid for each backend's own tooling, and the alerts the README lists.

- each committed file is exactly what bridge.dashboards makes (`make dashboards` after a change);
- the rules pass `promtool check rules`, and `promtool test rules` fires each alert on its fault
  and none on a healthy hour (tests/fixtures/dashboards/cerebras-rules-tests.yaml);
- every Datadog body deserialises into datadog-api-client's `Dashboard` and `Monitor` models
  with nothing left unparsed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from datadog_api_client import Configuration
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor

from bridge.dashboards import FILES, datadog, rules
from bridge.dashboards.alerts import alerts
from bridge.dashboards.apply import apply_datadog
from tests.readme_tables import table_under
from tests.receivers.datadog_api import DatadogApiStandIn
from tests.receivers.datadog_intake import deserialize_strict
from tests.test_cli import cli

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards"
RULES_TESTS = ROOT / "tests" / "fixtures" / "dashboards" / "cerebras-rules-tests.yaml"
PROMTOOL = Path("/usr/bin/promtool")
needs_promtool = pytest.mark.skipif(  # CI installs it (scripts/ci-deps.sh): a missing binary there must fail
    not PROMTOOL.exists() and not os.environ.get("CI"),
    reason="needs Debian's prometheus (promtool) at /usr/bin/promtool: run scripts/ci-deps.sh",
)


@pytest.mark.parametrize("name", FILES)
def test_committed_file_is_what_the_generator_makes(name: str) -> None:
    committed = (DASHBOARDS / name).read_text(encoding="utf-8")
    assert committed == FILES[name](), f"dashboards/{name} is stale: run `make dashboards` and commit it"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROMTOOL), *args], capture_output=True, text=True, timeout=120, check=False)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(DASHBOARDS / "cerebras-rules.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 16 rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_fire_each_alert_on_its_fault_and_none_on_a_healthy_hour() -> None:
    result = promtool("test", "rules", str(RULES_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    healthy, *faults = tests
    every = {a.name for a in alerts()}
    assert {t["alertname"] for t in healthy["alert_rule_test"] if not t["exp_alerts"]} == every
    fired = {t["alertname"] for group in faults for t in group["alert_rule_test"] if t["exp_alerts"]}
    assert fired == every


def test_every_alert_is_a_rule_and_a_monitor() -> None:
    document = yaml.safe_load((DASHBOARDS / "cerebras-rules.yaml").read_text())
    [recording, alerting] = document["groups"]
    assert [r["record"] for r in recording["rules"]] == list(rules.recording_rules())
    names = [a.name for a in alerts()]
    assert [r["alert"] for r in alerting["rules"]] == names
    monitors = json.loads((DASHBOARDS / "cerebras-datadog-monitors.json").read_text())
    assert [m["name"] for m in monitors] == [f"metrics-bridge: {n}" for n in [*names, "CerebrasEndpointStatusCheck"]]
    for monitor in monitors:  # Datadog requires the query's threshold to be the critical one
        assert monitor["query"].endswith(f"{monitor['options']['thresholds']['critical']:g}") or (
            monitor["type"] == "service check"
        )


def test_the_readme_lists_each_alert_with_its_threshold() -> None:
    table = table_under("Alerts and their thresholds")
    assert [(row["alert"], row["severity"], row["fires when"]) for row in table] == [
        (a.name, a.severity, a.summary) for a in alerts()
    ]


def test_the_datadog_dashboard_is_a_dashboard_model() -> None:
    body = json.loads((DASHBOARDS / "cerebras-datadog-dashboard.json").read_text())
    model = deserialize_strict(body, Dashboard)
    assert model.title == datadog.TITLE
    queries = [
        q["query"]
        for group in body["widgets"]
        for widget in group["definition"]["widgets"]
        for request in widget["definition"].get("requests", [])
        for q in request["queries"]
    ]
    cerebras = [q for q in queries if "cerebras." in q]
    assert cerebras and all("{$organization,$endpoint" in q for q in cerebras)
    assert {q.split("statistic:")[1].split("}")[0] for q in cerebras if "statistic:" in q} == {"p50", "p95", "p99"}


@pytest.mark.parametrize("index", range(len(datadog.monitors())))
def test_each_datadog_monitor_is_a_monitor_model(index: int) -> None:
    body = json.loads((DASHBOARDS / "cerebras-datadog-monitors.json").read_text())[index]
    model = deserialize_strict(body, Monitor)
    assert model.name == body["name"] and str(model.type) == body["type"]


def test_a_datadog_body_the_model_does_not_know_fails() -> None:
    body = json.loads((DASHBOARDS / "cerebras-datadog-monitors.json").read_text())[0]
    body["options"]["treshold"] = 1
    with pytest.raises(ValueError, match="treshold"):
        deserialize_strict(body, Monitor)


def test_export_prints_each_backends_files() -> None:
    grafana = cli("dashboards", "export", "grafana")
    assert grafana.returncode == 0 and grafana.stdout == (DASHBOARDS / "cerebras-grafana.json").read_text()
    rules_out = cli("dashboards", "export", "prometheus-rules")
    assert rules_out.stdout == (DASHBOARDS / "cerebras-rules.yaml").read_text()
    both = json.loads(cli("dashboards", "export", "datadog").stdout)
    assert both == {
        "dashboard": json.loads((DASHBOARDS / "cerebras-datadog-dashboard.json").read_text()),
        "monitors": json.loads((DASHBOARDS / "cerebras-datadog-monitors.json").read_text()),
    }
    wrong = cli("dashboards", "export", "kibana")
    assert wrong.returncode == 2 and "invalid choice: 'kibana'" in wrong.stderr


def test_apply_needs_an_application_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DD_")} | {"DD_API_KEY": "api-key-canary"}
    result = cli("dashboards", "apply", "datadog", env=env)
    assert result.returncode == 2
    assert "set DD_APP_KEY" in result.stderr and "api-key-canary" not in result.stderr + result.stdout


def test_apply_creates_then_updates_never_duplicates() -> None:
    """Against a loopback stand-in of Datadog's v1 dashboards and monitors API (tests/receivers/datadog_api.py)."""
    with DatadogApiStandIn("api-key", "app-key") as api:
        configuration = Configuration(host=api.url, api_key={"apiKeyAuth": "api-key", "appKeyAuth": "app-key"})
        first = apply_datadog(configuration)
        api.dashboards[next(iter(api.dashboards))]["description"] = "edited by hand"
        second = apply_datadog(configuration)
    count = 1 + len(datadog.monitors())
    assert [line.split()[2].rstrip(":") for line in first] == ["created"] * count
    assert [line.split()[2].rstrip(":") for line in second] == ["updated"] * count
    assert [line.split()[1] for line in first] == [line.split()[1] for line in second]  # the same objects
    assert list(api.dashboards.values()) == [datadog.dashboard()]  # the hand edit is overwritten
    assert list(api.monitors.values()) == datadog.monitors()
    assert ("PUT", f"/api/v1/dashboard/{next(iter(api.dashboards))}") in api.calls
