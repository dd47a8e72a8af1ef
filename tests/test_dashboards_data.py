"""Every PromQL expression of dashboards/ evaluated by a real Prometheus on what the bridge sent.

Three simulated hours: simulator -> cerebras source -> pipeline -> `jsonl` sink, the
bridge's /metrics snapshotted each minute; the capture becomes what Mimir stores from
the OTLP path (tests/openmetrics_capture.py), is loaded with `promtool tsdb
create-blocks-from openmetrics`, and Prometheus answers each query at a time inside the
data: every Cerebras query has a value for each simulated endpoint (latency and cache
rate only where there was traffic: the idle endpoint measured nothing), none is NaN,
the success ratio is the simulator's, and the alert expressions stay quiet on this
healthy run.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from bridge import telemetry
from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.dashboards import grafana, rules
from bridge.pipeline import Pipeline
from bridge.simulator import CerebrasSimulator
from tests.conftest import T0, run
from tests.openmetrics_capture import convert
from tests.test_dashboards import DASHBOARDS, needs_promtool
from tests.test_prometheus_e2e import PROMETHEUS, free_port, stop

pytestmark = [pytest.mark.slow, needs_promtool]

ORG, SEED, MINUTES = "org_dash", 12, 180
ENDPOINTS = {"acme-llama-3.3-70b", "acme-qwen-3-32b", "acme-idle-8b"}
IDLE = "acme-idle-8b"
#: the dashboard's variables as Grafana would expand "All" and a 1-minute scrape's rate interval
VARIABLES = {"$organization": ".*", "$endpoint": ".*", "$__rate_interval": "5m"}
#: families an idle endpoint has no number for (the API prints NaN: nothing was measured)
MEASURED = ("_seconds", "cache_rate_ratio")
#: a client on the Prometheus, the query time, the last window's end
Served = tuple[httpx.Client, float, float]


def simulate(tmp_path: Path) -> tuple[Path, float]:
    """Run the bridge for MINUTES simulated minutes; return the OpenMetrics file and the last window's end."""
    capture = tmp_path / "points.jsonl"
    snapshots: list[tuple[float, str]] = []

    async def go() -> None:
        clock = ManualClock(T0)
        config = parse_config(
            {
                "sources": {"cerebras": {"type": "simulator", "organization_id": ORG, "seed": SEED}},
                "sinks": {"capture": {"type": "jsonl", "path": str(capture)}},
            }
        )
        pipeline = Pipeline(config, Context(clock=clock))
        await pipeline.start()
        try:
            for _ in range(MINUTES):
                await clock.advance(60)
                await pipeline.settle()
                snapshots.append((clock.now(), generate_latest(telemetry.REGISTRY).decode()))
        finally:
            await pipeline.stop()

    run(go())
    openmetrics = tmp_path / "capture.om"
    openmetrics.write_text(convert(capture.read_text().splitlines(), snapshots))
    last_end = max(float(line.rsplit(" ", 1)[1]) for line in openmetrics.read_text().splitlines()[:-1])
    return openmetrics, math.floor(last_end / 60) * 60


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """(client, query time, last window end) on a Prometheus serving the simulated hours."""
    tmp_path = tmp_path_factory.mktemp("dashboards-data")
    openmetrics, last_end = simulate(tmp_path)
    blocks = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(tmp_path / "tsdb")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert blocks.returncode == 0, blocks.stderr[-3000:]
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=100y",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
                try:
                    if client.get("/-/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "Prometheus never became ready"
                time.sleep(0.2)
            yield client, last_end - 30, last_end
    finally:
        stop(process)
        log.close()


def query(client: httpx.Client, at: float, promql: str) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/query", params={"query": promql, "time": at})
    assert answer.status_code == 200, f"{promql}: {answer.text}"
    return answer.json()["data"]["result"]


def dashboard_expressions() -> list[str]:
    """Every query of the Grafana dashboard, variables expanded; `label_values(m, l)` as the PromQL it runs."""
    out = []
    for template in grafana.expressions((DASHBOARDS / "cerebras-grafana.json").read_text()):
        expr = template
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        out.append(re.sub(r"^label_values\((\w+), (\w+)\)$", r"group by (\2) (\1)", expr))
    return out


def inlined(expr: str) -> str:
    """An alert's expression with each recorded series replaced by its rule (nothing evaluates rules here)."""
    for name, recorded in rules.recording_rules().items():
        expr = re.sub(rf"(?<![\w:]){re.escape(name)}(?![\w:])", f"({recorded})", expr)
    return expr


@pytest.mark.parametrize("expr", dashboard_expressions() + list(rules.recording_rules().values()))
def test_every_query_has_data_for_every_endpoint_and_no_nan(prometheus: Served, expr: str) -> None:
    client, at, _ = prometheus
    result = query(client, at, expr)
    assert result, f"no data: {expr}"
    values = [float(r["value"][1]) for r in result]
    assert not any(math.isnan(v) for v in values), f"NaN in {expr}: {result}"
    if "bridge_" in expr:
        return  # the bridge's own series: by source or sink
    if expr.startswith("group by (cerebras_organization_id)"):  # the organization variable
        assert {r["metric"]["cerebras_organization_id"] for r in result} == {ORG}
        return
    endpoints = {r["metric"].get("endpoint") for r in result}
    measured = any(name in expr for name in MEASURED) and "inference_endpoint_status" not in expr
    assert endpoints == (ENDPOINTS - {IDLE} if measured else ENDPOINTS), expr


def test_the_success_ratio_is_the_simulators(prometheus: Served) -> None:
    client, at, last_end = prometheus
    ratios = {
        r["metric"]["endpoint"]: float(r["value"][1])
        for r in query(client, at, inlined("cerebras:success_ratio:rate5m"))
    }
    # samples at the window ends in [at - 5m, at]: the increments are the 4 windows ending in the last 4 minutes
    starts = [last_end - 60 * k for k in range(1, 5)]
    windows = [CerebrasSimulator(organization_id=ORG, seed=SEED).window_values(s) for s in starts]
    for endpoint in ENDPOINTS - {IDLE}:
        success = sum(w.endpoints[endpoint].success for w in windows)
        requests = sum(w.endpoints[endpoint].requests for w in windows)
        assert ratios[endpoint] == pytest.approx(success / requests, rel=1e-12)
    assert ratios[IDLE] == 1.0  # no request, none failed


@pytest.mark.parametrize("alert", list(rules.alert_rules()))
def test_no_alert_fires_on_a_healthy_run(prometheus: Served, alert: str) -> None:
    client, at, _ = prometheus
    expr, _ = rules.alert_rules()[alert]
    assert query(client, at, inlined(expr)) == [], expr
