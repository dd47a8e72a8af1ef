"""The encoder on its own: the same numbers as the SDK's encoder, plus what the SDK path loses."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.export import Metric as SDKMetric
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from bridge.model import NS_PER_S, Batch, HistogramValue, Kind, Metric, Point, SummaryValue, Temporality
from bridge.sinks.otlp.config import AttributeValue
from bridge.sinks.otlp.encode import (
    AGGREGATION_TEMPORALITY,
    NO_RECORDED_VALUE,
    RequestEncoder,
    explicit_buckets,
    serialize_resource,
    split_batch,
)

START, END = 1_800_000_000 * NS_PER_S, 1_800_000_060 * NS_PER_S
RESOURCE = {"service.name": "metrics-bridge"}


def encoder() -> RequestEncoder:
    return RequestEncoder(RESOURCE, scope_version="1.2.3")


def batch(*metrics: Metric) -> Batch:
    return Batch("src", (("bridge.source", "src"),), START, END, list(metrics))


def decoded(body: bytes) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(body)


def only_metric(metric: Metric) -> metrics_pb2.Metric:
    return decoded(encoder().encode(batch(metric))).resource_metrics[0].scope_metrics[0].metrics[0]


def any_value(value: AttributeValue) -> AnyValue:
    """The generated classes' AnyValue for an attribute value: the reference for the bytes written by hand."""
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


def test_sums_encode_exactly_as_the_sdk_encoder_does() -> None:
    points = [Point((("endpoint", f"ep-{i}"), ("http_code", "503")), float(i), START, END) for i in range(5)]
    ours = only_metric(Metric("requests_failure_total", Kind.COUNTER, points, Temporality.CUMULATIVE, "{request}", "d"))
    sdk_points = [
        NumberDataPoint(dict(p.attributes), p.start_ns, p.end_ns, p.value)  # type: ignore[arg-type]
        for p in points
    ]
    data = Sum(sdk_points, AggregationTemporality.CUMULATIVE, is_monotonic=True)
    sdk_metric = SDKMetric("requests_failure_total", "d", "{request}", data)
    scope = ScopeMetrics(InstrumentationScope("metrics-bridge", "1.2.3"), [sdk_metric], "")
    sdk = encode_metrics(MetricsData([ResourceMetrics(Resource(RESOURCE), [scope], "")]))
    assert ours == sdk.resource_metrics[0].scope_metrics[0].metrics[0]


def test_gauges_keep_their_window_start_which_the_sdk_path_drops() -> None:
    point = only_metric(Metric("ttft_seconds", Kind.GAUGE, [Point((), 0.2, START, END)], unit="s")).gauge.data_points[0]
    assert (point.start_time_unix_nano, point.time_unix_nano) == (START, END)


def test_nan_sets_no_recorded_value() -> None:
    nan = Point((), math.nan, START, END)
    number = only_metric(Metric("cache_rate", Kind.GAUGE, [nan])).gauge.data_points[0]
    assert math.isnan(number.as_double) and number.flags == metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    empty = Point((), HistogramValue(math.nan, math.nan, ()), START, END)
    histogram = only_metric(Metric("h", Kind.HISTOGRAM, [empty], Temporality.CUMULATIVE)).histogram.data_points[0]
    assert histogram.flags == metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK and histogram.count == 0


def test_the_enum_numbers_written_without_the_generated_module_are_its_values() -> None:
    assert NO_RECORDED_VALUE == metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    assert AGGREGATION_TEMPORALITY == {
        Temporality.CUMULATIVE: metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
        Temporality.DELTA: metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
    }


def test_histograms_carry_their_temporality_and_buckets() -> None:
    value = HistogramValue(5, 2.5, ((0.1, 2), (1.0, 4), (math.inf, 5)))
    for temporality in Temporality:
        histogram = only_metric(Metric("h", Kind.HISTOGRAM, [Point((), value, START, END)], temporality)).histogram
        assert histogram.aggregation_temporality == AGGREGATION_TEMPORALITY[temporality]
        [data_point] = histogram.data_points
        assert (list(data_point.explicit_bounds), list(data_point.bucket_counts)) == ([0.1, 1.0], [2, 2, 1])


def test_summaries_carry_count_sum_and_quantiles() -> None:
    value = SummaryValue(10, 2.5, ((0.5, 0.2), (0.9, 0.4)))
    point = only_metric(Metric("rpc_seconds", Kind.SUMMARY, [Point((("m", "get"),), value, START, END)])).summary
    [data_point] = point.data_points
    assert (data_point.count, data_point.sum, data_point.start_time_unix_nano) == (10, 2.5, START)
    assert [(q.quantile, q.value) for q in data_point.quantile_values] == [(0.5, 0.2), (0.9, 0.4)]
    assert data_point.attributes[0].key == "m"


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=0, max_size=12))
def test_explicit_buckets_partition_the_count(increments: list[int]) -> None:
    cumulative, buckets = 0, []
    for index, increment in enumerate(increments):
        cumulative += increment
        buckets.append((float(index), float(cumulative)))
    overflow = 7
    value = HistogramValue(cumulative + overflow, 1.0, (*buckets, (math.inf, cumulative + overflow)))
    bounds, counts = explicit_buckets(value)
    assert bounds == [le for le, _ in buckets]
    assert counts == [*increments, overflow] and sum(counts) == value.count


def test_encoding_is_deterministic_so_retries_resend_the_same_points() -> None:
    metric = Metric("requests_count_total", Kind.COUNTER, [Point((("endpoint", "a"),), 1.0, START, END)],
                    Temporality.CUMULATIVE)  # fmt: skip
    same = encoder()
    assert same.encode(batch(metric)) == same.encode(batch(metric))


_label = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**53), 2**53).map(float))
_scalar_attribute = st.one_of(
    _label,
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 1, -(2**63), 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),  # NaNs of any sign and payload: compared as bytes
)
_attribute = st.one_of(
    _scalar_attribute, st.lists(_scalar_attribute, max_size=4), st.lists(_scalar_attribute, max_size=3).map(tuple)
)


@settings(deadline=None)  # a shared machine: an example may take longer than 200 ms
@given(st.dictionaries(_label, _attribute, max_size=6))
def test_the_hand_written_resource_is_the_generated_classes_bytes(attributes: dict[str, AttributeValue]) -> None:
    """Byte for byte: bool before int, every oneof member written even when empty, zero or False; no empty key."""
    expected = resource_pb2.Resource(attributes=key_values(attributes.items())).SerializeToString()
    assert serialize_resource(attributes.items()) == expected


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, [1, 2**64]])
def test_a_resource_int_beyond_int64_is_refused_as_protobuf_refuses_it(value: AttributeValue) -> None:
    with pytest.raises(ValueError):
        resource_pb2.Resource(attributes=key_values([("big", value)]))
    with pytest.raises(ValueError, match="int64"):
        serialize_resource([("big", value)])


@given(
    st.lists(
        st.tuples(st.dictionaries(_label, _label, max_size=4), _number, st.integers(0, 2**64 - 1), st.booleans()),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from([Kind.GAUGE, Kind.COUNTER]),
    st.booleans(),
    _label,
    _label,
)
def test_hand_written_number_points_parse_as_the_generated_classes_build_them(
    points: list[tuple[dict[str, str], float, int, bool]],
    kind: Kind,
    monotonic: bool,
    description: str,
    unit: str,
) -> None:
    """The wire bytes written by hand decode to exactly the message the generated classes build for the same points."""
    model_points = [Point(tuple(sorted(labels.items())), value, time // 2, time) for labels, value, time, _ in points]
    temporality = Temporality.DELTA if monotonic else Temporality.CUMULATIVE
    metric = Metric("m", kind, model_points, temporality, unit, description, monotonic)
    ours = only_metric(metric)
    expected = metrics_pb2.Metric(name="m", description=description, unit=unit)
    if kind is Kind.GAUGE:
        data_points = expected.gauge.data_points
    else:
        expected.sum.aggregation_temporality = (
            metrics_pb2.AGGREGATION_TEMPORALITY_DELTA if monotonic else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        )
        expected.sum.is_monotonic = monotonic
        data_points = expected.sum.data_points
    for point in model_points:
        data_point = data_points.add(attributes=key_values(point.attributes))
        data_point.start_time_unix_nano, data_point.time_unix_nano = point.start_ns, point.end_ns
        data_point.as_double = point.value  # type: ignore[assignment]
        if math.isnan(point.value):  # type: ignore[arg-type]
            data_point.flags = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    # compared as bytes of the generated classes: NaN != NaN would fail a message comparison
    assert ours.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


def test_a_series_identity_is_encoded_once_and_kept_on_its_series() -> None:
    metric = Metric("g", Kind.GAUGE, [Point((("endpoint", "kept"),), 1.0, START, END)])
    same = encoder()
    same.encode(batch(metric))
    [series] = metric.series
    [framed] = [memo for memo in series.memo.values() if isinstance(memo, bytes)]
    again = Metric("g", Kind.GAUGE, [Point((("endpoint", "kept"),), 2.0, START, END)])
    assert again.series[0] is series  # interned: the same entry
    same.encode(batch(again))
    assert [memo for memo in series.memo.values() if isinstance(memo, bytes)] == [framed]


@given(st.lists(st.integers(min_value=0, max_value=7), max_size=8), st.integers(min_value=1, max_value=5))
def test_split_batch_keeps_every_point_in_order(sizes: list[int], max_points: int) -> None:
    metrics = [
        Metric(f"m{i}", Kind.GAUGE, [Point((("i", str(j)),), float(j), START, END) for j in range(n)])
        for i, n in enumerate(sizes)
    ]
    chunks = split_batch(batch(*metrics), max_points)
    flattened = [(m.name, p.value) for chunk in chunks for m, p in chunk.iter_points()]
    assert flattened == [(m.name, p.value) for m, p in batch(*metrics).iter_points()]
    assert all(0 < chunk.point_count() <= max_points for chunk in chunks)
