"""The hand-written remote write encoder against message classes built from the real prompb .proto files.

Every request is parsed with tests/remote_write_proto.py's WriteRequest (the generated-code
path every receiver's decoder matches) and compared with what a reference request, built
with those classes, holds: labels, values to the bit (NaN, -0.0, huge), timestamps.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from bridge.model import Batch, HistogramValue, Kind, Metric, Point, SummaryValue, Temporality
from bridge.sinks.remote_write.encode import (
    NS_PER_MS,
    STALE_NAN,
    MetricType,
    RequestEncoder,
    decode,
    encode_labels,
    encode_metadata,
    format_float,
    label_name,
    sample_head,
    stale_marker,
    timestamp_tail,
    write_request,
)
from tests.remote_write_proto import MetricMetadata, WriteRequest

RESOURCE = (("bridge.source", "cb"), ("cerebras.organization_id", "org_1"))
LABEL_TEXT = st.text(min_size=1, max_size=12)  # any unicode but lone surrogates, which UTF-8 cannot carry
LABEL_NAMES = st.from_regex(r"[a-z][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(lambda n: n not in ("job", "instance"))
VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324])
TIMESTAMPS_MS = st.integers(min_value=-(2**62), max_value=2**62)


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def parsed(body: bytes) -> Any:
    request = WriteRequest()
    request.ParseFromString(body)
    return request


def contents(request: Any) -> list[tuple[list[tuple[str, str]], list[tuple[bytes, int]]]]:
    """A request's series: labels, and samples as (value bits, timestamp): NaN compared exactly, not as unequal."""
    return [
        ([(label.name, label.value) for label in series.labels], [(bits(s.value), s.timestamp) for s in series.samples])
        for series in request.timeseries
    ]


def hand_encoded(series: list[tuple[list[tuple[str, str]], float, int]]) -> bytes:
    parts: list[bytes] = []
    for labels, value, timestamp in series:
        tail = timestamp_tail(timestamp)
        parts += (sample_head(encode_labels(labels), len(tail)), bits(value), tail)
    return write_request(parts)


@given(st.lists(st.tuples(st.lists(st.tuples(LABEL_TEXT, LABEL_TEXT), max_size=6), VALUES, TIMESTAMPS_MS), max_size=8))
@settings(max_examples=300, deadline=None)
def test_samples_decode_to_what_the_generated_classes_hold(series: list[tuple[Any, float, int]]) -> None:
    reference = WriteRequest()
    for labels, value, timestamp in series:
        entry = reference.timeseries.add()
        for name, label_value in labels:
            entry.labels.add(name=name, value=label_value)
        entry.samples.add(value=value, timestamp=timestamp)
    body = hand_encoded(series)
    assert contents(parsed(body)) == contents(parsed(reference.SerializeToString()))
    decoded, _ = decode(body)  # the dry run's reader, on the same bytes
    assert [(s.labels, [(bits(v), t) for v, t in s.samples]) for s in decoded] == contents(reference)


@given(st.sampled_from(list(MetricType)), LABEL_TEXT, st.text(max_size=40), st.sampled_from(["", "s", "{request}"]))
def test_metadata_decodes_to_what_the_generated_classes_hold(
    metric_type: MetricType, family: str, help_text: str, unit: str
) -> None:
    reference = WriteRequest(
        metadata=[MetricMetadata(type=int(metric_type), metric_family_name=family, help=help_text, unit=unit)]
    )
    assert parsed(encode_metadata(metric_type, family, help_text, unit)) == reference
    assert decode(encode_metadata(metric_type, family, help_text, unit))[1] == [
        (int(metric_type), family, help_text, unit)
    ]


def test_the_staleness_marker_keeps_prometheus_bit_pattern() -> None:
    labels = encode_labels([("__name__", "up")])
    request = parsed(write_request(stale_marker(labels, timestamp_tail(1_800_000_000_000))))
    value = request.timeseries[0].samples[0].value
    assert math.isnan(value) and bits(value) == STALE_NAN == struct.pack("<Q", 0x7FF0000000000002)


def gauge_batch(points: list[tuple[dict[str, str], float, int]]) -> Batch:
    metric = Metric(
        "temperature_celsius",
        Kind.GAUGE,
        [Point(tuple(sorted(a.items())), v, (ms - 60_000) * NS_PER_MS, ms * NS_PER_MS) for a, v, ms in points],
        unit="Cel",
    )
    return Batch("cb", RESOURCE, 0, 0, [metric])


@given(
    st.lists(
        st.tuples(st.dictionaries(LABEL_NAMES, LABEL_TEXT, max_size=4), VALUES, TIMESTAMPS_MS),
        max_size=6,
        unique_by=lambda p: tuple(sorted(p[0].items())),
    )
)
@settings(max_examples=200, deadline=None)
def test_the_encoder_writes_each_point_with_its_labels_value_and_window_end(
    points: list[tuple[dict[str, str], float, int]],
) -> None:
    encoded = RequestEncoder(["cerebras.organization_id"], {"env": "prod"}).encode(gauge_batch(points))
    expected = []
    for attributes, value, ms in points:
        labels = {**attributes, "__name__": "temperature_celsius", "job": "cb", "instance": "org_1", "env": "prod"}
        expected.append((sorted(labels.items()), [(bits(value), ms)]))
    assert contents(parsed(write_request(encoded.parts))) == expected
    assert len(encoded.parts) == 3 * len(points) and len(encoded.labels) == len(points)


def test_cached_heads_are_reused_and_still_right_when_the_timestamp_grows() -> None:
    """The memo holds each series' framed head for one timestamp size; another size gets a fresh frame."""
    encoder = RequestEncoder([], {})
    first = encoder.encode(gauge_batch([({"a": "1"}, 1.0, 1_800_000_000_000)]))
    second = encoder.encode(gauge_batch([({"a": "1"}, 2.0, 1_800_000_060_000)]))
    assert second.parts[0] is first.parts[0]  # the same bytes object: encoded once
    far = encoder.encode(gauge_batch([({"a": "1"}, 3.0, 2**60)]))
    assert contents(parsed(write_request(far.parts)))[0][1] == [(bits(3.0), 2**60)]


def test_label_names_are_made_valid_and_target_labels_win() -> None:
    batch = gauge_batch(
        [({"http.code": "500", "http_code": "x", "9lives": "y", "__secret": "z", "job": "j", "e": ""}, 1, 0)]
    )
    encoded = RequestEncoder(["cerebras.organization_id"], {"instance": "ignored", "region": "eu"}).encode(batch)
    labels = dict(contents(parsed(write_request(encoded.parts)))[0][0])
    assert labels == {
        "__name__": "temperature_celsius",
        "http_code": "500;x",  # two attributes that became one name, joined as the OTLP translator does
        "key_9lives": "y",
        "key__secret": "z",
        "exported_job": "j",
        "job": "cb",
        "instance": "org_1",  # external labels never replace a series' own
        "region": "eu",
    }
    assert label_name("ok_name") == "ok_name"


def test_histograms_and_summaries_become_classic_series() -> None:
    start, end = 0, 60_000 * NS_PER_MS
    histogram = HistogramValue(4.0, 2.5, ((0.005, 1.0), (1.0, 3.0), (math.inf, 4.0)))
    summary = SummaryValue(4.0, 2.5, ((0.5, 0.3), (0.99, 1.2)))
    batch = Batch("cb", RESOURCE, start, end, [
        Metric("latency", Kind.HISTOGRAM, [Point((), histogram, start, end)], Temporality.CUMULATIVE, "s"),
        Metric("rpc_duration_seconds", Kind.SUMMARY, [Point((), summary, start, end)], Temporality.CUMULATIVE, "s"),
    ])  # fmt: skip
    encoded = RequestEncoder([], {}).encode(batch)
    got = {
        (dict(labels)["__name__"], dict(labels).get("le") or dict(labels).get("quantile")): struct.unpack(
            "<d", s[0][0]
        )[0]
        for labels, s in contents(parsed(write_request(encoded.parts)))
    }
    assert got == {
        ("latency_seconds_bucket", "0.005"): 1.0,
        ("latency_seconds_bucket", "1"): 3.0,
        ("latency_seconds_bucket", "+Inf"): 4.0,
        ("latency_seconds_sum", None): 2.5,
        ("latency_seconds_count", None): 4.0,
        ("rpc_duration_seconds", "0.5"): 0.3,
        ("rpc_duration_seconds", "0.99"): 1.2,
        ("rpc_duration_seconds_sum", None): 2.5,
        ("rpc_duration_seconds_count", None): 4.0,
    }
    assert set(encoded.metadata) == {"latency_seconds", "rpc_duration_seconds"}


def test_bounds_are_written_as_go_writes_them() -> None:
    assert [format_float(v) for v in (0.005, 1.0, 2.5, 1e-05, 1e21, math.inf, -math.inf)] == [
        "0.005", "1", "2.5", "0.00001", "1000000000000000000000", "+Inf", "-Inf",
    ]  # fmt: skip
