"""A simulated hour end to end: Cerebras simulator -> bridge (scheduler, source, OTLP sink) -> a real receiver.

Every count adds up to the simulator's totals; every gauge arrives with exactly the value served
(NaN, flagged, where idle).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import DataPointFlags

from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import NS_PER_S
from bridge.pipeline import Pipeline
from bridge.simulator import CerebrasSimulator
from tests.conftest import run
from tests.receivers.otlp import GrpcReceiver, HttpReceiver
from tests.simulated_gauges import GaugeKey, assert_same_gauges, expected_gauges

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


def received_gauges(receiver: GrpcReceiver | HttpReceiver) -> dict[GaugeKey, float]:
    """Gauge points by window; a NaN must carry the no-recorded-value flag, anything else must not."""
    gauges = {}
    for metric in receiver.metrics():
        for point in metric.gauge.data_points:
            attributes = {kv.key: kv.value.string_value for kv in point.attributes}
            assert point.time_unix_nano - point.start_time_unix_nano == 60 * NS_PER_S
            assert bool(point.flags & DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK) == math.isnan(
                point.as_double
            )
            key = (
                point.start_time_unix_nano // NS_PER_S,
                metric.name,
                attributes["endpoint"],
                attributes.get("statistic", ""),
            )
            gauges[key] = point.as_double
    return gauges


@pytest.mark.parametrize(("protocol", "temporality"), [("grpc", "cumulative"), ("http/protobuf", "delta")])
def test_a_simulated_hour_arrives_with_every_count(
    simulator: CerebrasSimulator, clock: ManualClock, protocol: str, temporality: str
) -> None:
    async def go() -> GrpcReceiver | HttpReceiver:
        async with GrpcReceiver() if protocol == "grpc" else HttpReceiver() as receiver:
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
    assert_same_gauges(received_gauges(receiver), expected_gauges(simulator, simulator.served_windows), nan_sent=True)
