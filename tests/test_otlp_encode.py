"""The encoder on its own: the same numbers as the SDK's encoder, plus what the SDK path loses."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.proto.metrics.v1 import metrics_pb2
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
from bridge.sinks.otlp.encode import AttributeCache, RequestEncoder, explicit_buckets, split_batch

START, END = 1_800_000_000 * NS_PER_S, 1_800_000_060 * NS_PER_S
RESOURCE = {"service.name": "metrics-bridge"}


def encoder() -> RequestEncoder:
    return RequestEncoder(RESOURCE, scope_version="1.2.3", cache_limit=100)


def batch(*metrics: Metric) -> Batch:
    return Batch("src", (("bridge.source", "src"),), START, END, list(metrics))


def only_metric(metric: Metric) -> metrics_pb2.Metric:
    return encoder().encode(batch(metric)).resource_metrics[0].scope_metrics[0].metrics[0]


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
    assert same.encode(batch(metric)).SerializeToString() == same.encode(batch(metric)).SerializeToString()


def test_attribute_cache_is_bounded_and_keeps_series_in_use() -> None:
    cache = AttributeCache(metrics_pb2.NumberDataPoint, limit=2)
    keep = (("endpoint", "steady"),)
    first = cache.get(keep)
    for i in range(10):
        cache.get((("endpoint", f"churn-{i}"),))
        assert cache.get(keep) is first  # promoted on use, never re-encoded
        assert len(cache) <= 4
    assert metrics_pb2.NumberDataPoint.FromString(first).attributes[0].value.string_value == "steady"


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
