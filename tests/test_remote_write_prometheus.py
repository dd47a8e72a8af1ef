"""The `remote_write` sink against a real Prometheus (Debian's /usr/bin/prometheus, remote-write receiver on).

A simulated hour of the Cerebras simulator goes through the whole bridge (scheduler, source,
delivery, sink) into Prometheus, with a 503 phase in between (a fault front); then Prometheus'
own HTTP API is asked what it stored. Prometheus only takes samples near its head, so the hour
is the real last hour: the ManualClock starts 61 minutes before the current minute.

Nothing is mocked: the fault front is a real proxy on 127.0.0.1, Prometheus is the real server.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bridge import telemetry
from bridge.clock import ManualClock, minute_floor
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import NS_PER_S, Batch, Kind, Metric, Point
from bridge.pipeline import Pipeline
from bridge.simulator import CerebrasSimulator
from bridge.sinks.remote_write import RemoteWriteSink
from bridge.sinks.remote_write.config import RemoteWriteSinkConfig
from tests.conftest import run
from tests.faults.proxy import HttpFaultProxy, status
from tests.faults.scenarios import value
from tests.prometheus_server import PROMETHEUS, running_prometheus
from tests.readme_tables import table_under
from tests.simulated_gauges import GaugeKey, assert_same_gauges, expected_gauges

ORGANIZATION, API_KEY, SEED = "org_rw", "rw-test-key", 11
MINUTE = 60.0
GAUGE_FAMILIES = {  # the name Prometheus stores -> the Cerebras family
    "queue_time_seconds": "queue_time_seconds",
    "e2e_latency_seconds": "e2e_latency_seconds",
    "ttft_seconds": "ttft_seconds",
    "tpot_seconds": "tpot_seconds",
    "inference_endpoint_status": "inference_endpoint_status",
    "cache_rate_ratio": "cache_rate",
}
COUNTED = ("requests_count_total", "requests_success_total", "requests_failure_total",
           "input_tokens_total", "output_tokens_total")  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(  # in CI, scripts/ci-deps.sh installs it: a missing binary there must fail, not skip
        not PROMETHEUS.exists() and not os.environ.get("CI"),
        reason="needs Debian's prometheus at /usr/bin/prometheus: run scripts/ci-deps.sh",
    ),
]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus with the remote-write receiver and no scrape jobs; its base URL. Stopped at the end."""
    workdir = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(workdir, "global: {scrape_interval: 1m}\n", "--web.enable-remote-write-receiver") as url:
        yield url


def query(prometheus: str, promql: str, at: float) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql, "time": f"{at:.3f}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def source_config(simulator: CerebrasSimulator) -> dict[str, Any]:
    return {
        "type": "cerebras",
        "organization_id": ORGANIZATION,
        "api_key": API_KEY,
        "base_url": simulator.url.rsplit("/", 1)[0],
    }


async def drain(pipeline: Pipeline, clock: ManualClock, sink: str) -> None:
    """Let simulated time pass until the sink holds nothing (retries after a backoff need the clock to move)."""
    deadline = time.monotonic() + 120
    while value(telemetry.QUEUE_DEPTH, sink=sink):
        assert time.monotonic() < deadline, "the sink never drained"
        await clock.advance(5)
        await pipeline.settle()
        await asyncio.sleep(0.01)


def test_a_simulated_hour_in_prometheus_adds_up(prometheus: str, caplog: pytest.LogCaptureFixture) -> None:
    first_scrape = minute_floor(time.time()) - 61 * MINUTE + 5
    clock = ManualClock(first_scrape)
    simulator = CerebrasSimulator(organization_id=ORGANIZATION, api_key=API_KEY, clock=clock, seed=SEED)
    front = HttpFaultProxy(prometheus, clock)
    outage = (first_scrape + 20 * MINUTE, first_scrape + 30 * MINUTE)
    front.during(*outage, status(503, retry_after=30))

    async def hour() -> None:
        config = parse_config({
            "sources": {"cb": source_config(simulator)},
            "sinks": {"rw-hour": {"type": "remote_write", "url": f"{front.url}/api/v1/write"}},
        })  # fmt: skip
        pipeline = Pipeline(config, Context(clock=clock))
        await pipeline.start()
        try:
            await pipeline.settle()
            for _ in range(60):
                await clock.advance(MINUTE)
                await pipeline.settle()
            await drain(pipeline, clock, "rw-hour")
        finally:
            await pipeline.stop()

    with simulator:
        front.start()
        try:
            run(hour())
        finally:
            front.stop()
    windows = sorted(simulator.served_windows)
    assert len(windows) == 61
    last_end = windows[-1] + MINUTE
    refused = [e for e in front.exchanges if e.status == 503]
    assert refused and value(telemetry.SEND_FAILURES, sink="rw-hour", reason="http_503") == len(refused)
    assert value(telemetry.POINTS_OUT, sink="rw-hour") > 0 and not value(telemetry.QUEUE_DEPTH, sink="rw-hour")

    # Counts. increase() over a range that starts exactly at the first sample (the zero the sink writes 1 ms
    # into the first window) and ends exactly at the last one extrapolates by nothing: Prometheus extends a
    # range only by the distance from its ends to the first and last samples, and from a first value of 0
    # not at all. So it must equal the simulator's sums exactly; last_over_time says the same from the raw samples.
    first_ms = int(windows[0] * 1000) + 1
    span = f"{int(last_end * 1000) - first_ms}ms"
    expected = simulator.count_totals()
    for family in COUNTED:
        wanted = {k[1:]: v for k, v in expected.items() if k[0] == family}
        assert wanted, family
        for promql in (f"increase({family}[{span}])", f"last_over_time({family}[2h])"):
            stored = {
                (r["metric"]["endpoint"], r["metric"].get("http_code", "")): float(r["value"][1])
                for r in query(prometheus, f'{promql} and {family}{{job="cb",instance="{ORGANIZATION}"}}', last_end)
            }
            assert {k: v for k, v in stored.items() if v} == wanted, promql
    per_endpoint = query(prometheus, f"sum by (endpoint) (increase(requests_count_total[{span}]))", last_end)
    assert {r["metric"]["endpoint"]: float(r["value"][1]) for r in per_endpoint} == {
        endpoint: total for (family, endpoint, _), total in expected.items() if family == "requests_count_total"
    } | {"acme-idle-8b": 0.0}

    # Gauges: every sample, at its window's end, exactly the value served (NaN where the endpoint is idle).
    stored_gauges: dict[GaugeKey, float] = {}
    for name, family in GAUGE_FAMILIES.items():
        for series in query(prometheus, f'{name}{{job="cb"}}[2h]', last_end):
            for timestamp, text in series["values"]:
                start = round(timestamp - MINUTE)
                stored_gauges[start, family, series["metric"]["endpoint"], series["metric"].get("statistic", "")] = (
                    float(text)
                )
    assert_same_gauges(stored_gauges, expected_gauges(simulator, windows), nan_sent=True)

    # The README's PromQL table names what Prometheus stores.
    for row in table_under("What a Grafana user types in PromQL"):
        assert query(prometheus, f'count({row["PromQL name"]}{{job="cb"}})', last_end), row

    # A second bridge replays minutes 30-31 of that hour: its fresh running totals collide with stored samples
    # (out of order, or another value at a stored timestamp). Prometheus refuses each request with 400:
    # dropped and counted, logged once with Prometheus' words, never retried.
    caplog.set_level(logging.WARNING, logger="bridge.delivery")
    replay_clock = ManualClock(first_scrape + 30 * MINUTE)
    replay_simulator = CerebrasSimulator(organization_id=ORGANIZATION, api_key=API_KEY, clock=replay_clock, seed=SEED)

    async def replay() -> None:
        config = parse_config({
            "sources": {"cb": source_config(replay_simulator)},
            "sinks": {"rw-replay": {"type": "remote_write", "url": f"{prometheus}/api/v1/write"}},
        })  # fmt: skip
        pipeline = Pipeline(config, Context(clock=replay_clock))
        await pipeline.start()
        try:
            await pipeline.settle()
            await replay_clock.advance(MINUTE)
            await pipeline.settle()
        finally:
            await pipeline.stop()

    with replay_simulator:
        run(replay())
    assert len(replay_simulator.served_windows) == 2
    refusals = value(telemetry.SEND_FAILURES, sink="rw-replay", reason="http_400")
    assert refusals == 2 and value(telemetry.DELIVERY_RETRIES, sink="rw-replay") == 0
    assert value(telemetry.DROPPED_POINTS, sink="rw-replay", reason="http_400") > 0
    assert value(telemetry.POINTS_OUT, sink="rw-replay") == 0
    logged = [r.getMessage() for r in caplog.records if "rw-replay" in r.getMessage()]
    assert len(logged) == 1 and "http_400" in logged[0] and "out of order sample" in logged[0], logged
    after = query(prometheus, "sum(last_over_time(requests_count_total{job='cb'}[2h]))", last_end)
    assert float(after[0]["value"][1]) == sum(v for k, v in expected.items() if k[0] == "requests_count_total")


def test_a_vanished_series_is_stale_in_prometheus_at_once(prometheus: str) -> None:
    """Without the marker, Prometheus would show the last value for 5 more minutes (its lookback)."""
    end = minute_floor(time.time())
    sink = RemoteWriteSink("rw-stale", RemoteWriteSinkConfig(type="remote_write", url=f"{prometheus}/api/v1/write"),
                           Context())  # fmt: skip

    def batch(window_end: float, endpoints: list[str]) -> Batch:
        end_ns, start_ns = int(window_end * NS_PER_S), int((window_end - MINUTE) * NS_PER_S)
        points = [Point((("endpoint", e),), 1.0, start_ns, end_ns) for e in endpoints]
        return Batch("stale-probe", (("bridge.source", "stale-probe"),), start_ns, end_ns, [
            Metric("probe_up", Kind.GAUGE, points),
        ])  # fmt: skip

    async def go() -> None:
        await sink.start()
        try:
            for payload in sink.prepare(batch(end - MINUTE, ["a", "b"])) + sink.prepare(batch(end, ["a"])):
                await sink.deliver(payload)
        finally:
            await sink.close()

    run(go())
    shown = {r["metric"]["endpoint"] for r in query(prometheus, 'probe_up{job="stale-probe"}', end - 1)}
    assert shown == {"a", "b"}
    shown = {r["metric"]["endpoint"] for r in query(prometheus, 'probe_up{job="stale-probe"}', end)}
    assert shown == {"a"}
    raw = query(prometheus, 'probe_up{job="stale-probe",endpoint="b"}[10m]', end)
    assert [float(v) for _, v in raw[0]["values"]] == [1.0]  # the marker is not a sample a query returns
    assert not math.isnan(float(raw[0]["values"][0][1]))
