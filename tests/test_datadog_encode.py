"""The pure encoder: Datadog's name and tag rules, bodies the official models accept, size limits."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from datadog_api_client.v1.model.service_checks import ServiceChecks
from datadog_api_client.v2.model.metric_payload import MetricPayload
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.sinks.datadog import encode
from tests.receivers.datadog_intake import ModelMismatch, deserialize_strict

CODECS = ("gzip", "deflate", "zstd", "none")
NAME_RULE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,199}")
TAG_RULE = re.compile(r"[\w\-:./]{1,200}")

texts = st.text(max_size=300)
finite = st.floats(allow_nan=False, allow_infinity=False)


@given(texts)
def test_metric_names_follow_datadogs_rules(name: str) -> None:
    assert NAME_RULE.fullmatch(encode.metric_name(name))


@given(texts, texts)
def test_tags_follow_datadogs_rules(key: str, value: str) -> None:
    tag = encode.tag(key, value)
    if not value:
        assert tag is None
    else:
        assert tag is not None and TAG_RULE.fullmatch(tag) and tag == tag.lower()


def test_well_formed_names_and_tags_pass_unchanged() -> None:
    assert encode.metric_name("cerebras.ttft_seconds") == "cerebras.ttft_seconds"
    assert encode.tag("endpoint", "acme-llama-3.3-70b") == "endpoint:acme-llama-3.3-70b"
    assert encode.sanitize_tag("env:prod/eu-1") == "env:prod/eu-1"


series_strategy = st.tuples(
    texts,
    st.sampled_from([encode.COUNT, encode.GAUGE]),
    st.sampled_from(["", "second", "request", "token"]),
    st.lists(st.tuples(texts, texts), max_size=5),
    st.none() | st.text(min_size=1, max_size=20),
    st.integers(0, 2**32),
    finite,
    st.integers(1, 3600),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(series_strategy, min_size=1, max_size=8))
def test_every_body_deserializes_into_the_official_model(series: list[tuple[Any, ...]]) -> None:
    fragments = []
    for name, metric_type, unit, attrs, host, timestamp, value, interval in series:
        tags = [t for t in (encode.tag(k, v) for k, v in attrs) if t]
        head = encode.series_head(encode.metric_name(name), metric_type, unit, tags, host)
        count_interval = interval if metric_type == encode.COUNT else None
        fragments.append(encode.series_fragment(head, timestamp, value, count_interval))
    [body] = encode.pack_series(fragments, "none").bodies
    decoded = json.loads(body.body)
    payload = deserialize_strict(decoded, MetricPayload)
    assert len(payload.series) == len(series)
    for sent, (_, metric_type, _, _, _, timestamp, value, interval) in zip(decoded["series"], series, strict=True):
        assert sent["points"] == [{"timestamp": timestamp, "value": value}]
        assert sent["type"] == metric_type and sent.get("interval") == (interval if metric_type == 1 else None)


@settings(max_examples=200, deadline=None)
@given(series_strategy)
def test_a_head_written_by_hand_is_the_json_of_its_fields(series: tuple[Any, ...]) -> None:
    name, metric_type, unit, attrs, host, *_ = series
    tags = [t for t in (encode.tag(k, v) for k, v in attrs) if t]
    fields: dict[str, Any] = {"metric": name, "type": metric_type}
    if unit:
        fields["unit"] = unit
    if tags:
        fields["tags"] = tags
    if host:
        fields["resources"] = [{"name": host, "type": "host"}]
    prefix, tail = encode.series_head(name, metric_type, unit, tags, host)
    assert prefix + tail == json.dumps(fields, separators=(",", ":"))[:-1] + ","


def test_the_strict_validator_rejects_what_datadog_would() -> None:
    good = {"metric": "a", "type": 1, "points": [{"timestamp": 1, "value": 1.0}]}
    deserialize_strict({"series": [good]}, MetricPayload)
    for bad in (
        {**good, "type": 7},
        {**good, "points": [{"timestamp": 1, "value": "1"}]},
        {**good, "points": [{"timestamp": 1.5, "value": 1.0}]},
        {**good, "tags": "a:b"},
        {**good, "interval_s": 60},
        {"type": 1, "points": []},
    ):
        with pytest.raises(ModelMismatch):
            deserialize_strict({"series": [bad]}, MetricPayload)


def fragments(count: int) -> list[str]:
    head = encode.series_head("m", encode.GAUGE, "", ["endpoint:e"], None)
    return [encode.series_fragment(head, 1_800_000_000 + i, float(i), None) for i in range(count)]


@pytest.mark.parametrize("codec", CODECS)
def test_packing_respects_both_limits_and_keeps_every_series_in_order(codec: str) -> None:
    limits = encode.Limits(max_compressed=400, max_uncompressed=1_500)
    packed = encode.pack_series(fragments(200), codec, limits=limits)
    assert packed.oversized == 0 and len(packed.bodies) > 1
    values = []
    for body in packed.bodies:
        raw = encode.decompress(body.body, codec)
        assert len(body.body) <= limits.max_compressed and len(raw) <= limits.max_uncompressed
        series = json.loads(raw)["series"]
        assert len(series) == body.series
        values += [s["points"][0]["value"] for s in series]
    assert values == [float(i) for i in range(200)]


def test_a_series_over_a_limit_on_its_own_is_counted_not_sent() -> None:
    wide_head = encode.series_head("m", encode.GAUGE, "", ["t:" + "x" * 190] * 20, None)
    wide = encode.series_fragment(wide_head, 1, 1.0, None)
    packed = encode.pack_series([wide, *fragments(3)], "gzip", limits=encode.Limits(max_uncompressed=1_000))
    assert packed.oversized == 1
    assert sum(b.series for b in packed.bodies) == 3


@pytest.mark.parametrize("codec", CODECS)
def test_a_compressed_body_holds_no_more_memory_than_its_length(codec: str) -> None:
    """A body waits in the delivery queue, bounded by `max_bytes` on its length: its allocation must be that size
    (zstandard's one-shot compress allocates the input's size and shortens only the length)."""
    import tracemalloc

    data = "".join(fragments(8_000)).encode()  # about 0.8 MB, compresses well
    tracemalloc.start()
    try:
        body = encode.compress(data, codec)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < len(body) + 4096, f"{codec}: {held} bytes held for a {len(body)}-byte body"


@pytest.mark.parametrize("codec", CODECS)
def test_splitting_a_body_keeps_its_points_bit_for_bit(codec: str) -> None:
    [body] = encode.pack_series(fragments(5), codec).bodies
    halves = encode.split_series_body(body.body, codec)
    assert halves is not None and [h.series for h in halves] == [2, 3]
    original = encode.decode_body(body.body, codec)["series"]
    assert [s for h in halves for s in encode.decode_body(h.body, codec)["series"]] == original
    [single] = encode.pack_series(fragments(1), codec).bodies
    assert encode.split_series_body(single.body, codec) is None


def test_service_check_bodies_fit_the_official_model() -> None:
    checks = [
        encode.service_check("cerebras.inference_endpoint.status", status, 1_800_000_000, ["endpoint:e"], None)
        for status in (0, 2, 3)
    ]
    decoded = json.loads(encode.service_checks_body(checks))
    assert len(deserialize_strict(decoded, ServiceChecks).value) == 3
    assert decoded[0]["host_name"] == ""
