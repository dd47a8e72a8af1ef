"""The real receivers of the sink issues, each behind a fault front, and what they ended up holding.

Every backend answers the same questions so a scenario can treat them alike:
which windows arrived, in which order, how many copies of each (and whether
the copies are identical), and the sum of each Cerebras count family.
Windows are named by their end (unix seconds).
"""

from __future__ import annotations

import abc
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.metrics.v1 import metrics_pb2

from bridge.clock import Clock
from tests.faults.proxy import HttpFaultProxy, TcpFaultProxy
from tests.receivers.datadog_intake import SERIES_PATH, DatadogIntake
from tests.receivers.otlp import GrpcReceiver, HttpReceiver

DATADOG_API_KEY = "fault-suite-key"
#: (family, endpoint, http_code or "")
CountKey = tuple[str, str, str]
COUNT_FAMILIES = (
    "requests_count_total",
    "requests_success_total",
    "requests_failure_total",
    "input_tokens_total",
    "output_tokens_total",
)


@dataclass
class Arrivals:
    """What a backend accepted. `copies[window]`: one canonical body per accepted request carrying the window."""

    copies: dict[int, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    order: list[int] = field(default_factory=list)  # windows in the order their first copy was accepted
    totals: dict[CountKey, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, windows: Iterable[int], body: bytes) -> None:
        for window in sorted(set(windows)):
            if window not in self.copies:
                self.order.append(window)
            self.copies[window].append(body)

    @property
    def windows(self) -> set[int]:
        return set(self.copies)

    @property
    def duplicated(self) -> int:
        """Deliveries beyond the first, over all windows."""
        return sum(len(bodies) - 1 for bodies in self.copies.values())

    def differing_copies(self) -> list[int]:
        """Windows delivered more than once with different bytes: a re-send that was not idempotent."""
        return [w for w, bodies in self.copies.items() if len(set(bodies)) > 1]


def nonzero(totals: dict[CountKey, float]) -> dict[CountKey, float]:
    return {key: value for key, value in totals.items() if value}


class Backend(abc.ABC):
    """A receiver with a fault front; `proxy` (there once started) is where a scenario scripts the failures."""

    name: str
    proxy: HttpFaultProxy | TcpFaultProxy

    @abc.abstractmethod
    def sink_config(self) -> dict[str, Any]:
        """The bridge's sink config that sends here, through the fault front."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    def arrivals(self) -> Arrivals: ...


class DatadogBackend(Backend):
    """The Datadog intake (last value per timestamp, 1 h acceptance window on the scenario's clock)."""

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.intake = DatadogIntake({DATADOG_API_KEY}, clock=clock)
        self.clock = clock

    def sink_config(self) -> dict[str, Any]:
        return {
            "type": "datadog",
            "url": self.proxy.url,
            "api_key": DATADOG_API_KEY,
            "service_checks": False,
            "timeout_seconds": 30,
        }

    async def start(self) -> None:
        self.intake.start()
        self.proxy = HttpFaultProxy(self.intake.url, self.clock)
        self.proxy.start()

    async def stop(self) -> None:
        self.proxy.stop()
        self.intake.stop()

    def arrivals(self) -> Arrivals:
        arrivals = Arrivals()
        for request in self.intake.requests:
            if request.path != SERIES_PATH or request.status != 202:
                continue
            series = request.json["series"]
            windows = [
                point["timestamp"] + s["interval"]
                for s in series
                if s["metric"] == "cerebras.requests_count"
                for point in s["points"]
            ]
            arrivals.add(windows, json.dumps(request.json, sort_keys=True).encode())
        for point in self.intake.points():  # what Datadog stores: one value per series and timestamp
            family = point.metric.removeprefix("cerebras.") + "_total"
            if family in COUNT_FAMILIES:
                arrivals.totals[(family, point.tag("endpoint") or "", point.tag("http_code") or "")] += point.value
        arrivals.totals = nonzero(arrivals.totals)
        return arrivals


class OtlpBackend(Backend):
    """An OTLP receiver (gRPC behind a TCP fault front, HTTP behind an HTTP one) that records every request."""

    def __init__(self, name: str, protocol: str, clock: Clock, temporality: str) -> None:
        self.name = name
        self.protocol = protocol
        self.temporality = temporality
        self.clock = clock
        self.receiver: GrpcReceiver | HttpReceiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()

    def sink_config(self) -> dict[str, Any]:
        endpoint = self.proxy.endpoint if isinstance(self.proxy, TcpFaultProxy) else self.proxy.url
        return {
            "type": "otlp",
            "protocol": self.protocol,
            "endpoint": endpoint,
            "temporality": self.temporality,
            "timeout_seconds": 30,
        }

    async def start(self) -> None:
        if isinstance(self.receiver, GrpcReceiver):
            await self.receiver.start()
            self.proxy = TcpFaultProxy(("127.0.0.1", self.receiver.port), self.clock)
        else:
            self.receiver.start()
            self.proxy = HttpFaultProxy(self.receiver.endpoint, self.clock)
        self.proxy.start()

    async def stop(self) -> None:
        self.proxy.stop()
        if isinstance(self.receiver, GrpcReceiver):
            await self.receiver.stop()
        else:
            self.receiver.stop()

    def arrivals(self) -> Arrivals:
        arrivals = Arrivals()
        # (key, series start, point time) -> value; a duplicate delivery writes the same entry again
        values: dict[tuple[CountKey, int, int], float] = {}
        cumulative = False
        for request in self.receiver.accepted:
            windows = []
            for metric in _metrics(request):
                if metric.name not in COUNT_FAMILIES:
                    continue
                cumulative = metric.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
                for point in metric.sum.data_points:
                    attributes = {a.key: a.value.string_value for a in point.attributes}
                    key = (metric.name, attributes.get("endpoint", ""), attributes.get("http_code", ""))
                    values[(key, point.start_time_unix_nano, point.time_unix_nano)] = point.as_double
                    windows.append(point.time_unix_nano // 1_000_000_000)
            arrivals.add(windows, request.SerializeToString(deterministic=True))
        arrivals.totals = nonzero(_sum(values, cumulative))
        return arrivals


def _metrics(request: Any) -> Iterable[metrics_pb2.Metric]:
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            yield from scope_metrics.metrics


def _sum(values: dict[tuple[CountKey, int, int], float], cumulative: bool) -> dict[CountKey, float]:
    """Delta: add every window once. Cumulative: the last running total of each series life (start time)."""
    totals: dict[CountKey, float] = defaultdict(float)
    if not cumulative:
        for (key, _, _), value in values.items():
            totals[key] += value
        return totals
    latest: dict[tuple[CountKey, int], tuple[int, float]] = {}
    for (key, start, end), value in values.items():
        if (key, start) not in latest or end > latest[(key, start)][0]:
            latest[(key, start)] = (end, value)
    for (key, _), (_, value) in latest.items():
        totals[key] += value
    return totals
