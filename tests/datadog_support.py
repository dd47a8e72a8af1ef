"""Builders shared by the Datadog sink tests: Cerebras-shaped batches and a sink wired to a real intake."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bridge.clock import ManualClock
from bridge.context import Context
from bridge.model import NS_PER_S, Attrs, Batch, Kind, Metric, Point, Temporality
from bridge.sinks.base import Payload
from bridge.sinks.datadog import DatadogSink, DatadogSinkConfig
from tests.conftest import T0
from tests.receivers.datadog_intake import DatadogIntake

API_KEY = "test-dd-key"
ORG = "org_test"
CEREBRAS_RESOURCE: Attrs = (("bridge.source", "cerebras"), ("cerebras.organization_id", ORG))
STATISTICS = ("avg", "p50", "p90", "p95", "p99")
COUNT_FAMILIES = {
    "requests_count_total": "{request}",
    "requests_success_total": "{request}",
    "input_tokens_total": "{token}",
    "output_tokens_total": "{token}",
}
LATENCY_FAMILIES = ("queue_time_seconds", "e2e_latency_seconds", "ttft_seconds", "tpot_seconds")


def ns(seconds: float) -> int:
    return int(seconds * NS_PER_S)


def cerebras_batch(
    window_start: float = T0,
    *,
    endpoint: str = "ep-1",
    scale: float = 1.0,
    failures: dict[str, float] | None = None,
    status: float = 1.0,
    idle: bool = False,
) -> Batch:
    """Every Cerebras family for one endpoint and one minute, as the cerebras source emits it."""
    start, end = ns(window_start), ns(window_start + 60)
    ep: Attrs = (("endpoint", endpoint),)
    nan = math.nan

    def delta(name: str, unit: str, points: list[tuple[Attrs, float]]) -> Metric:
        return Metric(name, Kind.COUNTER, [Point(a, v, start, end) for a, v in points], Temporality.DELTA, unit)

    def gauge(name: str, unit: str, points: list[tuple[Attrs, float]]) -> Metric:
        return Metric(name, Kind.GAUGE, [Point(a, v, start, end) for a, v in points], None, unit)

    counts = {
        "requests_count_total": 100.0,
        "requests_success_total": 95.0,
        "input_tokens_total": 2000.0,
        "output_tokens_total": 300.0,
    }
    failed = failures if failures is not None else {"429": 3.0, "503": 2.0}
    metrics = [
        delta(name, unit, [(ep, 0.0 if idle else counts[name] * scale)]) for name, unit in COUNT_FAMILIES.items()
    ]
    metrics.append(
        delta(
            "requests_failure_total",
            "{request}",
            [((*ep, ("http_code", code)), n * scale) for code, n in failed.items()] or [(ep, 0.0)],
        )
    )
    for index, family in enumerate(LATENCY_FAMILIES):
        metrics.append(
            gauge(
                family,
                "s",
                [
                    ((*ep, ("statistic", stat)), nan if idle else round(0.01 * (index + 1) * (rank + 1), 6))
                    for rank, stat in enumerate(STATISTICS)
                ],
            )
        )
    status_gauge = gauge("inference_endpoint_status", "1", [(ep, status)])
    status_gauge.service_check = "inference_endpoint.status"  # the Cerebras preset's hint
    metrics.append(status_gauge)
    metrics.append(gauge("cache_rate", "1", [(ep, nan if idle else 0.42)]))
    return Batch("cerebras", CEREBRAS_RESOURCE, start, end, metrics, namespace="cerebras")


class Wired:
    """A Datadog sink delivering straight to an intake, with the clock both share."""

    def __init__(self, sink: DatadogSink, intake: DatadogIntake, clock: ManualClock) -> None:
        self.sink = sink
        self.intake = intake
        self.clock = clock

    async def send(self, batch: Batch) -> list[Payload]:
        """Prepare a batch and deliver every payload once (errors propagate)."""
        payloads = self.sink.prepare(batch)
        for payload in payloads:
            await self.sink.deliver(payload)
        return payloads


@asynccontextmanager
async def wired(
    clock: ManualClock | None = None, intake: DatadogIntake | None = None, **config: Any
) -> AsyncIterator[Wired]:
    """A started sink (config overrides as keywords) and a running intake (a fresh one unless given)."""
    clock = clock or ManualClock(T0 + 65)
    own_intake = intake is None
    intake = intake or DatadogIntake({API_KEY}, clock=clock)
    if own_intake:
        intake.start()
    settings = {"type": "datadog", "url": intake.url, "api_key": API_KEY, **config}
    sink = DatadogSink("dd", DatadogSinkConfig.model_validate(settings), Context(clock=clock))
    await sink.start()
    try:
        yield Wired(sink, intake, clock)
    finally:
        await sink.close()
        if own_intake:
            intake.stop()
