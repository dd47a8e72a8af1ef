"""The `remote_write` sink: what prepare() puts on the wire across windows, and what each answer means.

Requests go to a real HTTP receiver on 127.0.0.1 (tests/receivers/remote_write.py), which
decodes them with message classes built from prompb's .proto.
"""

from __future__ import annotations

import base64
import math
import struct
from pathlib import Path
from typing import Any

import cramjam
import pytest
from pydantic import ValidationError

from bridge import registry
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import Batch
from bridge.sinks.base import Payload, PermanentError, RetryableError
from bridge.sinks.remote_write import GrafanaCloudPrometheusSink, RemoteWriteSink
from bridge.sinks.remote_write.config import GrafanaCloudPrometheusConfig, RemoteWriteSinkConfig
from bridge.sinks.remote_write.encode import NS_PER_MS, STALE_NAN, MetricType
from tests.conftest import run
from tests.receivers.remote_write import Answer, RemoteWriteReceiver
from tests.remote_write_proto import WriteRequest
from tests.test_otlp_wire import cerebras_batch, self_signed, window

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (name, other labels)


def make_sink(url: str = "http://127.0.0.1:9/api/v1/write", **config: Any) -> RemoteWriteSink:
    return RemoteWriteSink("rw", RemoteWriteSinkConfig(type="remote_write", url=url, **config), Context())


def requests(payloads: list[Payload]) -> list[Any]:
    out = []
    for payload in payloads:
        request = WriteRequest()
        request.ParseFromString(bytes(cramjam.snappy.decompress_raw(payload.body)))
        out.append(request)
    return out


def samples(payloads: list[Payload]) -> dict[SeriesKey, list[tuple[float, int]]]:
    """Every sample sent, by series, in the order sent."""
    found: dict[SeriesKey, list[tuple[float, int]]] = {}
    for request in requests(payloads):
        for series in request.timeseries:
            labels = {label.name: label.value for label in series.labels}
            key = (labels.pop("__name__"), tuple(sorted(labels.items())))
            found.setdefault(key, []).extend((s.value, s.timestamp) for s in series.samples)
    return found


def as_bits(sent: dict[SeriesKey, list[tuple[float, int]]]) -> dict[SeriesKey, list[tuple[bytes, int]]]:
    """Values as their bits: NaN compares equal to itself, and a staleness marker differs from a plain NaN."""
    return {series: [(struct.pack("<d", v), t) for v, t in values] for series, values in sent.items()}


def key(name: str, **labels: str) -> SeriesKey:
    return name, tuple(sorted({"job": "cerebras", "instance": "org_test", **labels}.items()))


def end_ms(index: int) -> int:
    return window(index)[1] // NS_PER_MS


def test_delta_counts_become_running_totals_that_start_at_zero() -> None:
    sink = make_sink()
    sent: dict[SeriesKey, list[tuple[float, int]]] = {}
    for index in range(3):
        for series, values in samples(sink.prepare(cerebras_batch(index, requests=100.0 + index))).items():
            sent.setdefault(series, []).extend(values)
    start_ms = window(0)[0] // NS_PER_MS
    assert sent[key("requests_count_total", endpoint="ep-a")] == [
        (0.0, start_ms + 1),  # the running total's start: Prometheus counts the first window too
        (100.0, end_ms(0)),
        (201.0, end_ms(1)),
        (303.0, end_ms(2)),
    ]
    assert sent[key("input_tokens_total", endpoint="ep-a")][-1] == (303.0 * 2000, end_ms(2))
    assert sent[key("cache_rate_ratio", endpoint="ep-a")] == [(0.4, end_ms(i)) for i in range(3)]  # the OTLP name
    idle_p99 = sent[key("ttft_seconds", endpoint="ep-idle", statistic="p99")]
    assert all(math.isnan(value) and struct.pack("<d", value) != STALE_NAN for value, _ in idle_p99)  # NaN as is


def test_a_series_that_vanishes_gets_one_staleness_marker() -> None:
    sink = make_sink()
    sink.prepare(cerebras_batch(0))
    without_cache_rate = cerebras_batch(1)
    without_cache_rate.metrics = [m for m in without_cache_rate.metrics if m.name != "cache_rate"]
    marked = samples(sink.prepare(without_cache_rate))[key("cache_rate_ratio", endpoint="ep-a")]
    assert len(marked) == 1 and struct.pack("<d", marked[0][0]) == STALE_NAN and marked[0][1] == end_ms(1)
    again = cerebras_batch(2)
    again.metrics = [m for m in again.metrics if m.name != "cache_rate"]
    assert key("cache_rate_ratio", endpoint="ep-a") not in samples(sink.prepare(again))  # once
    assert samples(sink.prepare(cerebras_batch(3)))[key("cache_rate_ratio", endpoint="ep-a")] == [(0.4, end_ms(3))]


def test_ha_and_external_labels_go_on_every_series() -> None:
    sink = make_sink(external_labels={"env": "prod"}, ha={"cluster": "bridge-eu", "replica": "pod-0"})
    sent = samples(sink.prepare(cerebras_batch(0)))
    assert sent and all(
        {("env", "prod"), ("cluster", "bridge-eu"), ("__replica__", "pod-0")} <= set(labels) for _, labels in sent
    )


def test_metadata_goes_once_per_family_per_hour() -> None:
    sink = make_sink()
    first = requests(sink.prepare(cerebras_batch(0)))[0].metadata
    assert {(m.metric_family_name, m.type, m.unit) for m in first} == {
        ("requests_count_total", MetricType.COUNTER, "{request}"),
        ("requests_failure_total", MetricType.COUNTER, "{request}"),
        ("input_tokens_total", MetricType.COUNTER, "{token}"),
        ("ttft_seconds", MetricType.GAUGE, "s"),
        ("inference_endpoint_status", MetricType.GAUGE, ""),
        ("cache_rate_ratio", MetricType.GAUGE, "1"),
    }
    assert next(m.help for m in first if m.metric_family_name == "ttft_seconds") == "ttft_seconds help"
    assert all(not r.metadata for i in range(1, 60) for r in requests(sink.prepare(cerebras_batch(i))))
    assert len(requests(sink.prepare(cerebras_batch(60)))[0].metadata) == 6


def test_large_batches_are_split_by_samples_with_metadata_in_the_first_request() -> None:
    whole = make_sink().prepare(cerebras_batch(0))
    payloads = make_sink(max_samples_per_request=4).prepare(cerebras_batch(0))
    assert all(p.points <= 4 for p in payloads) and len(payloads) == math.ceil(sum(p.points for p in payloads) / 4)
    assert as_bits(samples(payloads)) == as_bits(samples(whole))
    assert [bool(r.metadata) for r in requests(payloads)] == [True] + [False] * (len(payloads) - 1)


def test_each_request_carries_the_protocol_headers_and_credentials(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("rotating-token-1\n")
    with RemoteWriteReceiver() as receiver:
        basic = make_sink(receiver.url, auth={"type": "basic", "username": "123", "password": "pw-1234"},
                          headers={"X-Scope-OrgID": "tenant-a"})  # fmt: skip
        bearer = make_sink(receiver.url, auth={"type": "bearer", "token_file": str(token_file)})

        async def go() -> None:
            for sink in (basic, bearer):
                await sink.start()
                try:
                    for payload in sink.prepare(cerebras_batch(0)):
                        await sink.deliver(payload)
                finally:
                    await sink.close()

        run(go())
    first, second = receiver.received
    for received in (first, second):
        assert received.headers["content-encoding"] == "snappy"
        assert received.headers["content-type"] == "application/x-protobuf"
        assert received.headers["x-prometheus-remote-write-version"] == "0.1.0"
        assert received.headers["user-agent"].startswith("metrics-bridge/")
        assert len(received.request.timeseries) > 0
    assert first.headers["authorization"] == "Basic " + base64.b64encode(b"123:pw-1234").decode()
    assert first.headers["x-scope-orgid"] == "tenant-a"
    assert second.headers["authorization"] == "Bearer rotating-token-1"


@pytest.mark.parametrize(
    ("answer", "error", "retry_after"),
    [
        (Answer(400, "out of order sample"), PermanentError, None),
        (Answer(401, "invalid token"), PermanentError, None),
        (Answer(429, "slow down", {"Retry-After": "7"}), RetryableError, 7.0),
        (Answer(503, "ingester unavailable"), RetryableError, None),
    ],
)
def test_answers_are_classified_as_prometheus_does(
    answer: Answer, error: type[Exception], retry_after: float | None
) -> None:
    with RemoteWriteReceiver() as receiver:
        receiver.script(answer)
        sink = make_sink(receiver.url)

        async def go() -> None:
            await sink.start()
            try:
                await sink.deliver(sink.prepare(cerebras_batch(0))[0])
            finally:
                await sink.close()

        with pytest.raises(error) as caught:
            run(go())
    assert caught.value.reason == f"http_{answer.status}"  # type: ignore[attr-defined]
    assert answer.body in caught.value.detail  # type: ignore[attr-defined]  # the receiver's own words, for the log
    assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]


def test_tls_with_a_private_ca_or_without_verification(request: pytest.FixtureRequest) -> None:
    certificate_files: tuple[str, str] = request.getfixturevalue(self_signed.__name__)  # test_otlp_wire's fixture
    cert, _ = certificate_files

    async def send(sink: RemoteWriteSink) -> None:
        await sink.start()
        try:
            await sink.deliver(sink.prepare(cerebras_batch(0))[0])
        finally:
            await sink.close()

    with RemoteWriteReceiver(tls=certificate_files) as receiver:
        assert receiver.url.startswith("https://")
        run(send(make_sink(receiver.url, tls={"ca_file": cert})))
        run(send(make_sink(receiver.url, tls={"insecure_skip_verify": True})))
        with pytest.raises(RetryableError) as caught:  # the server's certificate is not trusted without the CA
            run(send(make_sink(receiver.url, timeout_seconds=5)))
    assert caught.value.reason == "connection_error"
    assert len(receiver.received) == 2


def test_delivery_defaults_to_window_order() -> None:
    assert (
        RemoteWriteSinkConfig(type="remote_write", url="http://x/api/v1/write").delivery.drain_order == "oldest_first"
    )
    chosen = RemoteWriteSinkConfig(type="remote_write", url="http://x/", delivery={"drain_order": "newest_first"})
    assert chosen.delivery.drain_order == "newest_first"


def test_config_refuses_what_a_receiver_would() -> None:
    with pytest.raises(ValidationError, match="not a label name"):
        RemoteWriteSinkConfig(type="remote_write", url="http://x/", external_labels={"bad-name": "x"})
    with pytest.raises(ValidationError, match="http:// or https://"):
        RemoteWriteSinkConfig(type="remote_write", url="mimir:8080/api/v1/push")


def test_grafana_cloud_prometheus_preset() -> None:
    config = parse_config({
        "sources": {"demo": {"type": "simulator"}},
        "sinks": {"grafana": {"type": "grafana_cloud_prometheus", "url": "https://prometheus-prod-24-prod-eu-west-2.grafana.net",
                              "instance_id": 1234567, "token": "glc_token-value"}},
    })  # fmt: skip
    sink_config = config.sinks["grafana"]
    assert isinstance(sink_config, GrafanaCloudPrometheusConfig)
    assert sink_config.url == "https://prometheus-prod-24-prod-eu-west-2.grafana.net/api/prom/push"
    assert sink_config.delivery.drain_order == "oldest_first"
    assert registry.sinks.require("grafana_cloud_prometheus") is GrafanaCloudPrometheusSink
    assert registry.sinks.require("remote_write") is RemoteWriteSink
    sink = GrafanaCloudPrometheusSink("grafana", sink_config, Context())
    assert (
        sink._transport.headers()["Authorization"] == "Basic " + base64.b64encode(b"1234567:glc_token-value").decode()
    )


def test_dry_run_describes_each_request() -> None:
    sink = make_sink()
    payload = sink.prepare(cerebras_batch(0))[0]
    text = sink.describe(payload)
    first_line, *series = text.splitlines()
    assert first_line.startswith(
        f"POST http://127.0.0.1:9/api/v1/write: {payload.points} series, {payload.points} samples"
    )
    assert f"{len(payload.body)} after snappy" in first_line
    labels = 'endpoint="ep-a",instance="org_test",job="cerebras"'
    assert series[:2] == [
        f"  requests_count_total{{{labels}}} 0.0 @{window(0)[0] // NS_PER_MS + 1}",
        f"  requests_count_total{{{labels}}} 100.0 @{end_ms(0)}",
    ]
    assert len(series) == 11 and series[-1] == f"  ... and {payload.points - 10} more series"
    assert sink.summary([payload]).startswith(f"{payload.points} samples in 1 request(s)")


def test_points_count_samples() -> None:
    batch: Batch = cerebras_batch(0)
    payloads = make_sink().prepare(batch)
    assert sum(p.points for p in payloads) == sum(len(v) for v in samples(payloads).values())
