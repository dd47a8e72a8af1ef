"""Model -> OTLP ExportMetricsServiceRequest, built straight into protobuf messages.

Not through the SDK's MetricsData + encode_metrics: that path is about half as
fast and drops gauge start times. Series are stable from one window to the
next, so each distinct attribute set is encoded once and merged into its data
points as bytes; a steady-state point costs one merge and three field sets.

Mapping (the README's table):
- gauge -> Gauge; start and time from the point's window
- counter -> Sum (is_monotonic from the metric, temporality as normalised)
- histogram -> Histogram: cumulative `le` buckets become per-bucket counts,
  the +Inf bucket the overflow count; explicit bounds exclude +Inf
- summary -> Summary (count, sum, quantile values)
- a NaN value (or a histogram with a NaN count) -> the value as NaN plus the
  NO_RECORDED_VALUE flag, which Prometheus-compatible backends store as a
  staleness marker instead of a NaN sample that would poison sums and averages
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from bridge.model import Attrs, Batch, HistogramValue, Kind, Metric, SummaryValue, Temporality
from bridge.sinks.otlp.config import AttributeValue

SCOPE_NAME = "metrics-bridge"
NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
AGGREGATION_TEMPORALITY = {
    Temporality.CUMULATIVE: metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
    Temporality.DELTA: metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
}


def any_value(value: AttributeValue) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    return AnyValue(array_value=ArrayValue(values=[any_value(item) for item in value]))


def key_values(attributes: Iterable[tuple[str, AttributeValue]]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attributes]


class AttributeCache:
    """Encoded `attributes` field bytes per attribute set, for one data point message type.

    Two generations keep it bounded and let series that stop appearing fall out:
    when the current generation is full it becomes the previous one, and entries
    still in use are promoted back on their next lookup.
    """

    def __init__(self, point_type: type[Message], limit: int) -> None:
        self.point_type = point_type
        self.limit = limit
        self._current: dict[Attrs, bytes] = {}
        self._previous: dict[Attrs, bytes] = {}

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def get(self, attributes: Attrs) -> bytes:
        encoded = self._current.get(attributes)
        if encoded is None:
            encoded = self._previous.get(attributes)
            if encoded is None:
                encoded = self.point_type(attributes=key_values(attributes)).SerializeToString()
            if len(self._current) >= self.limit:
                self._previous, self._current = self._current, {}
            self._current[attributes] = encoded
        return encoded


def explicit_buckets(value: HistogramValue) -> tuple[list[float], list[int]]:
    """Prometheus cumulative (le, count) buckets -> OTLP explicit bounds and per-bucket counts."""
    bounds: list[float] = []
    counts: list[int] = []
    below = 0.0
    for upper, cumulative in value.buckets:
        if upper == math.inf:
            break
        bounds.append(upper)
        counts.append(max(0, round(cumulative - below)))
        below = max(below, cumulative)
    counts.append(max(0, round(value.count - below)))  # the +Inf bucket
    return bounds, counts


class RequestEncoder:
    """Encodes batches for one sink; holds only caches, so the same batch always encodes to the same request."""

    def __init__(self, resource: Mapping[str, AttributeValue], *, scope_version: str, cache_limit: int) -> None:
        self.resource = dict(resource)
        self.scope_version = scope_version
        self._number_attributes = AttributeCache(metrics_pb2.NumberDataPoint, cache_limit)
        self._histogram_attributes = AttributeCache(metrics_pb2.HistogramDataPoint, cache_limit)
        self._summary_attributes = AttributeCache(metrics_pb2.SummaryDataPoint, cache_limit)
        self._resources: dict[Attrs, bytes] = {}  # one per source resource: as bounded as the config
        self._encoders: dict[Kind, Callable[[Metric, metrics_pb2.Metric], None]] = {
            Kind.GAUGE: self._gauge,
            Kind.COUNTER: self._sum,
            Kind.HISTOGRAM: self._histogram,
            Kind.SUMMARY: self._summary,
        }

    def encode(self, batch: Batch) -> ExportMetricsServiceRequest:
        request = ExportMetricsServiceRequest()
        resource_metrics = request.resource_metrics.add()
        resource_metrics.resource.MergeFromString(self._resource_bytes(batch.resource))
        scope_metrics = resource_metrics.scope_metrics.add()
        scope_metrics.scope.name = SCOPE_NAME
        scope_metrics.scope.version = self.scope_version
        for metric in batch.metrics:
            if not metric.points:
                continue
            encoded = scope_metrics.metrics.add()
            encoded.name = metric.name
            encoded.unit = metric.unit
            encoded.description = metric.description
            self._encoders[metric.kind](metric, encoded)
        return request

    def _resource_bytes(self, batch_resource: Attrs) -> bytes:
        """The sink's resource with the batch's attributes over it (the batch knows its source and organization)."""
        encoded = self._resources.get(batch_resource)
        if encoded is None:
            merged = {**self.resource, **dict(batch_resource)}
            merged.setdefault("service.instance.id", merged.get("bridge.source", ""))
            encoded = Resource(attributes=key_values(merged.items())).SerializeToString()
            self._resources[batch_resource] = encoded
        return encoded

    def _gauge(self, metric: Metric, encoded: metrics_pb2.Metric) -> None:
        self._number_points(metric, encoded.gauge.data_points)

    def _sum(self, metric: Metric, encoded: metrics_pb2.Metric) -> None:
        encoded.sum.aggregation_temporality = AGGREGATION_TEMPORALITY[metric.temporality or Temporality.CUMULATIVE]
        encoded.sum.is_monotonic = metric.monotonic
        self._number_points(metric, encoded.sum.data_points)

    def _number_points(
        self, metric: Metric, data_points: RepeatedCompositeFieldContainer[metrics_pb2.NumberDataPoint]
    ) -> None:
        attributes = self._number_attributes.get
        for point in metric.points:
            data_point = data_points.add()
            data_point.MergeFromString(attributes(point.attributes))
            data_point.start_time_unix_nano = point.start_ns
            data_point.time_unix_nano = point.end_ns
            value = point.value
            data_point.as_double = value  # type: ignore[assignment]  # Point.value is a float for a gauge or counter
            if value != value:  # NaN
                data_point.flags = NO_RECORDED_VALUE

    def _histogram(self, metric: Metric, encoded: metrics_pb2.Metric) -> None:
        encoded.histogram.aggregation_temporality = AGGREGATION_TEMPORALITY[
            metric.temporality or Temporality.CUMULATIVE
        ]
        points = _recorded_points(metric, encoded.histogram.data_points, self._histogram_attributes, HistogramValue)
        for value, data_point in points:
            bounds, counts = explicit_buckets(value)
            data_point.count = round(value.count)
            data_point.sum = value.sum
            data_point.explicit_bounds.extend(bounds)
            data_point.bucket_counts.extend(counts)

    def _summary(self, metric: Metric, encoded: metrics_pb2.Metric) -> None:
        for value, data_point in _recorded_points(
            metric, encoded.summary.data_points, self._summary_attributes, SummaryValue
        ):
            data_point.count = round(value.count)
            data_point.sum = value.sum
            for quantile, quantile_value in value.quantiles:
                data_point.quantile_values.add(quantile=quantile, value=quantile_value)


_Recorded = TypeVar("_Recorded", HistogramValue, SummaryValue)


def _recorded_points(
    metric: Metric,
    data_points: RepeatedCompositeFieldContainer[Any],
    attributes: AttributeCache,
    value_type: type[_Recorded],
) -> Iterator[tuple[_Recorded, Any]]:
    """Add a data point per point (attributes, times); yield those with a recorded value to fill in.

    A count of NaN means nothing was recorded: the point goes out flagged NO_RECORDED_VALUE.
    `value_type` is for the type checker: the metric's kind says what its points' values are.
    """
    encoded_attributes = attributes.get
    for point in metric.points:
        value: _Recorded = point.value  # type: ignore[assignment]  # Point.value follows the metric's kind
        data_point = data_points.add()
        data_point.MergeFromString(encoded_attributes(point.attributes))
        data_point.start_time_unix_nano = point.start_ns
        data_point.time_unix_nano = point.end_ns
        if math.isnan(value.count):
            data_point.flags = NO_RECORDED_VALUE
            continue
        yield value, data_point


def split_batch(batch: Batch, max_points: int) -> list[Batch]:
    """The batch as consecutive batches of at most max_points points (a metric may span two)."""
    chunks: list[Batch] = []
    current: list[Metric] = []
    room = max_points
    for metric in batch.metrics:
        points = metric.points
        while points:
            taken, points = points[:room], points[room:]
            current.append(metric.with_points(taken))
            room -= len(taken)
            if room == 0:
                chunks.append(batch.with_metrics(current))
                current, room = [], max_points
    if current:
        chunks.append(batch.with_metrics(current))
    return chunks
