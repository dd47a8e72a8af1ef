"""Counter rules that mutation testing (docs/mutation.md) found unpinned: a wrong number here is silent.

The source side runs the real `prometheus` source against a real exposition
server: cumulative values, attributes and start times exactly (from `_created`,
from first sight, and from a reset, where an unchanged value is no reset), for
counters, histograms and summaries, and the bound of the start-time cache. The
Datadog side counts every re-sent window as stale and every first value as
held back, once per series.
"""

from __future__ import annotations

import math

import pytest

from bridge.clock import ManualClock
from bridge.model import NS_PER_S, Batch, HistogramValue, Kind, Metric, Point, SummaryValue, Temporality
from bridge.sources.classify import SeriesStarts
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


def test_the_start_time_cache_forgets_the_least_recently_updated_series_past_its_bound() -> None:
    starts = SeriesStarts(max_series=2)
    assert starts.start_for(("x", (("k", "1"),)), 1.0, 100, 100) == 100
    assert starts.start_for(("x", (("k", "2"),)), 1.0, 200, 200) == 200
    assert starts.start_for(("x", (("k", "1"),)), 2.0, 300, 300) == 100  # k=1 updated: k=2 is now the oldest
    assert starts.start_for(("x", (("k", "3"),)), 1.0, 400, 400) == 400  # a third series: k=2 is forgotten
    assert starts.start_for(("x", (("k", "3"),)), 2.0, 500, 500) == 400
    assert starts.start_for(("x", (("k", "1"),)), 3.0, 600, 600) == 100
    assert starts.start_for(("x", (("k", "2"),)), 2.0, 700, 700) == 700, "forgotten: starts again from first sight"


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
    assert (again.samples, dict(again.dropped)) == ([], {"stale": 2})


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
    sent = {head: (timestamp, value, interval) for head, timestamp, value, interval in second.samples}
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
    counted = {head: (timestamp, value, interval) for head, timestamp, value, interval in restarted.samples}
    assert counted['{"metric":"lat_seconds.bucket","type":1,"tags":["upper_bound:0.5"],'] == (int(T0) + 130, 8, 50)
    assert counted['{"metric":"lat_seconds.count","type":1,'] == (int(T0) + 130, 20, 50)
    assert counted['{"metric":"rpc_seconds.sum","type":1,"unit":"second",'] == (int(T0) + 130, 9.0, 50)
