"""The generic prometheus source against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import math

import pytest

from bridge import telemetry
from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import NS_PER_S, Batch, HistogramValue, Kind, SummaryValue, Temporality
from bridge.sources.prometheus import PrometheusSource
from tests.conftest import T0, run
from tests.servers import ExpositionServer, Response

EXPORTER = """\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code="200",method="get"} 1027
http_requests_total{code="500",method="get"} 3
# HELP process_resident_memory_bytes Resident memory.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.5e+07
# HELP request_duration_seconds Latency.
# TYPE request_duration_seconds histogram
request_duration_seconds_bucket{le="0.1"} 5
request_duration_seconds_bucket{le="0.5"} 9
request_duration_seconds_bucket{le="+Inf"} 10
request_duration_seconds_sum 2.5
request_duration_seconds_count 10
# HELP rpc_seconds RPC latency.
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.05
rpc_seconds{quantile="0.99"} 0.2
rpc_seconds_sum 12.5
rpc_seconds_count 200
temperature_celsius 21.5
"""


def make_source(url: str, clock: ManualClock, name: str = "exp", **extra: object) -> PrometheusSource:
    config = parse_config(
        {"sources": {name: {"type": "prometheus", "url": url, **extra}}, "sinks": {"out": {"type": "console"}}}
    )
    return PrometheusSource(name, config.sources[name], Context(clock=clock))


async def scrape(source: PrometheusSource, clock: ManualClock, *times: float) -> list[Batch | None]:
    await source.start()
    try:
        out = []
        for t in times:
            await clock.set(t)
            out.append(await source.collect(clock.now()))
        return out
    finally:
        await source.close()


def test_every_exposition_type_is_classified(exposition_server: ExpositionServer, clock: ManualClock) -> None:
    exposition_server.respond(Response(body=EXPORTER))
    (batch,) = run(scrape(make_source(exposition_server.url, clock), clock, T0 + 5))
    metrics = {m.name: m for m in batch.metrics}
    counter = metrics["http_requests"]
    assert (counter.kind, counter.temporality) == (Kind.COUNTER, Temporality.CUMULATIVE)
    assert metrics["process_resident_memory_bytes"].kind is Kind.GAUGE
    assert metrics["process_resident_memory_bytes"].unit == "By"
    assert metrics["temperature_celsius"].kind is Kind.GAUGE  # untyped
    histogram = metrics["request_duration_seconds"].points[0].value
    assert isinstance(histogram, HistogramValue)
    assert histogram.buckets == ((0.1, 5.0), (0.5, 9.0), (math.inf, 10.0)) and histogram.count == 10
    summary = metrics["rpc_seconds"].points[0].value
    assert isinstance(summary, SummaryValue) and summary.quantiles == ((0.5, 0.05), (0.99, 0.2))
    assert metrics["rpc_seconds"].unit == "s"


def test_cumulative_start_time_is_stable_and_resets_are_detected(
    exposition_server: ExpositionServer, clock: ManualClock
) -> None:
    counter = "# TYPE jobs_total counter\njobs_total {}\n"
    exposition_server.respond(
        Response(body=counter.format(10)), Response(body=counter.format(25)), Response(body=counter.format(4))
    )
    batches = run(scrape(make_source(exposition_server.url, clock), clock, T0 + 5, T0 + 65, T0 + 125))
    starts = [b.metrics[0].points[0].start_ns for b in batches]
    assert starts[0] == starts[1], "a cumulative series keeps its start time"
    assert starts[2] > starts[1], "a drop in value is a reset: a new start time"
    assert batches[1].window_start_ns == int((T0 + 5) * NS_PER_S), "each scrape covers the time since the last"


def test_bearer_and_basic_auth_reach_the_server(
    exposition_server: ExpositionServer, clock: ManualClock, tmp_path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token-789\n")
    exposition_server.respond(Response(body=EXPORTER))
    run(
        scrape(
            make_source(exposition_server.url, clock, auth={"type": "bearer", "token_file": str(token_file)}),
            clock,
            T0 + 5,
        )
    )
    run(
        scrape(
            make_source(exposition_server.url, clock, auth={"type": "basic", "username": "u", "password": "pw"}),
            clock,
            T0 + 5,
        )
    )
    bearer, basic = (r.headers["authorization"] for r in exposition_server.requests)
    assert bearer == "Bearer file-token-789"
    assert basic == "Basic " + base64.b64encode(b"u:pw").decode()


def test_gzip_bodies_are_decoded(exposition_server: ExpositionServer, clock: ManualClock) -> None:
    exposition_server.respond(Response(body=EXPORTER, gzip=True))
    (batch,) = run(scrape(make_source(exposition_server.url, clock), clock, T0 + 5))
    assert batch is not None and len(batch.metrics) == 5
    assert "gzip" in exposition_server.requests[0].headers["accept-encoding"]


@pytest.mark.parametrize(
    "response, outcome",
    [
        (Response(body=b"\x1f\x8b garbage", headers={"Content-Encoding": "gzip"}), "bad_encoding"),
        (Response(body="x 1\n" * 1000), "body_too_large"),
        (Response(status=500, body="boom"), "http_500"),
        (Response(body=EXPORTER, delay=2.0), "timeout"),
        (Response(body=EXPORTER[:900], trickle=0.05), "timeout"),  # each read is quick, the whole body is not
    ],
)
def test_bad_upstreams_are_counted_not_raised(
    exposition_server: ExpositionServer, clock: ManualClock, response: Response, outcome: str
) -> None:
    exposition_server.respond(response)
    before = telemetry.SCRAPES.labels("bad", outcome)._value.get()
    source = make_source(exposition_server.url, clock, "bad", max_body_bytes=1000, timeout_seconds=0.5)
    (batch,) = run(scrape(source, clock, T0 + 5))
    assert batch is None
    assert source.last_error == outcome
    assert telemetry.SCRAPES.labels("bad", outcome)._value.get() == before + 1


def test_malformed_lines_are_skipped_and_counted(exposition_server: ExpositionServer, clock: ManualClock) -> None:
    exposition_server.respond(Response(body="good 1\nthis is { not valid\nalso_good 2\nbad_value abc\n"))
    before = telemetry.PARSE_ERRORS.labels("sloppy")._value.get()
    (batch,) = run(scrape(make_source(exposition_server.url, clock, "sloppy"), clock, T0 + 5))
    assert sorted(m.name for m in batch.metrics) == ["also_good", "good"]
    assert telemetry.PARSE_ERRORS.labels("sloppy")._value.get() == before + 2


def test_openmetrics_content_type_is_honoured(exposition_server: ExpositionServer, clock: ManualClock) -> None:
    body = "# TYPE jobs counter\njobs_total 3\njobs_created 1700000000.0\n# EOF\n"
    exposition_server.respond(
        Response(body=body, headers={"Content-Type": "application/openmetrics-text; version=1.0.0; charset=utf-8"})
    )
    (batch,) = run(scrape(make_source(exposition_server.url, clock), clock, T0 + 5))
    (point,) = batch.metrics[0].points
    assert point.start_ns == 1_700_000_000 * NS_PER_S, "_created gives the start time"


def test_schedule_is_aligned_to_the_boundary_plus_offset(
    exposition_server: ExpositionServer, clock: ManualClock
) -> None:
    exposition_server.respond(Response(body=EXPORTER))
    source = make_source(exposition_server.url, clock, offset_seconds=7)

    async def go() -> list[float]:
        await source.start()
        try:
            await clock.set(T0 + 31)
            first = source.next_due(clock.now())
            await source.collect(first)
            return [first, source.next_due(clock.now())]
        finally:
            await source.close()

    assert run(go()) == [T0 + 31, T0 + 67]
