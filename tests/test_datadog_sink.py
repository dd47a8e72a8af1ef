"""The Datadog sink on the wire: what a real intake stores for hand-built batches."""

from __future__ import annotations

import json
import math
import random

import pytest

from bridge import telemetry
from bridge.clock import ManualClock
from bridge.context import Context
from bridge.delivery import SinkRunner
from bridge.model import Batch, HistogramValue, Kind, Metric, Point, SummaryValue, Temporality
from bridge.schema import DeliveryConfig
from bridge.sinks.base import PermanentError, RetryableError
from tests.conftest import T0, run
from tests.datadog_support import STATISTICS, cerebras_batch, ns, wired
from tests.receivers.datadog_intake import CHECK_RUN_PATH, SERIES_PATH, DatadogIntake

BASE_TAGS = {"bridge.source:cerebras", "cerebras.organization_id:org_test"}


def dropped(reason: str, sink: str = "dd") -> float:
    return telemetry.DROPPED_POINTS.labels(sink, reason)._value.get()


def test_delta_counts_are_counts_over_their_window() -> None:
    async def go() -> None:
        async with wired() as w:
            await w.send(cerebras_batch(T0))
            points = w.intake.points("cerebras.requests_count")
            assert len(points) == 1
            point = points[0]
            assert (point.type, point.interval, point.timestamp, point.value) == (1, 60, int(T0), 100.0)
            assert point.unit == "request"
            assert point.tags == BASE_TAGS | {"endpoint:ep-1"}
            assert w.intake.points("cerebras.input_tokens")[0].unit == "token"
            failures = {p.tag("http_code"): p.value for p in w.intake.points("cerebras.requests_failure")}
            assert failures == {"429": 3.0, "503": 2.0}

    run(go())


def test_a_resent_window_overwrites_and_never_adds() -> None:
    async def go() -> None:
        async with wired() as w:
            for _ in range(3):  # a re-scrape or a replay of the same minute
                await w.send(cerebras_batch(T0))
            await w.send(cerebras_batch(T0 + 60))
            assert w.intake.total("cerebras.requests_count") == 200.0
            assert w.intake.total("cerebras.requests_failure", http_code="429") == 6.0

    run(go())


def test_a_retried_payload_resends_the_same_timestamps_and_values() -> None:
    async def go() -> None:
        async with wired() as w:
            w.intake.fail_next(503, retry_after=7)
            payloads = w.sink.prepare(cerebras_batch(T0))
            with pytest.raises(RetryableError) as failure:
                await w.sink.deliver(payloads[0])
            assert (failure.value.reason, failure.value.retry_after) == ("http_503", 7.0)
            await w.sink.deliver(payloads[0])
            await w.sink.deliver(payloads[0])  # at-least-once: a duplicate delivery is harmless
            bodies = [r.json for r in w.intake.requests if r.path == SERIES_PATH]
            assert bodies[1] == bodies[2]
            assert w.intake.total("cerebras.requests_count") == 100.0

    run(go())


def test_percentiles_are_one_metric_tagged_by_statistic() -> None:
    async def go() -> None:
        async with wired() as w:
            await w.send(cerebras_batch(T0))
            points = w.intake.points("cerebras.ttft_seconds")
            assert {p.tag("statistic"): p.value for p in points} == {
                "avg": 0.03,
                "p50": 0.06,
                "p90": 0.09,
                "p95": 0.12,
                "p99": 0.15,
            }
            assert {(p.type, p.unit, p.timestamp) for p in points} == {(3, "second", int(T0))}
            assert w.intake.points("cerebras.ttft_seconds", statistic="p95")[0].tags == BASE_TAGS | {
                "endpoint:ep-1",
                "statistic:p95",
            }

    run(go())


def test_suffix_mode_makes_one_metric_per_statistic() -> None:
    async def go() -> None:
        async with wired(statistic_mode="suffix") as w:
            await w.send(cerebras_batch(T0))
            names = {n for n in w.intake.metric_names() if n.startswith("cerebras.ttft_seconds")}
            assert names == {f"cerebras.ttft_seconds.{s}" for s in STATISTICS}
            p95 = w.intake.points("cerebras.ttft_seconds.p95")[0]
            assert (p95.value, p95.tag("statistic")) == (0.12, None)

    run(go())


def test_nan_is_never_sent_and_is_counted() -> None:
    async def go() -> None:
        async with wired() as w:
            before = dropped("nan")
            await w.send(cerebras_batch(T0, idle=True))
            assert dropped("nan") - before == 4 * len(STATISTICS) + 1  # latency statistics and cache_rate
            assert not w.intake.points("cerebras.ttft_seconds") and not w.intake.points("cerebras.cache_rate")
            assert w.intake.total("cerebras.requests_count") == 0.0  # zero counts are real counts
            for request in w.intake.requests:
                assert "NaN" not in json.dumps(request.json)

    run(go())


def test_infinities_are_counted_apart_from_nan() -> None:
    async def go() -> None:
        async with wired() as w:
            start, end = ns(T0), ns(T0 + 60)
            batch = Batch(
                "p",
                (),
                start,
                end,
                [
                    Metric(
                        "temperature",
                        Kind.GAUGE,
                        [
                            Point((("room", "a"),), math.inf, start, end),
                            Point((("room", "b"),), -math.inf, start, end),
                            Point((("room", "c"),), 21.5, start, end),
                        ],
                    )
                ],
            )
            before = dropped("inf")
            await w.send(batch)
            assert dropped("inf") - before == 2
            assert [p.value for p in w.intake.points("temperature")] == [21.5]

    run(go())


@pytest.mark.parametrize("status, expected", [(1.0, 0), (0.0, 2), (-1.0, 3), (math.nan, 3)])
def test_endpoint_status_is_also_a_service_check(status: float, expected: int) -> None:
    async def go() -> None:
        async with wired() as w:
            await w.send(cerebras_batch(T0, status=status))
            assert w.intake.checks == [
                {
                    "check": "cerebras.inference_endpoint.status",
                    "host_name": "",
                    "status": expected,
                    "timestamp": int(T0),
                    "tags": ["endpoint:ep-1", "bridge.source:cerebras", "cerebras.organization_id:org_test"],
                }
            ]
            gauge = w.intake.points("cerebras.inference_endpoint_status")
            assert [p.value for p in gauge] == ([] if math.isnan(status) else [status])

    run(go())


def test_service_checks_can_be_turned_off() -> None:
    async def go() -> None:
        async with wired(service_checks=False) as w:
            await w.send(cerebras_batch(T0))
            assert w.intake.checks == []
            assert all(r.path != CHECK_RUN_PATH for r in w.intake.requests)
            assert w.intake.points("cerebras.inference_endpoint_status")

    run(go())


@pytest.mark.parametrize("now, reason", [(T0 + 3600 + 1, "too_old"), (T0 - 601, "too_new")])
def test_points_outside_datadogs_time_range_are_dropped_before_sending(now: float, reason: str) -> None:
    async def go() -> None:
        clock = ManualClock(now)
        async with wired(clock) as w:
            before = dropped(reason)
            batch = cerebras_batch(T0)
            payloads = await w.send(batch)
            assert payloads == []
            assert dropped(reason) - before == batch.point_count() + 1  # every point and the service check
            assert w.intake.requests == []

    run(go())


def test_the_edges_of_the_time_range_are_accepted() -> None:
    async def go() -> None:
        for now in (T0 + 3600, T0 - 600):
            async with wired(ManualClock(now)) as w:
                await w.send(cerebras_batch(T0))
                assert w.intake.total("cerebras.requests_count") == 100.0
                assert w.intake.out_of_range == 0

    run(go())


@pytest.mark.parametrize(
    "compression, header", [("gzip", "gzip"), ("deflate", "deflate"), ("zstd", "zstd1"), ("none", None)]
)
def test_every_compression_reaches_the_intake(compression: str, header: str | None) -> None:
    async def go() -> None:
        async with wired(compression=compression) as w:
            await w.send(cerebras_batch(T0))
            series_requests = [r for r in w.intake.requests if r.path == SERIES_PATH]
            assert [r.status for r in series_requests] == [202]
            assert series_requests[0].headers.get("content-encoding") == header
            assert series_requests[0].headers["content-type"] == "application/json"
            assert w.intake.total("cerebras.output_tokens") == 300.0

    run(go())


def test_a_rejected_key_is_permanent_with_datadogs_text() -> None:
    async def go() -> None:
        clock = ManualClock(T0 + 65)
        with DatadogIntake({"another-key"}, clock=clock) as intake:
            async with wired(clock, intake) as w:
                payloads = w.sink.prepare(cerebras_batch(T0))
                with pytest.raises(PermanentError) as failure:
                    await w.sink.deliver(payloads[0])
                assert (failure.value.reason, failure.value.detail) == ("http_403", "Forbidden")
                assert intake.points() == []

    run(go())


def test_a_body_datadog_cannot_read_is_permanent_with_its_text() -> None:
    async def go() -> None:
        async with wired() as w:
            w.intake.fail_next(400, errors=["Payload is not in the expected format: bad series"])
            payloads = w.sink.prepare(cerebras_batch(T0))
            with pytest.raises(PermanentError) as failure:
                await w.sink.deliver(payloads[0])
            assert failure.value.reason == "http_400"
            assert "bad series" in failure.value.detail

    run(go())


def test_413_splits_the_body_until_it_fits() -> None:
    async def go() -> None:
        clock = ManualClock(T0 + 65)
        with DatadogIntake({"test-dd-key"}, clock=clock, max_uncompressed=2_000) as intake:
            async with wired(clock, intake) as w:
                splits = telemetry.DATADOG_SPLITS.labels("dd")._value.get()
                batch = cerebras_batch(T0)
                payloads = await w.send(batch)
                assert len([p for p in payloads if p.meta["path"] == SERIES_PATH]) == 1
                assert telemetry.DATADOG_SPLITS.labels("dd")._value.get() > splits
                statuses = [r.status for r in intake.requests if r.path == SERIES_PATH]
                assert 413 in statuses and statuses[-1] == 202
                assert len(intake.points()) == batch.point_count()  # every point arrived exactly once

    run(go())


def test_a_single_series_that_is_still_too_large_is_permanent() -> None:
    async def go() -> None:
        async with wired() as w:
            start, end = ns(T0), ns(T0 + 60)
            batch = Batch("p", (), start, end, [Metric("one", Kind.GAUGE, [Point((), 1.0, start, end)])])
            payload = w.sink.prepare(batch)[0]
            w.intake.fail_next(413)
            with pytest.raises(PermanentError) as failure:
                await w.sink.deliver(payload)
            assert failure.value.reason == "http_413"

    run(go())


@pytest.mark.parametrize(
    "series, tag_count, random_tags",
    [
        (2_000, 20, False),  # repetitive: compresses well, the 5 MB uncompressed limit cuts
        (6_000, 2, True),  # random: compresses badly, the 500 KB compressed limit cuts
    ],
)
def test_a_large_batch_is_cut_under_datadogs_limits(series: int, tag_count: int, random_tags: bool) -> None:
    rng = random.Random(1)

    def value(i: int, k: int) -> str:
        return "".join(rng.choices("0123456789abcdef", k=180)) if random_tags else f"{k:02d}" + "v" * 180

    async def go() -> None:
        async with wired() as w:
            start, end = ns(T0), ns(T0 + 60)
            points = [
                Point((*((f"t{k:02d}", value(i, k)) for k in range(tag_count)), ("i", str(i))), float(i), start, end)
                for i in range(series)
            ]
            batch = Batch("p", (), start, end, [Metric("wide", Kind.GAUGE, points)])
            payloads = await w.send(batch)
            assert len(payloads) > 1
            assert all(len(p.body) <= 512_000 for p in payloads)
            assert {r.status for r in w.intake.requests} == {202}  # the intake answers 413 past either limit
            assert sum(p.points for p in payloads) == series == len(w.intake.points("wide"))

    run(go())


def test_cumulative_counters_send_increases_with_reset_detection() -> None:
    def scrape(t: float, value: float, start: float = T0 - 600) -> Batch:
        return Batch(
            "prom",
            (("bridge.source", "prom"),),
            ns(t - 60),
            ns(t),
            [
                Metric(
                    "http_requests_total",
                    Kind.COUNTER,
                    [Point((("code", "200"),), value, ns(start), ns(t))],
                    Temporality.CUMULATIVE,
                    "{request}",
                )
            ],
        )

    async def go() -> None:
        async with wired(ManualClock(T0 + 300)) as w:
            before = dropped("first_value")
            await w.send(scrape(T0 + 60, 1000.0))  # first sight: remembered, not sent
            assert dropped("first_value") - before == 1
            await w.send(scrape(T0 + 120, 1030.0))
            await w.send(scrape(T0 + 180, 5.0, start=T0 + 150))  # restarted: 5 since the restart
            await w.send(scrape(T0 + 240, 25.0, start=T0 + 150))
            points = w.intake.points("http_requests")
            assert [(p.timestamp, p.interval, p.value) for p in points] == [
                (int(T0 + 60), 60, 30.0),
                (int(T0 + 150), 30, 5.0),
                (int(T0 + 180), 60, 20.0),
            ]
            assert {(p.type, p.unit) for p in points} == {(1, "request")}
            assert points[0].tags == {"bridge.source:prom", "code:200"}  # no namespace outside Cerebras

    run(go())


def test_flush_first_value_sends_the_first_cumulative_point() -> None:
    async def go() -> None:
        async with wired(ManualClock(T0 + 120), flush_first_value=True) as w:
            batch = Batch(
                "prom",
                (),
                ns(T0),
                ns(T0 + 60),
                [
                    Metric(
                        "jobs_total",
                        Kind.COUNTER,
                        [Point((), 12.0, ns(T0 - 3000), ns(T0 + 60))],
                        Temporality.CUMULATIVE,
                    )
                ],
            )
            await w.send(batch)
            assert [(p.timestamp, p.interval, p.value) for p in w.intake.points("jobs")] == [(int(T0), 60, 12.0)]

    run(go())


def test_non_monotonic_cumulative_sums_are_gauges() -> None:
    async def go() -> None:
        async with wired() as w:
            metric = Metric(
                "queue_depth",
                Kind.COUNTER,
                [Point((), 7.0, ns(T0 - 600), ns(T0 + 60))],
                Temporality.CUMULATIVE,
                monotonic=False,
            )
            await w.send(Batch("p", (), ns(T0), ns(T0 + 60), [metric]))
            assert [(p.type, p.timestamp, p.value) for p in w.intake.points("queue_depth")] == [(3, int(T0 + 60), 7.0)]

    run(go())


def test_histograms_become_count_sum_and_buckets_like_the_agents_check() -> None:
    def scrape(t: float, count: float, total: float, buckets: tuple[tuple[float, float], ...]) -> Batch:
        value = HistogramValue(count, total, buckets)
        return Batch(
            "prom",
            (),
            ns(t - 60),
            ns(t),
            [
                Metric(
                    "rpc_duration_seconds",
                    Kind.HISTOGRAM,
                    [Point((("method", "get"),), value, ns(T0 - 600), ns(t))],
                    Temporality.CUMULATIVE,
                    "s",
                )
            ],
        )

    async def go() -> None:
        async with wired(ManualClock(T0 + 200)) as w:
            await w.send(scrape(T0 + 60, 10, 2.0, ((0.1, 4), (1.0, 9), (math.inf, 10))))
            await w.send(scrape(T0 + 120, 16, 3.5, ((0.1, 5), (1.0, 14), (math.inf, 16))))
            totals = {(p.metric, p.tag("upper_bound")): (p.type, p.value, p.unit) for p in w.intake.points()}
            assert totals == {
                ("rpc_duration_seconds.count", None): (1, 6.0, None),
                ("rpc_duration_seconds.sum", None): (1, 1.5, "second"),
                ("rpc_duration_seconds.bucket", "0.1"): (1, 1.0, None),
                ("rpc_duration_seconds.bucket", "1.0"): (1, 5.0, None),
                ("rpc_duration_seconds.bucket", "inf"): (1, 6.0, None),
            }
            assert {p.tag("method") for p in w.intake.points()} == {"get"}

    run(go())


def test_summaries_become_counts_and_quantile_gauges() -> None:
    async def go() -> None:
        async with wired(ManualClock(T0 + 65)) as w:
            value = SummaryValue(40.0, 8.0, ((0.5, 0.1), (0.99, 0.7)))
            batch = Batch(
                "otel",
                (),
                ns(T0),
                ns(T0 + 60),
                [
                    Metric(
                        "gc_pause_seconds",
                        Kind.SUMMARY,
                        [Point((), value, ns(T0), ns(T0 + 60))],
                        Temporality.DELTA,
                        "s",
                    )
                ],
            )
            await w.send(batch)
            got = {(p.metric, p.tag("quantile")): (p.type, p.value, p.interval) for p in w.intake.points()}
            assert got == {
                ("gc_pause_seconds.count", None): (1, 40.0, 60),
                ("gc_pause_seconds.sum", None): (1, 8.0, 60),
                ("gc_pause_seconds.quantile", "0.5"): (3, 0.1, None),
                ("gc_pause_seconds.quantile", "0.99"): (3, 0.7, None),
            }

    run(go())


def test_namespace_host_and_global_tags() -> None:
    async def go() -> None:
        async with wired(namespace="acme", host="bridge-1", tags=["env:Prod", "team:ml ops"]) as w:
            await w.send(cerebras_batch(T0))
            point = w.intake.points("acme.requests_count")[0]
            assert {"env:prod", "team:ml_ops"} <= point.tags
            assert point.resources == (("host", "bridge-1"),)
            assert w.intake.checks[0]["check"] == "acme.inference_endpoint.status"
            assert w.intake.checks[0]["host_name"] == "bridge-1"
        async with wired(namespace="") as w:
            await w.send(cerebras_batch(T0))
            assert "requests_count" in w.intake.metric_names()

    run(go())


def test_tags_follow_datadogs_rules() -> None:
    async def go() -> None:
        async with wired() as w:
            start, end = ns(T0), ns(T0 + 60)
            attrs = (("Model Name", "Llama 3.3/70B"), ("empty", ""), ("long", "x" * 300))
            metric = Metric("requests-in flight", Kind.GAUGE, [Point(attrs, 1.0, start, end)])
            batch = Batch("p", (), start, end, [metric])
            await w.send(batch)
            point = w.intake.points("requests_in_flight")[0]
            assert "model_name:llama_3.3/70b" in point.tags
            assert not any(t.startswith("empty") for t in point.tags)
            assert max(len(t) for t in point.tags) == 200

    run(go())


def test_describe_prints_the_exact_body_and_summary_counts_custom_metrics() -> None:
    async def go() -> None:
        async with wired() as w:
            payloads = w.sink.prepare(cerebras_batch(T0)) + w.sink.prepare(cerebras_batch(T0, endpoint="ep-2"))
            text = w.sink.describe(payloads[0])
            header, body = text.split("\n", 1)
            assert header.startswith(f"POST {w.intake.url}/api/v2/series (")
            assert "Content-Encoding: zstd1" in header
            series = json.loads(body)["series"]
            assert len(series) == payloads[0].points
            for payload in payloads:
                await w.sink.deliver(payload)
            sent = next(r.json for r in w.intake.requests if r.path == SERIES_PATH)
            assert json.loads(body) == sent
            # per endpoint: 5 counts (4 families + 2 failure codes = 6), 4 latency x 5 statistics, status, cache_rate
            per_endpoint = 4 + 2 + 4 * len(STATISTICS) + 2
            assert w.sink.summary(payloads) == (
                f"dd: {2 * per_endpoint} distinct custom metrics (name + tag set) per window "
                f"[2027-01-15T08:00:00Z: {2 * per_endpoint}]; 2 service checks"
            )

    run(go())


def test_the_delivery_runner_honours_retry_after_and_counts_once() -> None:
    async def go() -> None:
        clock = ManualClock(T0 + 65)
        async with wired(clock) as w:
            runner = SinkRunner(w.sink, DeliveryConfig(retry_initial_seconds=1, retry_max_seconds=60), Context(clock))
            await runner.start()
            w.intake.fail_next(429, retry_after=30)
            runner.submit(cerebras_batch(T0))
            await runner.settle()
            assert w.intake.points() == []
            await clock.advance(29)
            await runner.settle()
            assert w.intake.points() == []
            await clock.advance(1)
            await runner.settle()
            assert w.intake.total("cerebras.requests_count") == 100.0
            assert [r.status for r in w.intake.requests if r.path == SERIES_PATH] == [429, 202]
            await runner.stop(grace=1)

    run(go())
