"""A simulated hour end to end: Cerebras simulator -> bridge (scheduler, source, OTLP sink) -> a real receiver."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import pytest

from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import NS_PER_S
from bridge.pipeline import Pipeline
from bridge.simulator import CerebrasSimulator
from tests.conftest import run
from tests.receivers.otlp import GrpcReceiver, HttpReceiver

SeriesKey = tuple[str, str, str]  # (family, endpoint, http_code)
COUNTED = ("requests_count_total", "requests_success_total", "requests_failure_total",
           "input_tokens_total", "output_tokens_total")  # fmt: skip


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def received_points(receiver: GrpcReceiver | HttpReceiver) -> list[tuple[SeriesKey, Any]]:
    points = []
    for metric in receiver.metrics():
        if metric.name in COUNTED:
            for point in metric.sum.data_points:
                attributes = {kv.key: kv.value.string_value for kv in point.attributes}
                points.append(((metric.name, attributes["endpoint"], attributes.get("http_code", "")), point))
    return points


@pytest.mark.parametrize(("protocol", "temporality"), [("grpc", "cumulative"), ("http/protobuf", "delta")])
def test_a_simulated_hour_arrives_with_every_count(
    simulator: CerebrasSimulator, clock: ManualClock, protocol: str, temporality: str
) -> None:
    async def go() -> GrpcReceiver | HttpReceiver:
        async with (GrpcReceiver() if protocol == "grpc" else HttpReceiver()) as receiver:
            config = parse_config({
                "sources": {"cb": {"type": "cerebras", "organization_id": simulator.organization_id,
                                   "api_key": "test-key-123", "base_url": simulator.url.rsplit("/", 1)[0]}},
                "sinks": {"collector": {"type": "otlp", "protocol": protocol, "endpoint": receiver.endpoint,
                                        "temporality": temporality}},
            })  # fmt: skip
            pipeline = Pipeline(config, Context(clock=clock))
            await pipeline.start()
            try:
                await pipeline.settle()
                for _ in range(60):
                    await clock.advance(60)
                    await pipeline.settle()
            finally:
                await pipeline.stop()
        return receiver

    receiver = run(go())
    assert len(simulator.served_windows) == 61
    assert len(receiver.accepted) == 61 and all(r.answer.accepted for r in receiver.received)
    resource = {kv.key: kv.value.string_value for rm in receiver.resource_metrics() for kv in rm.resource.attributes}
    assert resource["cerebras.organization_id"] == "org_test" and resource["service.name"] == "metrics-bridge"

    received: dict[SeriesKey, float] = defaultdict(float)
    first_start = int(min(simulator.served_windows)) * NS_PER_S
    for key, point in received_points(receiver):
        if temporality == "delta":
            received[key] += point.as_double
            assert point.time_unix_nano - point.start_time_unix_nano == 60 * NS_PER_S
        else:  # a running total: the last point holds the hour's sum
            received[key] = point.as_double
            if key[0] == "requests_count_total":  # present in every window: starts with the first one
                assert point.start_time_unix_nano == first_start
    assert {key: value for key, value in received.items() if value} == simulator.count_totals()
