"""Properties of the normaliser's counter semantics, checked over generated scrape histories."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.clock import ManualClock
from bridge.model import NS_PER_S, Batch, Kind, Metric, Point, Temporality
from bridge.sinks.datadog.config import DatadogSinkConfig
from bridge.sinks.datadog.normalize import Normalizer
from tests.conftest import T0

#: one scrape: (seconds since the previous scrape, increase since it, restarted just before it)
scrapes = st.lists(st.tuples(st.integers(1, 300), st.integers(0, 10_000), st.booleans()), min_size=1, max_size=40)


def normalizer(clock: ManualClock) -> Normalizer:
    config = DatadogSinkConfig.model_validate({"type": "datadog", "url": "http://127.0.0.1:9", "api_key": "test-key"})
    return Normalizer(config, clock)


@settings(max_examples=200, deadline=None)
@given(scrapes)
def test_cumulative_counts_tile_time_and_add_up_to_the_true_increase(history: list[tuple[int, int, bool]]) -> None:
    clock = ManualClock(T0)
    counts = normalizer(clock)
    now, value, start = T0, 500.0, T0 - 1000
    true_increase = 0.0
    sent: list[tuple[int, float, int | None]] = []
    for index, (gap, increase, restarted) in enumerate(history):
        previous = now
        now += gap
        if restarted:  # a new process life: the counter starts again from zero
            value, start = 0.0, previous + gap / 2
        value += increase
        if index:
            true_increase += increase
        point = Point((("code", "200"),), value, int(start * NS_PER_S), int(now * NS_PER_S))
        metric = Metric("requests_total", Kind.COUNTER, [point], Temporality.CUMULATIVE, "{request}")
        clock._now = now
        out = counts.normalize(Batch("p", (), int(previous * NS_PER_S), int(now * NS_PER_S), [metric]))
        sent += [(ts, v, interval) for _, ts, v, interval in out.samples]

    assert sum(v for _, v, _ in sent) == true_increase
    assert len({ts for ts, _, _ in sent}) == len(sent)  # one point per timestamp: nothing overwrites
    for (ts, _, interval), (next_ts, _, _) in itertools.pairwise(sent):
        assert interval is not None and ts + interval <= next_ts  # windows never overlap


@given(st.lists(st.floats(0, 1e9, allow_nan=False), min_size=1, max_size=20))
def test_delta_counts_are_sent_as_they_are(values: list[float]) -> None:
    clock = ManualClock(T0 + 60 * len(values))
    counts = normalizer(clock)
    sent = []
    for minute, value in enumerate(values):
        start, end = int((T0 + 60 * minute) * NS_PER_S), int((T0 + 60 * minute + 60) * NS_PER_S)
        metric = Metric("tokens_total", Kind.COUNTER, [Point((), value, start, end)], Temporality.DELTA, "{token}")
        sent += counts.normalize(Batch("p", (), start, end, [metric])).samples
    assert [(ts, v, interval) for _, ts, v, interval in sent] == [
        (int(T0) + 60 * minute, value, 60) for minute, value in enumerate(values)
    ]
