"""Temporality normalisation: running totals, deltas from cumulative inputs, bounded state."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from bridge import telemetry
from bridge.model import NS_PER_S, Batch, HistogramValue, Kind, Metric, Point, Temporality
from bridge.series.temporality import TemporalityNormalizer

MINUTE = 60 * NS_PER_S
T0_NS = 1_800_000_000 * NS_PER_S
ORG_A = (("cerebras.organization_id", "org_a"),)
ORG_B = (("cerebras.organization_id", "org_b"),)


def normalizer(target: Temporality, name: str = "norm") -> TemporalityNormalizer:
    return TemporalityNormalizer(target, sink_name=name)


def delta_batch(minute: int, values: dict[str, float], resource: tuple = ORG_A) -> Batch:
    start = T0_NS + minute * MINUTE
    points = [Point((("endpoint", ep),), value, start, start + MINUTE) for ep, value in values.items()]
    metric = Metric("requests_count_total", Kind.COUNTER, points, Temporality.DELTA, "{request}")
    return Batch("cerebras", resource, start, start + MINUTE, [metric])


def cumulative_batch(minute: int, value: float | HistogramValue, series_start: int, kind: Kind = Kind.COUNTER) -> Batch:
    end = T0_NS + (minute + 1) * MINUTE
    metric = Metric("http_requests_total", kind, [Point((), value, series_start, end)], Temporality.CUMULATIVE)
    return Batch("node", (), end - MINUTE, end, [metric])


def series(batch: Batch) -> list[tuple[str, float, int, int]]:
    return [(dict(p.attributes).get("endpoint", ""), p.value, p.start_ns, p.end_ns) for _, p in batch.iter_points()]


def test_running_totals_keep_the_first_window_start_per_series() -> None:
    norm = normalizer(Temporality.CUMULATIVE)
    assert series(norm.normalize(delta_batch(0, {"a": 5}))) == [("a", 5, T0_NS, T0_NS + MINUTE)]
    out = norm.normalize(delta_batch(1, {"a": 7, "b": 1}))  # b appears later: its own start
    assert series(out) == [("a", 12, T0_NS, T0_NS + 2 * MINUTE), ("b", 1, T0_NS + MINUTE, T0_NS + 2 * MINUTE)]
    assert out.metrics[0].temporality is Temporality.CUMULATIVE
    # a missed window (gap) is lost upstream; the total just carries on
    assert series(norm.normalize(delta_batch(3, {"a": 1}))) == [
        ("a", 13, T0_NS, T0_NS + 4 * MINUTE),
        ("b", 1, T0_NS + MINUTE, T0_NS + 4 * MINUTE),
    ]


def test_series_of_different_resources_never_mix() -> None:
    norm = normalizer(Temporality.CUMULATIVE)
    norm.normalize(delta_batch(0, {"a": 5}, ORG_A))
    assert series(norm.normalize(delta_batch(1, {"a": 1}, ORG_B)))[0][1] == 1
    assert series(norm.normalize(delta_batch(1, {"a": 2}, ORG_A)))[0][1] == 7


def test_a_replayed_window_is_dropped_not_counted_twice() -> None:
    norm = normalizer(Temporality.CUMULATIVE, name="norm-replay")
    norm.normalize(delta_batch(0, {"a": 5}))
    assert norm.normalize(delta_batch(0, {"a": 5})).metrics == []
    assert series(norm.normalize(delta_batch(1, {"a": 1})))[0][1] == 6
    assert (
        telemetry.REGISTRY.get_sample_value(
            "bridge_dropped_points_total", {"sink": "norm-replay", "reason": "out_of_order"}
        )
        == 1
    )


def test_nan_is_sent_as_no_value_and_never_poisons_the_total() -> None:
    norm = normalizer(Temporality.CUMULATIVE)
    norm.normalize(delta_batch(0, {"a": 5}))
    [(_, value, start, _)] = series(norm.normalize(delta_batch(1, {"a": math.nan})))
    assert math.isnan(value) and start == T0_NS
    assert series(norm.normalize(delta_batch(2, {"a": 1})))[0][1] == 6


def test_delta_target_passes_deltas_through_untouched() -> None:
    batch = delta_batch(0, {"a": 5})
    assert normalizer(Temporality.DELTA).normalize(batch).metrics[0] is batch.metrics[0]


def test_gauges_and_up_down_totals_pass_through() -> None:
    gauge = Metric("cache_rate", Kind.GAUGE, [Point((), 0.5, T0_NS, T0_NS + MINUTE)])
    up_down = Metric("queue_depth", Kind.COUNTER, [Point((), 3.0, T0_NS, T0_NS + MINUTE)], Temporality.CUMULATIVE,
                     monotonic=False)  # fmt: skip
    batch = Batch("x", (), T0_NS, T0_NS + MINUTE, [gauge, up_down])
    out = normalizer(Temporality.DELTA).normalize(batch)
    assert out.metrics[0] is gauge and out.metrics[1] is up_down


def test_cumulative_to_delta_baseline_increase_and_resets() -> None:
    norm = normalizer(Temporality.DELTA)
    start = T0_NS - 3600 * NS_PER_S
    assert norm.normalize(cumulative_batch(0, 100.0, start)).metrics == []  # baseline only
    minute = lambda n: T0_NS + n * MINUTE  # noqa: E731
    assert series(norm.normalize(cumulative_batch(1, 130.0, start))) == [("", 30.0, minute(1), minute(2))]
    # the value dropped with the same start: restarted since the last observation
    assert series(norm.normalize(cumulative_batch(2, 4.0, start))) == [("", 4.0, minute(2), minute(3))]
    # a new start time: everything since that start is new
    restart = T0_NS + 3 * MINUTE + 20 * NS_PER_S
    assert series(norm.normalize(cumulative_batch(3, 9.0, restart))) == [("", 9.0, restart, T0_NS + 4 * MINUTE)]


def test_histograms_accumulate_and_restart_when_buckets_change() -> None:
    norm = normalizer(Temporality.CUMULATIVE)

    def batch(minute: int, value: HistogramValue) -> Batch:
        start = T0_NS + minute * MINUTE
        metric = Metric("latency_seconds", Kind.HISTOGRAM, [Point((), value, start, start + MINUTE)], Temporality.DELTA)
        return Batch("x", (), start, start + MINUTE, [metric])

    norm.normalize(batch(0, HistogramValue(3, 1.5, ((1.0, 2), (math.inf, 3)))))
    [(_, total, start, _)] = series(norm.normalize(batch(1, HistogramValue(1, 0.5, ((1.0, 1), (math.inf, 1))))))
    assert total == HistogramValue(4, 2.0, ((1.0, 3), (math.inf, 4))) and start == T0_NS
    [(_, restarted, start, _)] = series(norm.normalize(batch(2, HistogramValue(1, 2.0, ((5.0, 0), (math.inf, 1))))))
    assert restarted.count == 1 and start == T0_NS + 2 * MINUTE


# Bounds, idle expiry and carrying an absent series forward: tests/test_series.py (the table owns them).


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30))
def test_cumulative_then_delta_round_trips(counts: list[int]) -> None:
    """Accumulating deltas and differencing them back gives the original deltas (after the baseline)."""
    to_cumulative, to_delta = normalizer(Temporality.CUMULATIVE), normalizer(Temporality.DELTA)
    recovered = []
    for minute, count in enumerate(counts):
        cumulative = to_cumulative.normalize(delta_batch(minute, {"a": float(count)}))
        recovered += [value for _, value, _, _ in series(to_delta.normalize(cumulative))]
    assert recovered == [float(c) for c in counts[1:]]
