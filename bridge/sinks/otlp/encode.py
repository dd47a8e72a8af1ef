"""Model -> OTLP ExportMetricsServiceRequest bytes, written straight from the series table.

Gauges and sums (nearly every point) are written as protobuf wire bytes by hand:
each series' `attributes` field is encoded once and kept on its series-table
entry, already framed as a data point of the usual size, so a steady-state point
costs one struct pack. Histograms and summaries (few points, nested values) are
built with the generated classes and spliced in as bytes: only they load
protobuf and the OTLP *_pb2 modules, about 3 MB resident that a bridge sending
gauges and sums never pays (replies.py says more). Not through the SDK's
MetricsData + encode_metrics (about 7x slower here, and it drops gauge start
times), nor through generated messages per point (a merge and three field sets
each: about 3x slower than this; bench/RESULTS.md). Receivers parse it as the
generated classes do; tests/test_otlp_encode.py compares it field by field,
and the hand-written resource byte for byte.

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
import struct
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from bridge import speedups
from bridge.model import Attrs, Batch, HistogramValue, Kind, Metric, Series, SummaryValue, Temporality
from bridge.protowire import I64, LEN, VARINT, field, field_head, string_fields, varint
from bridge.series import memo_fill, new_slot
from bridge.sinks.otlp.config import AttributeValue

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
    from opentelemetry.proto.metrics.v1 import metrics_pb2

SCOPE_NAME = "metrics-bridge"
# The enums of opentelemetry/proto/metrics/v1/metrics.proto, as numbers: their generated module is not loaded here.
NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
AGGREGATION_TEMPORALITY = {
    Temporality.CUMULATIVE: 2,  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    Temporality.DELTA: 1,  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
}

# Wire format (protobuf encoding guide): a tag is (field number << 3) | wire type; LEN fields are
# tag, varint length, bytes. Field numbers from opentelemetry/proto/metrics/v1/metrics.proto.
#: NumberDataPoint: start_time_unix_nano = 2, time_unix_nano = 3 (fixed64), as_double = 4 (double)
_NUMBER_TIMES_AND_VALUE = struct.Struct("<BQBQBd")
_NUMBER_FIXED_SIZE = _NUMBER_TIMES_AND_VALUE.size
_NUMBER_TAGS = (2 << 3 | 1, 3 << 3 | 1, 4 << 3 | 1)
_NO_RECORDED_VALUE_FLAG = bytes((8 << 3 | VARINT, NO_RECORDED_VALUE))  # NumberDataPoint.flags = 8
_INT64_RANGE = range(-(2**63), 2**63)  # of AnyValue.int_value


def serialize_resource(attributes: Iterable[tuple[str, AttributeValue]]) -> bytes:
    """A serialized Resource{attributes = 1: repeated KeyValue{key = 1, value = 2: AnyValue}}.

    By hand, so that no request loads protobuf; the same bytes as the generated classes write
    (tests/test_otlp_encode.py), an empty key left out as they leave it out.
    """
    return b"".join(field(1, string_fields((1, key)) + field(2, _any_value(value))) for key, value in attributes)


def _any_value(value: AttributeValue) -> bytes:
    """AnyValue's oneof: string_value = 1, bool_value = 2, int_value = 3 (int64), double_value = 4, array_value = 5
    (ArrayValue{values = 1: repeated AnyValue}). A oneof member is written even when "", 0 or False."""
    if isinstance(value, bool):  # before int: a bool is an int
        return bytes((2 << 3 | VARINT, value))
    if isinstance(value, int):
        if value not in _INT64_RANGE:  # protobuf refuses it too, rather than send it wrapped around
            raise ValueError(f"resource attribute value {value} is out of the int64 range")
        return bytes((3 << 3 | VARINT,)) + varint(value)
    if isinstance(value, float):
        return struct.pack("<Bd", 4 << 3 | I64, value)
    if isinstance(value, str):
        return field(1, value.encode())
    return field(5, b"".join(field(1, _any_value(item)) for item in value))


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

    def __init__(self, resource: Mapping[str, AttributeValue], *, scope_version: str) -> None:
        self.resource = dict(resource)
        self._scope = field(1, string_fields((1, SCOPE_NAME), (2, scope_version)))  # ScopeMetrics.scope = 1
        self._resources: dict[Attrs, bytes] = {}  # one per source resource: as bounded as the config
        # memo slots for each series' encoded attributes, one per data point type (their field numbers differ)
        self._number_slot = new_slot()
        self._histogram_slot = new_slot()
        self._summary_slot = new_slot()

    def encode(self, batch: Batch) -> bytes:
        """A serialized ExportMetricsServiceRequest holding the batch (one ResourceMetrics, one ScopeMetrics)."""
        metrics = [field(2, self._metric(metric)) for metric in batch.metrics if metric.values]  # ScopeMetrics.metrics
        # One join of the whole request: nesting with `field` would copy every metric's bytes once per level
        # (at 100k points, 10 MB a copy, two alive at a time).
        scope_size = len(self._scope) + sum(map(len, metrics))
        scope_head = field_head(2, scope_size)  # ResourceMetrics.scope_metrics = 2
        resource = field(1, self._resource_bytes(batch.resource))  # ResourceMetrics.resource = 1
        request_head = field_head(1, len(resource) + len(scope_head) + scope_size)  # .resource_metrics = 1
        return b"".join([request_head, resource, scope_head, self._scope, *metrics])

    def _resource_bytes(self, batch_resource: Attrs) -> bytes:
        """The sink's resource with the batch's attributes over it (the batch knows its source and organization)."""
        encoded = self._resources.get(batch_resource)
        if encoded is None:
            merged = {**self.resource, **dict(batch_resource)}
            merged.setdefault("service.instance.id", merged.get("bridge.source", ""))
            encoded = serialize_resource(merged.items())
            self._resources[batch_resource] = encoded
        return encoded

    def _metric(self, metric: Metric) -> bytes:
        """One serialized Metric: name = 1, description = 2, unit = 3, then its data."""
        head = string_fields((1, metric.name), (2, metric.description), (3, metric.unit))
        if metric.kind is Kind.GAUGE:
            return head + field(5, self._number_points(metric))  # Metric.gauge = 5, Gauge.data_points = 1
        if metric.kind is Kind.COUNTER:
            temporality = AGGREGATION_TEMPORALITY[metric.temporality or Temporality.CUMULATIVE]
            flags = bytes((2 << 3 | VARINT, temporality))  # Sum.aggregation_temporality = 2
            if metric.monotonic:
                flags += bytes((3 << 3 | VARINT, 1))  # Sum.is_monotonic = 3
            return head + field(7, self._number_points(metric) + flags)  # Metric.sum = 7
        from opentelemetry.proto.metrics.v1 import metrics_pb2  # here: with protobuf about 3 MB, for rare kinds

        encoded = metrics_pb2.Metric()
        if metric.kind is Kind.HISTOGRAM:
            self._histogram(metric, encoded)
        else:
            self._summary(metric, encoded)
        return head + encoded.SerializeToString()

    def _number_points(self, metric: Metric) -> bytes:
        """Every point as a framed `data_points` (= 1) field of Gauge or Sum.

        With the C extension (bridge/speedups.py), a metric whose every point is the plain case (its head
        framed, a float that is not NaN) is written in C, the same bytes (tests/test_speedups.py).
        """
        slot = self._number_slot
        if speedups.native is not None:
            values = cast(list[float], metric.values)  # a gauge's or sum's values are floats
            written = speedups.native.number_points(metric.series, values, metric.starts, metric.ends, slot)
            if written is None and _frame_new(metric.series, slot):  # series seen first: framed, then in C
                written = speedups.native.number_points(metric.series, values, metric.starts, metric.ends, slot)
            if written is not None:
                return written
        _frame_new(metric.series, slot)
        pack = _NUMBER_TIMES_AND_VALUE.pack
        start_tag, time_tag, value_tag = _NUMBER_TAGS
        parts = []
        for series, value, start_ns, end_ns in zip(
            metric.series, metric.values, metric.starts, metric.ends, strict=True
        ):
            framed = series.memo[slot]
            fixed = pack(start_tag, start_ns, time_tag, end_ns, value_tag, value)
            if value == value:
                parts.append(framed)
                parts.append(fixed)
            else:  # NaN: nothing recorded; the point is longer by its flags field
                attributes = _attributes(series.attributes, 7)
                parts.append(field(1, attributes + fixed + _NO_RECORDED_VALUE_FLAG))
        return b"".join(parts)

    def _histogram(self, metric: Metric, encoded: metrics_pb2.Metric) -> None:
        temporality = AGGREGATION_TEMPORALITY[metric.temporality or Temporality.CUMULATIVE]
        encoded.histogram.aggregation_temporality = cast("metrics_pb2.AggregationTemporality.ValueType", temporality)
        points = _recorded_points(
            metric, encoded.histogram.data_points, self._histogram_slot, 9, HistogramValue
        )  # HistogramDataPoint.attributes = 9
        for value, data_point in points:
            bounds, counts = explicit_buckets(value)
            data_point.count = round(value.count)
            data_point.sum = value.sum
            data_point.explicit_bounds.extend(bounds)
            data_point.bucket_counts.extend(counts)

    def _summary(self, metric: Metric, encoded: metrics_pb2.Metric) -> None:
        points = _recorded_points(
            metric, encoded.summary.data_points, self._summary_slot, 7, SummaryValue
        )  # SummaryDataPoint.attributes = 7
        for value, data_point in points:
            data_point.count = round(value.count)
            data_point.sum = value.sum
            for quantile, quantile_value in value.quantiles:
                data_point.quantile_values.add(quantile=quantile, value=quantile_value)


def _attributes(attributes: Attrs, field_number: int) -> bytes:
    """The repeated KeyValue `attributes` field of a data point type, serialized."""
    return b"".join([_key_value(field_number, key, value) for key, value in attributes])


@lru_cache(maxsize=65_536)  # label pairs recur across series (an endpoint in every family)
def _key_value(field_number: int, key: str, value: str) -> bytes:
    """One framed KeyValue{key = 1, value = 2: AnyValue{string_value = 1}}; an empty key is left out as protobuf
    does, an empty string value is kept (it is a oneof member)."""
    encoded_key = field(1, key.encode()) if key else b""
    return field(field_number, encoded_key + field(2, field(1, value.encode())))


def _frame_new(series: list[Series], slot: int) -> bool:
    """Frame the point head of each series that has none yet; whether there was one."""
    if len(_FRAMED) > _FRAMED_LIMIT:
        _FRAMED.clear()
    return memo_fill(series, slot, _FRAMED, _framed_number_point)


#: _frame_new's framings by attributes: one object for every series with these attributes (an endpoint's in every
#: family), made once per label set; shared rather than made per series: at 100k series in families of 1,000 label
#: sets, 10 MB less.
_FRAMED: dict[Attrs, bytes] = {}
_FRAMED_LIMIT = 65_536


def _framed_number_point(attributes: Attrs) -> bytes:
    """Tag and length of a NumberDataPoint with these attributes and no flags, then its attributes field."""
    encoded = _attributes(attributes, 7)  # NumberDataPoint.attributes = 7
    return varint(1 << 3 | LEN) + varint(len(encoded) + _NUMBER_FIXED_SIZE) + encoded


_Recorded = TypeVar("_Recorded", HistogramValue, SummaryValue)


def _recorded_points(
    metric: Metric,
    data_points: RepeatedCompositeFieldContainer[Any],
    slot: int,
    attributes_field: int,
    value_type: type[_Recorded],
) -> Iterator[tuple[_Recorded, Any]]:
    """Add a data point per point (attributes, times); yield those with a recorded value to fill in.

    A count of NaN means nothing was recorded: the point goes out flagged NO_RECORDED_VALUE.
    `value_type` is for the type checker: the metric's kind says what its points' values are.
    """
    for series, raw, start_ns, end_ns in zip(metric.series, metric.values, metric.starts, metric.ends, strict=True):
        value: _Recorded = raw  # type: ignore[assignment]  # the value follows the metric's kind
        encoded = series.memo.get(slot)
        if encoded is None:
            encoded = series.memo[slot] = _attributes(series.attributes, attributes_field)
        data_point = data_points.add()
        data_point.MergeFromString(encoded)
        data_point.start_time_unix_nano = start_ns
        data_point.time_unix_nano = end_ns
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
        taken = 0
        while taken < len(metric):
            part = metric.slice(taken, taken + room)
            current.append(part)
            taken += len(part)
            room -= len(part)
            if room == 0:
                chunks.append(batch.with_metrics(current))
                current, room = [], max_points
    if current:
        chunks.append(batch.with_metrics(current))
    return chunks
