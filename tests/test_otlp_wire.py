"""The `otlp` sink against real receivers on 127.0.0.1, over gRPC and HTTP: what arrives on the wire."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf.json_format import Parse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from bridge import __version__, telemetry
from bridge.clock import ManualClock
from bridge.context import Context
from bridge.delivery import SinkRunner
from bridge.model import NS_PER_S, Batch, HistogramValue, Kind, Metric, Point, SummaryValue, Temporality
from bridge.schema import DeliveryConfig
from bridge.sinks.base import PermanentError, RetryableError
from bridge.sinks.otlp import OTLPSink, OTLPSinkConfig
from tests.conftest import T0, run
from tests.receivers.otlp import (
    GrpcReceiver,
    HttpReceiver,
    accept,
    bad_request,
    partial_success,
    stall,
    throttled,
    unavailable,
)

PROTOCOLS = ["grpc", "http/protobuf"]
RESOURCE = (("bridge.source", "cerebras"), ("cerebras.organization_id", "org_test"))
T0_NS = int(T0) * NS_PER_S
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's OTEL_* variables must not leak into what these tests expect."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


def window(index: int) -> tuple[int, int]:
    start = T0_NS + index * 60 * NS_PER_S
    return start, start + 60 * NS_PER_S


def cerebras_batch(index: int, requests: float = 100.0, failures: float = 2.0) -> Batch:
    """One window as the Cerebras source emits it: delta counters, statistic gauges, an idle endpoint's NaN."""
    start, end = window(index)

    def points(*rows: tuple[dict[str, str], float]) -> list[Point]:
        return [Point(tuple(sorted(attrs.items())), value, start, end) for attrs, value in rows]

    def counter(name: str, unit: str, *rows: tuple[dict[str, str], float]) -> Metric:
        return Metric(name, Kind.COUNTER, points(*rows), Temporality.DELTA, unit, f"{name} in the window")

    def gauge(name: str, unit: str, *rows: tuple[dict[str, str], float]) -> Metric:
        return Metric(name, Kind.GAUGE, points(*rows), None, unit, f"{name} help")

    a, idle = {"endpoint": "ep-a"}, {"endpoint": "ep-idle"}
    return Batch("cerebras", RESOURCE, start, end, [
        counter("requests_count_total", "{request}", (a, requests), (idle, 0.0)),
        counter("requests_failure_total", "{request}", ({**a, "http_code": "503"}, failures)),
        counter("input_tokens_total", "{token}", (a, requests * 2000)),
        gauge("ttft_seconds", "s", ({**a, "statistic": "avg"}, 0.2), ({**a, "statistic": "p99"}, 0.9),
              ({**idle, "statistic": "p99"}, math.nan)),
        gauge("inference_endpoint_status", "", (a, 1.0), (idle, 1.0)),
        gauge("cache_rate", "1", (a, 0.4)),
    ])  # fmt: skip


def receiver_for(protocol: str, **options: Any) -> GrpcReceiver | HttpReceiver:
    return GrpcReceiver(**options) if protocol == "grpc" else HttpReceiver(**options)


def make_sink(protocol: str, endpoint: str, name: str = "otlp-test", **config: Any) -> OTLPSink:
    settings = OTLPSinkConfig(type="otlp", protocol=protocol, endpoint=endpoint, **config)
    return OTLPSink(name, settings, Context(clock=ManualClock(T0)))


async def send(sink: OTLPSink, *batches: Batch) -> None:
    for batch in batches:
        for payload in sink.prepare(batch):
            await sink.deliver(payload)


def points_of(metric: metrics_pb2.Metric) -> list[Any]:
    return list(getattr(metric, metric.WhichOneof("data")).data_points)


def attrs(point: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def by_endpoint(metric: metrics_pb2.Metric) -> dict[tuple[tuple[str, str], ...], Any]:
    return {tuple(sorted(attrs(p).items())): p for p in points_of(metric)}


def dropped(sink: str, reason: str) -> float:
    return telemetry.REGISTRY.get_sample_value("bridge_dropped_points_total", {"sink": sink, "reason": reason}) or 0.0


# ---------------------------------------------------------------- what arrives
def test_a_cerebras_window_arrives_with_its_meaning(protocol: str) -> None:
    async def go() -> GrpcReceiver | HttpReceiver:
        async with receiver_for(protocol) as receiver:
            sink = make_sink(protocol, receiver.endpoint)
            await sink.start()
            await send(sink, cerebras_batch(0))
            await sink.close()
        return receiver

    receiver = run(go())
    start, end = window(0)
    [request] = receiver.accepted
    [resource_metrics] = request.resource_metrics
    resource = {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes}
    assert resource["service.name"] == "metrics-bridge"
    assert resource["bridge.source"] == "cerebras"
    assert resource["cerebras.organization_id"] == "org_test"
    assert resource["service.instance.id"] == "cerebras", "stable across restarts: the source, not a random UUID"
    [scope_metrics] = resource_metrics.scope_metrics
    assert (scope_metrics.scope.name, scope_metrics.scope.version) == ("metrics-bridge", __version__)
    metrics = {m.name: m for m in scope_metrics.metrics}
    assert list(metrics) == [
        "requests_count_total", "requests_failure_total", "input_tokens_total",
        "ttft_seconds", "inference_endpoint_status", "cache_rate",
    ]  # fmt: skip
    assert {name: m.unit for name, m in metrics.items()} == {
        "requests_count_total": "{request}", "requests_failure_total": "{request}", "input_tokens_total": "{token}",
        "ttft_seconds": "s", "inference_endpoint_status": "", "cache_rate": "1",
    }  # fmt: skip
    assert metrics["ttft_seconds"].description == "ttft_seconds help"

    requests = metrics["requests_count_total"]
    assert requests.WhichOneof("data") == "sum"
    assert requests.sum.is_monotonic and requests.sum.aggregation_temporality == CUMULATIVE
    point = by_endpoint(requests)[(("endpoint", "ep-a"),)]
    assert (point.start_time_unix_nano, point.time_unix_nano, point.as_double) == (start, end, 100.0)
    failure = points_of(metrics["requests_failure_total"])[0]
    assert attrs(failure) == {"endpoint": "ep-a", "http_code": "503"}

    ttft = metrics["ttft_seconds"]
    assert ttft.WhichOneof("data") == "gauge"  # a statistic family stays a gauge, never an invented summary
    stats = by_endpoint(ttft)
    p99 = stats[(("endpoint", "ep-a"), ("statistic", "p99"))]
    assert (p99.start_time_unix_nano, p99.time_unix_nano, p99.as_double, p99.flags) == (start, end, 0.9, 0)
    idle = stats[(("endpoint", "ep-idle"), ("statistic", "p99"))]
    assert math.isnan(idle.as_double) and idle.flags == metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    # resource attributes live on the resource only
    every_point = [p for m in scope_metrics.metrics for p in points_of(m)]
    assert all("cerebras.organization_id" not in attrs(p) and "bridge.source" not in attrs(p) for p in every_point)


def test_cumulative_accumulates_across_windows_and_restarts_with_a_new_start(protocol: str) -> None:
    async def go() -> GrpcReceiver | HttpReceiver:
        async with receiver_for(protocol) as receiver:
            first = make_sink(protocol, receiver.endpoint)
            await first.start()
            await send(first, cerebras_batch(0, 100), cerebras_batch(1, 50), cerebras_batch(2, 25))
            await first.close()
            restarted = make_sink(protocol, receiver.endpoint)  # a new process: no memory of the running total
            await restarted.start()
            await send(restarted, cerebras_batch(3, 10), cerebras_batch(4, 5))
            await restarted.close()
        return receiver

    receiver = run(go())
    series = [by_endpoint(m)[(("endpoint", "ep-a"),)] for m in receiver.metrics("requests_count_total")]
    seen = [(p.start_time_unix_nano, p.time_unix_nano, p.as_double) for p in series]
    assert seen == [
        (window(0)[0], window(0)[1], 100.0),
        (window(0)[0], window(1)[1], 150.0),
        (window(0)[0], window(2)[1], 175.0),
        (window(3)[0], window(3)[1], 10.0),  # new start time, from zero: a reset, never a fake jump
        (window(3)[0], window(4)[1], 15.0),
    ]
    assert all(m.sum.aggregation_temporality == CUMULATIVE for m in receiver.metrics("requests_count_total"))


def test_delta_temporality_sends_each_window_as_is(protocol: str) -> None:
    async def go() -> GrpcReceiver | HttpReceiver:
        async with receiver_for(protocol) as receiver:
            sink = make_sink(protocol, receiver.endpoint, temporality="delta")
            await sink.start()
            await send(sink, cerebras_batch(0, 100), cerebras_batch(1, 50))
            await sink.close()
        return receiver

    metrics = run(go()).metrics("requests_count_total")
    assert [m.sum.aggregation_temporality for m in metrics] == [DELTA, DELTA]
    series = [by_endpoint(m)[(("endpoint", "ep-a"),)] for m in metrics]
    assert [(p.start_time_unix_nano, p.time_unix_nano, p.as_double) for p in series] == [
        (*window(0), 100.0),
        (*window(1), 50.0),
    ]


def prometheus_batch(index: int, total: float, series_start_ns: int) -> Batch:
    """A generic Prometheus scrape: a cumulative counter, a histogram and a summary."""
    start, end = window(index)
    return Batch("node", (("bridge.source", "node"),), start, end, [
        Metric("http_requests_total", Kind.COUNTER, [Point((("code", "200"),), total, series_start_ns, end)],
               Temporality.CUMULATIVE, "{request}"),
        Metric("http_duration_seconds", Kind.HISTOGRAM, [Point((), HistogramValue(
            count=total, sum=total / 10, buckets=((0.1, total / 2), (1.0, total * 0.9), (math.inf, total))),
            series_start_ns, end)], Temporality.CUMULATIVE, "s"),
        Metric("rpc_seconds", Kind.SUMMARY, [Point((), SummaryValue(
            count=total, sum=total / 5, quantiles=((0.5, 0.1), (0.99, 0.7))), series_start_ns, end)],
            Temporality.CUMULATIVE, "s"),
    ])  # fmt: skip


def test_prometheus_counters_histograms_and_summaries(protocol: str) -> None:
    series_start = T0_NS - 3600 * NS_PER_S

    async def go() -> GrpcReceiver | HttpReceiver:
        async with receiver_for(protocol) as receiver:
            sink = make_sink(protocol, receiver.endpoint)
            await sink.start()
            await send(sink, prometheus_batch(0, 1000.0, series_start), prometheus_batch(1, 1100.0, series_start))
            await sink.close()
        return receiver

    receiver = run(go())
    counters = [points_of(m)[0] for m in receiver.metrics("http_requests_total")]
    assert [(p.start_time_unix_nano, p.as_double) for p in counters] == [(series_start, 1000.0), (series_start, 1100.0)]
    histogram = receiver.metrics("http_duration_seconds")[1]
    assert histogram.histogram.aggregation_temporality == CUMULATIVE
    point = histogram.histogram.data_points[0]
    assert list(point.explicit_bounds) == [0.1, 1.0]
    assert list(point.bucket_counts) == [550, 440, 110]  # per bucket, from cumulative le counts
    assert (point.count, point.sum, point.start_time_unix_nano) == (1100, 110.0, series_start)
    summary = receiver.metrics("rpc_seconds")[1].summary.data_points[0]
    assert (summary.count, summary.sum) == (1100, 220.0)
    assert [(q.quantile, q.value) for q in summary.quantile_values] == [(0.5, 0.1), (0.99, 0.7)]


def test_prometheus_counters_become_deltas_with_reset_detection(protocol: str) -> None:
    series_start = T0_NS - 3600 * NS_PER_S
    restarted_at = window(2)[0] + 10 * NS_PER_S

    async def go() -> GrpcReceiver | HttpReceiver:
        async with receiver_for(protocol) as receiver:
            sink = make_sink(protocol, receiver.endpoint, temporality="delta")
            await sink.start()
            await send(
                sink,
                prometheus_batch(0, 1000.0, series_start),  # a baseline: no delta yet
                prometheus_batch(1, 1100.0, series_start),
                prometheus_batch(2, 30.0, restarted_at),  # the target restarted
            )
            await sink.close()
        return receiver

    receiver = run(go())
    counters = [points_of(m)[0] for m in receiver.metrics("http_requests_total")]
    assert [(p.start_time_unix_nano, p.time_unix_nano, p.as_double) for p in counters] == [
        (window(1)[0], window(1)[1], 100.0),
        (restarted_at, window(2)[1], 30.0),
    ]
    histogram = receiver.metrics("http_duration_seconds")[0].histogram
    assert histogram.aggregation_temporality == DELTA
    assert list(histogram.data_points[0].bucket_counts) == [50, 40, 10]


# ---------------------------------------------------------------- transport details
def test_http_gzips_the_body_and_posts_to_v1_metrics() -> None:
    with HttpReceiver() as receiver:
        sink = make_sink("http/protobuf", receiver.endpoint)
        run(_send_once(sink, cerebras_batch(0)))
        plain = make_sink("http/protobuf", receiver.endpoint, compression="none")
        run(_send_once(plain, cerebras_batch(0)))
    assert [(r.compressed, r.path) for r in receiver.received] == [(True, "/v1/metrics"), (False, "/v1/metrics")]
    assert receiver.received[0].headers["content-type"] == "application/x-protobuf"
    assert receiver.received[0].headers["user-agent"] == f"metrics-bridge/{__version__}"


def test_grpc_compresses_with_gzip() -> None:
    async def go() -> tuple[Exception | None, int]:
        async with GrpcReceiver(accept_gzip=False) as receiver:  # refuses gzip messages
            error = None
            try:
                await _send_once(make_sink("grpc", receiver.endpoint), cerebras_batch(0))
            except PermanentError as exc:
                error = exc
            await _send_once(make_sink("grpc", receiver.endpoint, compression="none"), cerebras_batch(0))
            return error, len(receiver.accepted)

    error, accepted = run(go())
    assert error is not None and error.reason == "grpc_unimplemented"
    assert accepted == 1


async def _send_once(sink: OTLPSink, batch: Batch) -> None:
    await sink.start()
    try:
        await send(sink, batch)
    finally:
        await sink.close()


def test_signal_specific_endpoint_is_used_as_is_and_headers_reach_the_wire(protocol: str) -> None:
    async def go() -> GrpcReceiver | HttpReceiver:
        options = {} if protocol == "grpc" else {"path": "/custom/ingest"}
        async with receiver_for(protocol, **options) as receiver:
            url = receiver.endpoint if protocol == "grpc" else receiver.url
            settings = OTLPSinkConfig(
                type="otlp", protocol=protocol, metrics_endpoint=url, headers={"X-Scope-OrgID": "tenant-1"}
            )
            await _send_once(OTLPSink("otlp-headers", settings, Context()), cerebras_batch(0))
        return receiver

    receiver = run(go())
    assert len(receiver.accepted) == 1
    assert receiver.received[0].headers["x-scope-orgid"] == "tenant-1"


def test_large_batches_are_split_into_several_requests(protocol: str) -> None:
    async def go() -> tuple[GrpcReceiver | HttpReceiver, int]:
        async with receiver_for(protocol) as receiver:
            sink = make_sink(protocol, receiver.endpoint, max_points_per_request=4)
            payloads = sink.prepare(cerebras_batch(0))
            await sink.start()
            for payload in payloads:
                await sink.deliver(payload)
            await sink.close()
        return receiver, len(payloads)

    receiver, payloads = run(go())
    points = [p for m in receiver.metrics() for p in points_of(m)]
    assert payloads == len(receiver.accepted) == 3
    assert len(points) == cerebras_batch(0).point_count() == 10


def test_describe_renders_the_request_as_protobuf_json() -> None:
    sink = make_sink("http/protobuf", "http://127.0.0.1:9")
    [payload] = sink.prepare(cerebras_batch(0))
    text = sink.describe(payload)
    rendered = json.loads(text)
    assert rendered["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["name"] == "requests_count_total"
    assert Parse(text, ExportMetricsServiceRequest()) == ExportMetricsServiceRequest.FromString(payload.body)
    assert "10 points in 1 request(s) to http://127.0.0.1:9/v1/metrics" in sink.summary([payload])


# ---------------------------------------------------------------- outcomes
@pytest.mark.parametrize(
    ("answer", "grpc_reason", "http_reason", "retryable_over", "retry_after"),
    [
        (unavailable(retry_after=2), "grpc_unavailable", "http_503", {"grpc", "http/protobuf"}, 2.0),
        (unavailable(), "grpc_unavailable", "http_503", {"grpc", "http/protobuf"}, None),
        (throttled(retry_after=3), "grpc_resource_exhausted", "http_429", {"grpc", "http/protobuf"}, 3.0),
        # RESOURCE_EXHAUSTED without RetryInfo means "will not recover" (OTLP spec); HTTP 429 always may
        (throttled(), "grpc_resource_exhausted", "http_429", {"http/protobuf"}, None),
        (bad_request("metric name is empty"), "grpc_invalid_argument", "http_400", set(), None),
    ],
)
def test_failures_are_classified_for_the_delivery_layer(
    protocol: str, answer: Any, grpc_reason: str, http_reason: str, retryable_over: set[str], retry_after: float | None
) -> None:
    async def go() -> Exception:
        async with receiver_for(protocol) as receiver:
            receiver.script(answer)
            try:
                await _send_once(make_sink(protocol, receiver.endpoint), cerebras_batch(0))
            except (RetryableError, PermanentError) as exc:
                return exc
        raise AssertionError("the scripted failure did not surface")

    error = run(go())
    assert error.reason == (grpc_reason if protocol == "grpc" else http_reason)
    assert error.retryable == (protocol in retryable_over)
    assert error.retry_after == retry_after
    assert answer.message in str(error)


def test_a_timeout_is_retryable(protocol: str) -> None:
    async def go() -> Exception:
        async with receiver_for(protocol) as receiver:
            receiver.script(stall(1.0))
            with pytest.raises(RetryableError) as caught:
                await _send_once(make_sink(protocol, receiver.endpoint, timeout_seconds=0.2), cerebras_batch(0))
            return caught.value

    assert run(go()).reason == ("grpc_deadline_exceeded" if protocol == "grpc" else "timeout")


def test_an_unreachable_backend_is_retryable(protocol: str) -> None:
    async def go() -> Exception:
        receiver = receiver_for(protocol)
        async with receiver:
            endpoint = receiver.endpoint  # a port that was just free, now closed again
        with pytest.raises(RetryableError) as caught:
            await _send_once(make_sink(protocol, endpoint, timeout_seconds=2), cerebras_batch(0))
        return caught.value

    assert run(go()).reason == ("grpc_unavailable" if protocol == "grpc" else "connection_error")


def test_partial_success_is_logged_and_counted(protocol: str, caplog: pytest.LogCaptureFixture) -> None:
    name = f"otlp-partial-{protocol}"
    before = dropped(name, "partial_success")

    async def go() -> list[int | None]:
        async with receiver_for(protocol) as receiver:
            receiver.script(*[partial_success(3, "3 points had invalid names")] * 2)
            sink = make_sink(protocol, receiver.endpoint, name=name)
            await sink.start()
            try:
                return [await sink.deliver(p) for b in (cerebras_batch(0), cerebras_batch(1)) for p in sink.prepare(b)]
            finally:
                await sink.close()

    assert run(go()) == [3, 3], "rejected points are returned so the delivery layer does not count them as sent"
    assert dropped(name, "partial_success") - before == 6
    assert caplog.text.count("rejected 3 of 10 points: 3 points had invalid names") == 1, "logged once, not per request"


def test_the_delivery_layer_retries_unavailable_and_drops_a_400(protocol: str) -> None:
    name = f"otlp-runner-{protocol}"
    fast_retries = DeliveryConfig(retry_initial_seconds=0.01, retry_max_seconds=0.02, drain_order="oldest_first")

    async def go() -> GrpcReceiver | HttpReceiver:
        async with receiver_for(protocol) as receiver:
            receiver.script(unavailable(), unavailable(), accept(), bad_request())
            runner = SinkRunner(make_sink(protocol, receiver.endpoint, name=name), fast_retries, Context())
            await runner.start()
            runner.submit(cerebras_batch(0))  # UNAVAILABLE twice, then accepted
            runner.submit(cerebras_batch(1))  # 400: dropped
            await runner.stop(grace=10)
        return receiver

    receiver = run(go())
    outcomes = [(r.answer.grpc_code.name, r.request.resource_metrics[0].scope_metrics[0].metrics[0]
                 .sum.data_points[0].time_unix_nano) for r in receiver.received]  # fmt: skip
    first, second = window(0)[1], window(1)[1]
    assert outcomes == [("UNAVAILABLE", first), ("UNAVAILABLE", first), ("OK", first), ("INVALID_ARGUMENT", second)]
    assert dropped(name, "grpc_invalid_argument" if protocol == "grpc" else "http_400") == 10


# ---------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    yield str(cert), str(key)


def test_tls_with_a_private_ca(protocol: str, self_signed: tuple[str, str]) -> None:
    cert, _ = self_signed

    async def go() -> GrpcReceiver | HttpReceiver:
        async with receiver_for(protocol, tls=self_signed) as receiver:
            assert receiver.endpoint.startswith("https://")
            await _send_once(make_sink(protocol, receiver.endpoint, certificate=cert), cerebras_batch(0))
            with pytest.raises(RetryableError):  # the server's certificate is not trusted without the CA
                await _send_once(make_sink(protocol, receiver.endpoint, timeout_seconds=2), cerebras_batch(1))
        return receiver

    assert len(run(go()).accepted) == 1
