"""Benchmark the OTLP encoder against the OpenTelemetry SDK's dataclass path on Cerebras-like batches.

Run from the repo root: `python bench/bench_otlp.py`. The input is successive
one-minute windows of the Cerebras Metrics API shape (100 endpoints, 29 series
each: 5 delta counter families with 3 failure codes, 4 statistic gauge families
x 5 statistics, status, cache rate) until at least 100k samples. Both paths
start from the same bridge Batches and end with serialized
ExportMetricsServiceRequest bytes:

- ours: RequestEncoder.encode(batch), wire bytes written by hand (each series' framed
  attributes kept on its series-table entry after the first window, as in a running bridge);
- messages: the encoder this one replaced: generated protobuf messages, one data point
  added per point, its attributes merged from cached bytes, then SerializeToString;
- SDK: Batch -> opentelemetry-sdk MetricsData dataclasses ->
  opentelemetry.exporter.otlp.proto.common encode_metrics -> SerializeToString.

A third line times the sink's whole prepare() (cumulative normalisation +
encode + serialize). Best of REPEATS runs.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.export import Metric as SDKMetric
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from bridge import __version__
from bridge.context import Context
from bridge.model import NS_PER_S, Batch, Kind, Metric, Point, Temporality
from bridge.sinks.otlp import OTLPSink, OTLPSinkConfig
from bridge.sinks.otlp.encode import AGGREGATION_TEMPORALITY, SCOPE_NAME, RequestEncoder

TARGET_SAMPLES = 100_000
REPEATS = 3
ENDPOINTS = 100
T0_NS = 1_800_000_000 * NS_PER_S
RESOURCE = (("bridge.source", "cerebras"), ("cerebras.organization_id", "org_bench"))
COUNTERS = [("requests_count_total", "{request}"), ("requests_success_total", "{request}"),
            ("input_tokens_total", "{token}"), ("output_tokens_total", "{token}")]  # fmt: skip
STATISTIC_FAMILIES = ("queue_time_seconds", "e2e_latency_seconds", "ttft_seconds", "tpot_seconds")
STATISTICS = ("avg", "p50", "p90", "p95", "p99")
HTTP_CODES = ("429", "500", "503")


def window_batch(index: int) -> Batch:
    start = T0_NS + index * 60 * NS_PER_S
    end = start + 60 * NS_PER_S
    endpoints = [f"acme-model-{n:03d}" for n in range(ENDPOINTS)]

    def metric(name: str, kind: Kind, unit: str, rows: list[tuple[tuple[tuple[str, str], ...], float]]) -> Metric:
        temporality = Temporality.DELTA if kind is Kind.COUNTER else None
        return Metric(name, kind, [Point(attrs, value, start, end) for attrs, value in rows], temporality, unit, name)

    metrics = [
        metric(name, Kind.COUNTER, unit, [((("endpoint", ep),), float(index + n)) for n, ep in enumerate(endpoints)])
        for name, unit in COUNTERS
    ]
    metrics.append(metric("requests_failure_total", Kind.COUNTER, "{request}", [
        ((("endpoint", ep), ("http_code", code)), float(n % 5)) for n, ep in enumerate(endpoints) for code in HTTP_CODES
    ]))  # fmt: skip
    for family in STATISTIC_FAMILIES:
        metrics.append(metric(family, Kind.GAUGE, "s", [
            ((("endpoint", ep), ("statistic", stat)), 0.001 * (n + 1) * (s + 1))
            for n, ep in enumerate(endpoints) for s, stat in enumerate(STATISTICS)
        ]))  # fmt: skip
    metrics.append(metric("inference_endpoint_status", Kind.GAUGE, "1", [((("endpoint", e),), 1.0) for e in endpoints]))
    metrics.append(metric("cache_rate", Kind.GAUGE, "1", [((("endpoint", ep),), 0.42) for ep in endpoints]))
    return Batch("cerebras", RESOURCE, start, end, metrics)


def sdk_encode(batch: Batch, base_resource: dict[str, object]) -> bytes:
    """The SDK path: the same batch as MetricsData dataclasses, then the SDK's own protobuf encoder."""
    sdk_metrics = []
    for metric in batch.metrics:
        points = [NumberDataPoint(dict(p.attributes), p.start_ns, p.end_ns, p.value) for p in metric.points]
        if metric.kind is Kind.COUNTER:
            data: Sum | Gauge = Sum(points, AggregationTemporality.DELTA, is_monotonic=True)
        else:
            data = Gauge(points)
        sdk_metrics.append(SDKMetric(metric.name, metric.description, metric.unit, data))
    resource = Resource({**base_resource, **dict(batch.resource)})
    scope = ScopeMetrics(InstrumentationScope(SCOPE_NAME, __version__), sdk_metrics, "")
    return encode_metrics(MetricsData([ResourceMetrics(resource, [scope], "")])).SerializeToString()


class MessageEncoder:
    """The previous encoder, as the peer: generated messages per point, attribute bytes cached per attribute set."""

    def __init__(self, resource: bytes) -> None:
        self.resource = resource
        self.attributes: dict[tuple[tuple[str, str], ...], bytes] = {}

    def encode(self, batch: Batch) -> bytes:
        request = ExportMetricsServiceRequest()
        resource_metrics = request.resource_metrics.add()
        resource_metrics.resource.MergeFromString(self.resource)
        scope_metrics = resource_metrics.scope_metrics.add()
        scope_metrics.scope.name, scope_metrics.scope.version = SCOPE_NAME, __version__
        for metric in batch.metrics:
            encoded = scope_metrics.metrics.add(name=metric.name, unit=metric.unit, description=metric.description)
            if metric.kind is Kind.COUNTER:
                encoded.sum.aggregation_temporality = AGGREGATION_TEMPORALITY[metric.temporality or Temporality.DELTA]
                encoded.sum.is_monotonic = True
                data_points = encoded.sum.data_points
            else:
                data_points = encoded.gauge.data_points
            for series, value, start_ns, end_ns in zip(
                metric.series, metric.values, metric.starts, metric.ends, strict=True
            ):
                cached = self.attributes.get(series.attributes)
                if cached is None:
                    attributes = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in series.attributes]
                    cached = self.attributes[series.attributes] = metrics_pb2.NumberDataPoint(
                        attributes=attributes
                    ).SerializeToString()
                data_point = data_points.add()
                data_point.MergeFromString(cached)
                data_point.start_time_unix_nano, data_point.time_unix_nano = start_ns, end_ns
                data_point.as_double = value  # type: ignore[assignment]
        return request.SerializeToString()


def best_rate(samples: int, run: Callable[[], None]) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return samples / min(timings)


def main() -> None:
    first = window_batch(0)
    windows = -(-TARGET_SAMPLES // first.point_count())
    batches = [window_batch(i) for i in range(windows)]
    samples = sum(b.point_count() for b in batches)
    config = OTLPSinkConfig(type="otlp", endpoint="http://127.0.0.1:4318")
    base_resource = config.resource()

    def ours() -> None:
        encoder = RequestEncoder(base_resource, scope_version=__version__)
        for batch in batches:
            encoder.encode(batch)

    resource_bytes = (
        ExportMetricsServiceRequest.FromString(
            RequestEncoder(base_resource, scope_version=__version__).encode(batches[0])
        )
        .resource_metrics[0]
        .resource.SerializeToString()
    )

    def messages() -> None:
        encoder = MessageEncoder(resource_bytes)
        for batch in batches:
            encoder.encode(batch)

    def sdk() -> None:
        for batch in batches:
            sdk_encode(batch, base_resource)

    def prepare() -> None:
        sink = OTLPSink("bench", config, Context())
        for batch in batches:
            sink.prepare(batch)

    ours_rate, sdk_rate, prepare_rate = best_rate(samples, ours), best_rate(samples, sdk), best_rate(samples, prepare)
    messages_rate = best_rate(samples, messages)
    print(f"input: {samples:,} samples = {windows} windows x {first.point_count():,} series "
          f"({ENDPOINTS} Cerebras-like endpoints); best of {REPEATS}")  # fmt: skip
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"bridge encoder (wire bytes)        {ours_rate:>12,.0f} samples/s")
    print(f"generated messages per point       {messages_rate:>12,.0f} samples/s")
    print(f"SDK dataclasses + encode_metrics   {sdk_rate:>12,.0f} samples/s")
    print(f"ratio bridge / messages            {ours_rate / messages_rate:>12.2f}x")
    print(f"ratio bridge / SDK                 {ours_rate / sdk_rate:>12.2f}x")
    print(f"sink prepare (cumulative + encode) {prepare_rate:>12,.0f} samples/s")


if __name__ == "__main__":
    main()
