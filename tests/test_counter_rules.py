"""Counter rules that mutation testing (docs/mutation.md) found unpinned: a wrong number here is silent.

The source side runs the real `prometheus` source against a real exposition
server: cumulative values, attributes and start times exactly (from `_created`,
from first sight, and from a reset, where an unchanged value is no reset), for
counters, histograms and summaries. The Datadog side counts every re-sent
window as out of order and every first value as held back, once per series.
"""

from __future__ import annotations

import math

import pytest

from bridge.clock import ManualClock
from bridge.model import NS_PER_S, Batch, HistogramValue, Kind, Metric, Point, SummaryValue, Temporality
from bridge.series.temporality import TemporalityNormalizer
from tests.conftest import T0, run
from tests.servers import ExpositionServer, Response
from tests.test_datadog_normalize import normalizer
from tests.test_prometheus_source import make_source, scrape

OPENMETRICS = {"Content-Type": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
CREATED = 1_700_000_000.5
#: one scrape a minute; the queue "b" series has a _created sample, and a series follows it
EXPOSITION = """\
# TYPE jobs counter
jobs_total{{queue="b"}} 7
jobs_created{{queue="b"}} {created}
jobs_total{{queue="a"}} {a}
jobs_total{{queue="c"}} {c}
# TYPE latency histogram
latency_bucket{{le="0.5"}} 3
latency_bucket{{le="+Inf"}} {count}
latency_count {count}
latency_sum 1.5
latency_created {created}
# TYPE rpc summary
rpc{{method="get",quantile="0.5"}} 0.1
rpc_count{{method="get"}} {count}
rpc_sum{{method="get"}} 2.0
rpc{{method="put",quantile="0.5"}} 0.1
rpc_count{{method="put"}} 1
rpc_sum{{method="put"}} 0.5
# EOF
"""
#: (a, c, histogram and summary count) per scrape: a rises, stays, drops (a reset); c never drops
VALUES = [(10, 5, 5), (25, 5, 8), (25, 6, 8), (4, 6, 2)]
SCRAPES = [T0 + 5 + 60 * minute for minute in range(len(VALUES))]


def ns(seconds: float) -> int:
    return int(seconds * NS_PER_S)


def test_cumulative_values_and_start_times_are_exact(exposition_server: ExpositionServer, clock: ManualClock) -> None:
    exposition_server.respond(
        *[
            Response(body=EXPOSITION.format(a=a, c=c, count=count, created=CREATED), headers=OPENMETRICS)
            for a, c, count in VALUES
        ]
    )
    batches = run(scrape(make_source(exposition_server.url, clock), clock, *SCRAPES))
    first_seen = ns(SCRAPES[0] - 60)  # the first scrape covers the interval before it
    reset_at = ns(SCRAPES[2])  # the window of the scrape that saw the drop starts at the previous scrape
    starts = [first_seen] * 3 + [reset_at]  # of the series that drop in the last scrape (a, the "get" summary)
    for batch, (a, c, count), now, start in zip(batches, VALUES, SCRAPES, starts, strict=True):
        assert batch is not None
        metrics = {m.name: m for m in batch.metrics}
        assert [(p.attributes, p.value, p.start_ns, p.end_ns) for p in metrics["jobs"].points] == [
            ((("queue", "b"),), 7.0, ns(CREATED), ns(now)),
            ((("queue", "a"),), float(a), start, ns(now)),
            ((("queue", "c"),), float(c), first_seen, ns(now)),
        ]
        (histogram,) = metrics["latency"].points
        assert (histogram.value.count, histogram.start_ns, histogram.end_ns) == (count, ns(CREATED), ns(now))
        assert [(p.attributes, p.value.count, p.start_ns, p.end_ns) for p in metrics["rpc"].points] == [
            ((("method", "get"),), count, start, ns(now)),
            ((("method", "put"),), 1, first_seen, ns(now)),  # its own series: the other's counts are no reset
        ]


@pytest.mark.parametrize("temporality", ["delta", "cumulative"])
def test_a_counter_rule_normalises_its_statistic_label_and_a_created_sample_is_never_a_point(
    exposition_server: ExpositionServer, clock: ManualClock, temporality: str
) -> None:
    labels = '{percentile="p95",queue="a"}'
    body = f"# TYPE work counter\nwork_total{labels} 3\nwork_created{labels} {CREATED}\n# EOF\n"
    exposition_server.respond(Response(body=body, headers=OPENMETRICS))
    rule = {"match": "work", "kind": "counter", "temporality": temporality, "statistic_labels": ["percentile"]}
    source = make_source(exposition_server.url, clock, families=[rule])
    (batch,) = run(scrape(source, clock, T0 + 5))
    (metric,) = batch.metrics
    start = ns(T0 - 55) if temporality == "delta" else ns(CREATED)  # a delta covers its window
    assert [(p.attributes, p.value, p.start_ns) for p in metric.points] == [
        ((("queue", "a"), ("statistic", "p95")), 3.0, start)
    ]


def test_datadog_counts_each_held_back_first_value_and_each_stale_window() -> None:
    clock = ManualClock(T0 + 120)
    counts = normalizer(clock)

    def cumulative(end: float, value: float) -> Batch:
        points = [Point((("code", code),), value, ns(T0 - 600), ns(end)) for code in ("200", "500")]
        metric = Metric("requests_total", Kind.COUNTER, points, Temporality.CUMULATIVE, "{request}")
        return Batch("p", (), ns(end - 60), ns(end), [metric])

    first = counts.normalize(cumulative(T0 + 60, 10))
    assert (first.samples, dict(first.dropped)) == ([], {"first_value": 2})
    second = counts.normalize(cumulative(T0 + 120, 15))
    assert [(timestamp, value, interval) for _, timestamp, value, interval in second.samples] == [
        (int(T0) + 60, 5.0, 60),
        (int(T0) + 60, 5.0, 60),
    ]
    again = counts.normalize(cumulative(T0 + 120, 15))  # the same window once more: never counted twice
    assert (again.samples, dict(again.dropped)) == ([], {"out_of_order": 2})


def test_datadog_counts_the_increase_of_every_cumulative_histogram_and_summary_part() -> None:
    """Each count-like part is diffed like a counter; quantiles are gauges at the point's end, in its unit."""
    counts = normalizer(ManualClock(T0 + 120))
    born = ns(T0 - 600)

    def window(end: float, count: float, total: float, below_half: float, median: float, start: int = born) -> Batch:
        histogram = HistogramValue(count, total, ((0.5, below_half), (math.inf, count)))
        summary = SummaryValue(count, total, ((0.5, median),))
        metrics = [
            Metric("lat_seconds", Kind.HISTOGRAM, [Point((), histogram, start, ns(end))], Temporality.CUMULATIVE, "s"),
            Metric("rpc_seconds", Kind.SUMMARY, [Point((), summary, start, ns(end))], Temporality.CUMULATIVE, "s"),
        ]
        return Batch("p", (), ns(end - 60), ns(end), metrics)

    counts.normalize(window(T0 + 60, 10, 5.0, 4, 0.1))
    second = counts.normalize(window(T0 + 120, 16, 8.0, 7, 0.2))
    sent = {"".join(head): (timestamp, value, interval) for head, timestamp, value, interval in second.samples}
    minute = int(T0) + 60
    assert sent == {
        '{"metric":"lat_seconds.count","type":1,': (minute, 6, 60),
        '{"metric":"lat_seconds.sum","type":1,"unit":"second",': (minute, 3.0, 60),
        '{"metric":"lat_seconds.bucket","type":1,"tags":["upper_bound:0.5"],': (minute, 3, 60),
        '{"metric":"lat_seconds.bucket","type":1,"tags":["upper_bound:inf"],': (minute, 6, 60),
        '{"metric":"rpc_seconds.count","type":1,': (minute, 6, 60),
        '{"metric":"rpc_seconds.sum","type":1,"unit":"second",': (minute, 3.0, 60),
        '{"metric":"rpc_seconds.quantile","type":3,"unit":"second","tags":["quantile:0.5"],': (minute + 60, 0.2, None),
    }
    # The exporter restarted at T0+130 and has counted more since than before: a new start time is a reset,
    # so each part counts its whole value, from the restart.
    restarted = counts.normalize(window(T0 + 180, 20, 9.0, 8, 0.3, start=ns(T0 + 130)))
    counted = {"".join(head): (timestamp, value, interval) for head, timestamp, value, interval in restarted.samples}
    assert counted['{"metric":"lat_seconds.bucket","type":1,"tags":["upper_bound:0.5"],'] == (int(T0) + 130, 8, 50)
    assert counted['{"metric":"lat_seconds.count","type":1,'] == (int(T0) + 130, 20, 50)
    assert counted['{"metric":"rpc_seconds.sum","type":1,"unit":"second",'] == (int(T0) + 130, 9.0, 50)


# -- the OTLP normaliser (cumulative -> delta), pinned where mutation testing found it unpinned ------------------
def _otlp_delta_norm(name: str) -> TemporalityNormalizer:
    return TemporalityNormalizer(Temporality.DELTA, sink_name=name)


def _cumulative(minute: int, value: float | HistogramValue, kind: Kind = Kind.COUNTER, name: str = "c") -> Batch:
    end = ns(T0) + (minute + 1) * 60 * NS_PER_S
    metric = Metric(name, kind, [Point((), value, ns(T0 - 600), end)], Temporality.CUMULATIVE)
    return Batch("node", (), end - 60 * NS_PER_S, end, [metric])


def _otlp_points(batch: Batch) -> list[tuple[object, int, int]]:
    return [(p.value, p.start_ns, p.end_ns) for _, p in batch.iter_points()]


def test_otlp_delta_of_an_unchanged_counter_or_histogram_is_zero_not_a_reset() -> None:
    norm = _otlp_delta_norm("otlp-unchanged")
    minute_end = [ns(T0) + (m + 1) * 60 * NS_PER_S for m in range(3)]
    assert _otlp_points(norm.normalize(_cumulative(0, 10.0))) == []  # a baseline
    assert _otlp_points(norm.normalize(_cumulative(1, 10.0))) == [(0.0, minute_end[0], minute_end[1])]
    assert _otlp_points(norm.normalize(_cumulative(2, 15.0))) == [(5.0, minute_end[1], minute_end[2])]

    def histogram(count: float, total: float, below_half: float) -> HistogramValue:
        return HistogramValue(count, total, ((0.5, below_half), (math.inf, count)))

    norm.normalize(_cumulative(0, histogram(10, 5.0, 4), Kind.HISTOGRAM, "h"))
    unchanged = norm.normalize(_cumulative(1, histogram(10, 5.0, 4), Kind.HISTOGRAM, "h"))
    assert _otlp_points(unchanged) == [(histogram(0, 0.0, 0), minute_end[0], minute_end[1])]
    grown = norm.normalize(_cumulative(2, histogram(16, 8.0, 7), Kind.HISTOGRAM, "h"))
    assert _otlp_points(grown) == [(histogram(6, 3.0, 3), minute_end[1], minute_end[2])]


def test_otlp_delta_of_a_no_value_point_starts_where_the_series_left_off_and_a_resent_window_is_dropped() -> None:
    norm = _otlp_delta_norm("otlp-nan")
    norm.normalize(_cumulative(0, 10.0))
    minute_end = [ns(T0) + (m + 1) * 60 * NS_PER_S for m in range(3)]
    ((value, start, end),) = _otlp_points(norm.normalize(_cumulative(1, math.nan)))
    assert math.isnan(value) and (start, end) == (minute_end[0], minute_end[1])  # type: ignore[arg-type]
    assert _otlp_points(norm.normalize(_cumulative(1, 12.0))) == [(2.0, minute_end[0], minute_end[1])]
    assert _otlp_points(norm.normalize(_cumulative(1, 12.0))) == [], "the same window again is never counted twice"


def _two_series(minute: int, values: dict[str, float], temporality: Temporality) -> Batch:
    end = ns(T0) + (minute + 1) * 60 * NS_PER_S
    start = ns(T0 - 600) if temporality is Temporality.CUMULATIVE else end - 60 * NS_PER_S
    points = [Point((("code", code),), value, start, end) for code, value in values.items()]
    return Batch("node", (), end - 60 * NS_PER_S, end, [Metric("r", Kind.COUNTER, points, temporality)])


def test_otlp_a_first_point_without_a_value_keeps_its_own_start_in_either_direction() -> None:
    for target in (Temporality.CUMULATIVE, Temporality.DELTA):
        norm = TemporalityNormalizer(target, sink_name=f"otlp-first-nan-{target.value}")
        source = Temporality.DELTA if target is Temporality.CUMULATIVE else Temporality.CUMULATIVE
        batch = _two_series(0, {"200": math.nan}, source)
        ((value, start, _),) = _otlp_points(norm.normalize(batch))
        assert math.isnan(value) and start == batch.metrics[0].points[0].start_ns  # type: ignore[arg-type]


def test_otlp_a_histogram_whose_buckets_changed_is_a_reset_not_a_difference() -> None:
    norm = _otlp_delta_norm("otlp-rebucketed")
    first = HistogramValue(10, 5.0, ((0.5, 4), (math.inf, 10)))
    norm.normalize(_cumulative(0, first, Kind.HISTOGRAM, "h"))
    rebucketed = HistogramValue(12, 6.0, ((0.25, 5), (math.inf, 12)))  # same length, other bounds, none lower
    ((value, start, end),) = _otlp_points(norm.normalize(_cumulative(1, rebucketed, Kind.HISTOGRAM, "h")))
    assert value == rebucketed, "counted from its start as a new life, not subtracted across other bounds"
    assert (start, end) == (ns(T0) + 60 * NS_PER_S, ns(T0) + 120 * NS_PER_S)


def test_otlp_delta_target_never_repeats_an_absent_series() -> None:
    norm = _otlp_delta_norm("otlp-absent")
    norm.normalize(_two_series(0, {"200": 10.0, "500": 1.0}, Temporality.CUMULATIVE))  # baselines
    out = norm.normalize(_two_series(1, {"200": 15.0}, Temporality.CUMULATIVE))
    assert [(dict(p.attributes)["code"], p.value) for _, p in out.iter_points()] == [("200", 5.0)]


def test_otlp_carried_forward_totals_never_go_back_in_time_or_repeat_a_window() -> None:
    norm = TemporalityNormalizer(Temporality.CUMULATIVE, sink_name="otlp-carry")
    norm.normalize(_two_series(1, {"200": 5.0, "500": 1.0}, Temporality.DELTA))
    assert _otlp_points(norm.normalize(_two_series(1, {"200": 5.0}, Temporality.DELTA))) == [], "a re-sent window"
    assert _otlp_points(norm.normalize(_two_series(0, {"200": 2.0}, Temporality.DELTA))) == [], "an older window"
    # One batch whose points end at different times: each point once, nothing carried for a present series.
    mixed = _two_series(2, {"200": 1.0, "500": 1.0}, Temporality.DELTA)
    early = mixed.metrics[0].points[0]
    mixed.metrics[0].starts[0], mixed.metrics[0].ends[0] = early.start_ns - 30 * NS_PER_S, early.end_ns - 30 * NS_PER_S
    assert sorted(_otlp_points(norm.normalize(mixed)), key=str) == sorted(
        [(6.0, ns(T0) + 60 * NS_PER_S, early.end_ns - 30 * NS_PER_S), (2.0, ns(T0) + 60 * NS_PER_S, early.end_ns)],
        key=str,
    )


def test_otlp_a_family_that_changes_its_type_starts_a_new_life_in_either_direction() -> None:
    histogram = HistogramValue(4, 2.0, ((0.5, 3), (math.inf, 4)))
    to_delta = _otlp_delta_norm("otlp-retyped-delta")
    to_delta.normalize(_cumulative(0, 10.0, Kind.COUNTER, "x"))
    assert [v for v, _, _ in _otlp_points(to_delta.normalize(_cumulative(1, histogram, Kind.HISTOGRAM, "x")))] == [
        histogram
    ]
    assert [v for v, _, _ in _otlp_points(to_delta.normalize(_cumulative(2, 20.0, Kind.COUNTER, "x")))] == [20.0]

    def delta(minute: int, value: float | HistogramValue, kind: Kind) -> Batch:
        end = ns(T0) + (minute + 1) * 60 * NS_PER_S
        metric = Metric("x", kind, [Point((), value, end - 60 * NS_PER_S, end)], Temporality.DELTA)
        return Batch("node", (), end - 60 * NS_PER_S, end, [metric])

    to_cumulative = TemporalityNormalizer(Temporality.CUMULATIVE, sink_name="otlp-retyped")
    to_cumulative.normalize(delta(0, 10.0, Kind.COUNTER))
    assert [v for v, _, _ in _otlp_points(to_cumulative.normalize(delta(1, histogram, Kind.HISTOGRAM)))] == [histogram]
    assert [v for v, _, _ in _otlp_points(to_cumulative.normalize(delta(2, 20.0, Kind.COUNTER)))] == [20.0]


def test_a_counter_sample_with_an_unusable_timestamp_costs_that_sample_only(
    exposition_server: ExpositionServer, clock: ManualClock
) -> None:
    """Cumulative and delta counters alike: the bad sample is skipped and counted, its neighbours are kept."""
    exposition_server.respond(
        Response(
            200,
            '# TYPE jobs_total counter\njobs_total{q="a"} 1 NaN\njobs_total{q="b"} 2\n'
            '# TYPE per_minute_total counter\nper_minute_total{q="a"} 3 -5000\nper_minute_total{q="b"} 4\n',
        )
    )
    source = make_source(
        exposition_server.url,
        clock,
        "odd-counters",
        families=[{"match": "per_minute", "kind": "counter", "temporality": "delta"}],
    )
    (batch,) = run(scrape(source, clock, T0 + 5))
    assert batch is not None
    kept = {m.name: (m.temporality, [(p.attributes, p.value) for p in m.points]) for m in batch.metrics}
    assert kept == {
        "jobs": (Temporality.CUMULATIVE, [((("q", "b"),), 2.0)]),
        "per_minute": (Temporality.DELTA, [((("q", "b"),), 4.0)]),
    }
    assert source.classifier.skipped.count == 2
