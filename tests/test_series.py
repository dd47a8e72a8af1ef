"""The series table and the one counter rule, held to the same answer by every consumer.

The scenario table below is run against the rule itself, the OTLP sink's
cumulative->delta path, the Datadog sink's COUNT diffing and the source's start
times (a real classifier on real expositions): for the same observations each
must emit the same increases over the same intervals and drop the same points
for the same reasons.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import parser, telemetry
from bridge.clock import ManualClock
from bridge.model import NS_PER_S, Batch, HistogramValue, Kind, Metric, Point, Series, Temporality, Value
from bridge.presets import cerebras
from bridge.series import SeriesTable
from bridge.series.counter import Change, CounterState, accumulate, began, difference
from bridge.series.temporality import TemporalityNormalizer
from bridge.sources import classify
from bridge.sources.classify import Classifier, Ingested, Window
from tests.conftest import FIXTURES, T0
from tests.test_datadog_normalize import normalizer as datadog_normalizer

MINUTE = 60


def ns(seconds: float) -> int:
    return int(seconds * NS_PER_S)


def histogram(count: float, total: float, below_half: float) -> HistogramValue:
    return HistogramValue(count, total, ((0.5, below_half), (math.inf, count)))


# -- the table ----------------------------------------------------------------------------------------------
def tracked(owner: str) -> float | None:
    return telemetry.REGISTRY.get_sample_value("bridge_series_tracked", {"owner": owner})


def evicted(owner: str, reason: str) -> float:
    return telemetry.REGISTRY.get_sample_value("bridge_series_evicted_total", {"owner": owner, "reason": reason}) or 0


def seen(table: SeriesTable, label: str, at: int) -> Series:
    series = table.intern("f", label, (("k", label),))
    series.seen_ns = at
    return series


def test_a_series_is_interned_once_and_keeps_what_consumers_remember() -> None:
    table = SeriesTable("t-intern")
    first = table.intern("f", 'k="1"', (("k", "1"),))
    first.memo[7] = "encoded once"
    again = table.intern("f", 'k="1"', (("k", "ignored: already interned"),))
    assert again is first and again.memo[7] == "encoded once" and again.attributes == (("k", "1"),)
    assert table.intern("g", 'k="1"', ()) is not first, "the family is part of the key"
    assert len(table) == 2 and first.members is table.intern("f", 'k="2"', ()).members


def test_past_the_bound_the_least_recently_seen_go_first_and_are_counted() -> None:
    table = SeriesTable("t-limit", max_series=2, idle_seconds=3600)
    seen(table, "1", ns(T0))
    seen(table, "2", ns(T0 + 60))
    seen(table, "1", ns(T0 + 120))  # seen again: "2" is now the least recently seen
    seen(table, "3", ns(T0 + 120))
    table.sweep(ns(T0 + 120))
    assert sorted(s.key for s in table) == ["1", "3"]
    assert evicted("t-limit", "limit") == 1 and tracked("t-limit") == 2 and table.evictions == 1


def test_idle_series_expire_in_window_time_and_one_at_the_horizon_is_kept() -> None:
    table = SeriesTable("t-idle", idle_seconds=120)
    for label in ("a", "b"):
        seen(table, label, ns(T0))
    seen(table, "c", ns(T0 + 60))
    table.sweep(ns(T0 + 180))  # the horizon is T0+60: c is exactly there, a and b are past it
    assert [s.key for s in table] == ["c"] and evicted("t-idle", "idle") == 2 and tracked("t-idle") == 1


def test_a_series_that_just_reset_is_recently_seen_not_first_to_be_forgotten() -> None:
    """The old start-time cache kept a reset series' old recency, so the next new series evicted it."""
    classifier = Classifier(table=SeriesTable("t-reset", max_series=2))

    def scrape(minute: int, values: dict[str, float]) -> dict[str, int]:
        text = "# TYPE x_total counter\n" + "".join(f'x_total{{k="{k}"}} {v}\n' for k, v in values.items())
        window = Window(ns(T0 + 60 * minute), ns(T0 + 60 * (minute + 1)))
        (metric,) = classifier.ingest(text, window).metrics
        return {dict(s.attributes)["k"]: start for s, start in zip(metric.series, metric.starts, strict=True)}

    scrape(0, {"1": 5.0})
    scrape(1, {"2": 5.0})
    assert scrape(2, {"1": 1.0}) == {"1": ns(T0 + 120)}  # a reset: a new life from this window
    scrape(3, {"3": 1.0})  # a third series: "2" is the least recently seen
    assert scrape(4, {"1": 2.0}) == {"1": ns(T0 + 120)}, "k=1 kept its post-reset start"


# -- the shared scenario table ------------------------------------------------------------------------------
Observation = tuple[float, float, Value]  # (series start s, window end s, cumulative value)
FORGET_IDLE = "forget: idle"
FORGET_LIMIT = "forget: limit"
Event = Observation | str


@dataclass(frozen=True)
class Scenario:
    name: str
    events: list[Event]
    #: per observation: its change and, for DELTA and RESET, (increase, start s, end s)
    expected: list[tuple[Change, tuple[Value, float, float] | None]]
    kind: Kind = Kind.COUNTER


B, D, R, S = Change.BASELINE, Change.DELTA, Change.RESET, Change.STALE
BORN = T0 - 600
E1, E2, E3 = T0 + 60, T0 + 120, T0 + 180
SCENARIOS = [
    Scenario("first value", [(BORN, E1, 10.0)], [(B, None)]),
    Scenario(
        "steady increase",
        [(BORN, E1, 10.0), (BORN, E2, 15.0), (BORN, E3, 15.0)],
        [(B, None), (D, (5.0, E1, E2)), (D, (0.0, E2, E3))],
    ),
    Scenario("reset: the value fell", [(BORN, E1, 10.0), (BORN, E2, 4.0)], [(B, None), (R, (4.0, E1, E2))]),
    Scenario("reset: a new start time", [(BORN, E1, 10.0), (E1 + 30, E2, 12.0)], [(B, None), (R, (12.0, E1 + 30, E2))]),
    Scenario(
        "a window already counted, and an older one",
        [(BORN, E2, 10.0), (BORN, E2, 11.0), (BORN, E1, 12.0), (BORN, E3, 13.0)],
        [(B, None), (S, None), (S, None), (D, (3.0, E2, E3))],
    ),
    Scenario(
        "histogram: a bucket fell (a reset)",
        [(BORN, E1, histogram(10, 5.0, 4)), (BORN, E2, histogram(12, 6.0, 3))],
        [(B, None), (R, (histogram(12, 6.0, 3), E1, E2))],
        Kind.HISTOGRAM,
    ),
    Scenario(
        "histogram: only _sum fell (negative observations, no reset)",
        [(BORN, E1, histogram(10, 5.0, 4)), (BORN, E2, histogram(12, 4.0, 5))],
        [(B, None), (D, (histogram(2, -1.0, 1), E1, E2))],
        Kind.HISTOGRAM,
    ),
    Scenario(
        "an idle series returns",
        [(BORN, E1, 10.0), FORGET_IDLE, (BORN, E3, 14.0), (BORN, E3 + 60, 15.0)],
        [(B, None), (B, None), (D, (1.0, E3, E3 + 60))],
    ),
    Scenario(
        "a series evicted by the limit returns",
        [(BORN, E1, 10.0), FORGET_LIMIT, (BORN, E2, 14.0)],
        [(B, None), (B, None)],
    ),
]

#: What a consumer emitted for one observation: (increase, start s, end s), or the reason it dropped it.
Emitted = tuple[Value, float, float] | str
Consumer = Callable[[Scenario], list[Emitted]]


def _observations(scenario: Scenario, table: SeriesTable) -> list[tuple[Series, Observation]]:
    """Walk the events, forgetting the series through the table's own bound when told to."""
    out = []
    for event in scenario.events:
        if event == FORGET_IDLE:
            table.sweep(ns(E3 + 3600 * 10))
        elif event == FORGET_LIMIT:
            seen(table, "newcomer", ns(E3 + 3600 * 10))
            table.sweep(ns(E3))
        else:
            assert not isinstance(event, str)
            series = table.intern(scenario.name, "", ())
            series.seen_ns = ns(event[1])
            out.append((series, event))
    return out


def _table(name: str) -> SeriesTable:
    return SeriesTable(name, max_series=1, idle_seconds=3600)


def _expected(scenario: Scenario) -> list[Emitted]:
    reasons = {B: "first_value", S: "out_of_order"}
    return [emitted if emitted is not None else reasons[change] for change, emitted in scenario.expected]


def rule(scenario: Scenario) -> list[Emitted]:
    out: list[Emitted] = []
    table = _table(f"rule-{scenario.name}")
    for series, (start, end, value) in _observations(scenario, table):
        observed, series.memo[0] = difference(series.memo.get(0), ns(start), ns(end), value)
        if observed.change in (D, R):
            assert observed.value is not None
            out.append((observed.value, observed.start_ns / NS_PER_S, observed.end_ns / NS_PER_S))
        else:
            out.append({B: "first_value", S: "out_of_order"}[observed.change])
    return out


_VALUES = st.floats() | st.integers(-(2**70), 2**70) | st.builds(HistogramValue, st.floats(), st.floats(), st.just(()))


@settings(deadline=None)
@given(
    st.none() | st.builds(CounterState, st.integers(0, 2**62), _VALUES, st.integers(0, 2**62)),
    st.integers(0, 2**62),
    st.integers(0, 2**62),
    _VALUES,
)
def test_began_is_the_rules_answer_to_a_first_finite_float(
    state: CounterState | None, start: int, end: int, value: Value
) -> None:
    """The hot loops' shortcut for a first scrape answers as `difference` does, or leaves it to `difference`."""
    first = began(state, start, end, value)
    if state is None and isinstance(value, float) and math.isfinite(value):
        observed, expected = difference(None, start, end, value)
        assert observed.change is Change.BASELINE
        assert first == expected
    else:
        assert first is None


def _dropped(sink: str) -> dict[str, float]:
    return {
        reason: telemetry.REGISTRY.get_sample_value("bridge_dropped_points_total", {"sink": sink, "reason": reason})
        or 0
        for reason in ("first_value", "out_of_order")
    }


def otlp_delta(scenario: Scenario) -> list[Emitted]:
    sink = f"otlp-{scenario.name}"
    norm = TemporalityNormalizer(Temporality.DELTA, sink_name=sink)
    out: list[Emitted] = []
    for series, (start, end, value) in _observations(scenario, _table(sink)):
        metric = Metric("m", scenario.kind, temporality=Temporality.CUMULATIVE)
        metric = metric.with_columns([series], [value], [ns(start)], [ns(end)])
        before = _dropped(sink)
        normalized = norm.normalize(Batch("s", (), ns(end - MINUTE), ns(end), [metric]))
        points = [p for _, p in normalized.iter_points()]
        if points:
            ((increase, p_start, p_end),) = [(p.value, p.start_ns, p.end_ns) for p in points]
            out.append((increase, p_start / NS_PER_S, p_end / NS_PER_S))
        else:
            after = _dropped(sink)
            (reason,) = [r for r in after if after[r] != before[r]]
            out.append(reason)
    return out


def datadog(scenario: Scenario) -> list[Emitted]:
    """Datadog sends the increase as a COUNT stamped at its start with an interval: read those back."""
    clock = ManualClock(E3 + MINUTE)
    counts = datadog_normalizer(clock)
    out: list[Emitted] = []
    for series, (start, end, value) in _observations(scenario, _table(f"datadog-{scenario.name}")):
        metric = Metric("m", scenario.kind, temporality=Temporality.CUMULATIVE)
        metric = metric.with_columns([series], [value], [ns(start)], [ns(end)])
        normalized = counts.normalize(Batch("s", (), ns(end - MINUTE), ns(end), [metric]))
        if not normalized.samples:
            (reason,) = normalized.dropped
            out.append(reason)
            continue
        sent = {
            prefix.split('"')[3]: (timestamp, v, interval) for (prefix, _), timestamp, v, interval in normalized.samples
        }
        main = sent["m.count"] if scenario.kind is Kind.HISTOGRAM else sent["m"]
        timestamp, _, interval = main
        assert interval is not None
        if scenario.kind is Kind.HISTOGRAM:
            buckets = sorted(
                (float(tail.split("upper_bound:")[1].split('"')[0]), v)
                for (_, tail), _, v, _ in normalized.samples
                if "upper_bound" in tail
            )
            increase: Value = HistogramValue(sent["m.count"][1], sent["m.sum"][1], tuple(buckets))
        else:
            increase = main[1]
        out.append((increase, float(timestamp), float(timestamp + interval)))
    return out


CONSUMERS: dict[str, Consumer] = {"the rule": rule, "otlp delta": otlp_delta, "datadog": datadog}


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_consumer_gives_the_rule_s_answer(scenario: Scenario, consumer: str) -> None:
    assert CONSUMERS[consumer](scenario) == _expected(scenario)


def _exposition(value: Value) -> str:
    if isinstance(value, HistogramValue):
        buckets = "".join(
            f'h_bucket{{le="{"+Inf" if le == math.inf else le}"}} {count}\n' for le, count in value.buckets
        )
        return f"# TYPE h histogram\n{buckets}h_sum {value.sum}\nh_count {value.count}\n"
    return f"# TYPE c_total counter\nc_total {value}\n"


@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS if "start time" not in s.name and "already" not in s.name], ids=lambda s: s.name
)
def test_the_source_starts_a_new_life_exactly_where_the_rule_sees_one(scenario: Scenario) -> None:
    """A target that gives no start time: the source's start is its first window, renewed at each reset."""
    table = _table(f"source-{scenario.name}")
    classifier = Classifier(table=table)
    starts = []
    for event in scenario.events:
        if isinstance(event, str):
            _observations(Scenario(scenario.name, [event], []), table)
            continue
        _, end, value = event
        window = Window(ns(end - MINUTE), ns(end))
        (metric,) = classifier.ingest(_exposition(value), window).metrics
        starts.append(metric.starts[0] / NS_PER_S)
    expected, life = [], 0.0
    observations = [event for event in scenario.events if not isinstance(event, str)]
    for (_, end, _), (change, _) in zip(observations, scenario.expected, strict=True):
        if change in (B, R):
            life = end - MINUTE
        expected.append(life)
    assert starts == expected


def test_delta_inputs_become_running_totals_by_the_same_rule() -> None:
    """Per-window counts -> cumulative: the first window is sent as is, a re-sent one is never added twice,
    a change of kind or of bucket bounds starts a new life."""
    state = None
    emitted = []
    for start, end, delta in [
        (T0, E1, 5.0),
        (E1, E2, 3.0),
        (E1, E2, 3.0),
        (E2, E3, histogram(1, 1.0, 1)),
        (E3, E3 + 60, histogram(2, 1.0, 1)),
    ]:
        observed, state = accumulate(state, ns(start), ns(end), delta)
        emitted.append((observed.change, observed.value, observed.start_ns / NS_PER_S if observed.value else None))
    assert emitted == [
        (B, 5.0, T0),
        (D, 8.0, T0),
        (S, None, None),
        (R, histogram(1, 1.0, 1), E2),
        (D, histogram(3, 2.0, 2), E2),
    ]


def test_the_otlp_cumulative_sink_carries_a_series_forward_until_the_table_forgets_it() -> None:
    table = SeriesTable("t-carry", idle_seconds=180)
    norm = TemporalityNormalizer(Temporality.CUMULATIVE, sink_name="otlp-t-carry")

    def window(minute: int, values: dict[str, float]) -> list[tuple[str, Value, float]]:
        start, end = T0 + 60 * minute, T0 + 60 * (minute + 1)
        metric = Metric("requests_total", Kind.COUNTER, temporality=Temporality.DELTA)
        for code, value in values.items():
            series = table.intern(metric.name, code, (("code", code),))
            series.seen_ns = ns(end)
            metric.series.append(series)
            metric.values.append(value)
            metric.starts.append(ns(start))
            metric.ends.append(ns(end))
        table.sweep(ns(end))
        out = norm.normalize(Batch("s", (), ns(start), ns(end), [metric]))
        return [(dict(p.attributes)["code"], p.value, p.start_ns / NS_PER_S) for _, p in out.iter_points()]

    window(0, {"200": 5.0, "500": 2.0})
    assert window(1, {"200": 1.0}) == [("200", 6.0, T0), ("500", 2.0, T0)], "500 repeats its total"
    for minute in range(2, 6):
        out = window(minute, {"200": 1.0})
    assert out == [("200", 10.0, T0)], "idle for longer than series.idle_seconds: forgotten, not repeated"


def test_points_built_by_hand_intern_in_the_shared_table_by_name_and_attributes() -> None:
    one = Metric("hand_made", Kind.GAUGE, [Point((("a", "1"),), 1.0, 0, 1)])
    two = Metric("hand_made", Kind.GAUGE, [Point((("a", "1"),), 2.0, 1, 2)])
    assert one.series[0] is two.series[0] and one.points[0].value == 1.0 and two.points[0].start_ns == 1


# -- the parser-free path gives what the parser gives ------------------------------------------------------
FIXTURE_BODIES = sorted((FIXTURES / "cerebras").glob("*.prom")) + sorted((FIXTURES / "exporter").glob("*.prom"))
CEREBRAS_RULES = cerebras.rules(list(cerebras.STATISTIC_LABELS))


def _described(ingested: Ingested) -> list[tuple[object, ...]]:
    return [
        (m.name, m.kind, m.temporality, m.unit, [p.attributes for p in m.points], m.values, m.starts, m.ends)
        for m in ingested.metrics
    ]


def _varied(text: str, draw: st.DrawFn) -> str:
    """The same body with other values, and sometimes another shape (a moved, dropped or odd line)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        head, space, _ = line.rpartition(" ")
        if space and not line.lstrip().startswith("#") and draw(st.booleans()):
            value = draw(st.sampled_from(["0", "1.5", "NaN", "+Inf", "1e3", "1_0", "7 1700000000000"]))
            lines[i] = head + space + value
    change = draw(st.sampled_from(["none", "none", "swap", "drop", "blank", "comment"]))
    if change == "swap" and len(lines) > 2:
        a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        lines[a], lines[b] = lines[b], lines[a]
    elif change == "drop" and lines:
        del lines[draw(st.integers(0, len(lines) - 1))]
    elif change == "blank":
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "\r"])))
    elif change == "comment":
        lines.insert(draw(st.integers(0, len(lines))), "# a comment")
    return "\n".join(lines)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(FIXTURE_BODIES), st.data())
def test_a_recognised_scrape_classifies_exactly_as_a_parsed_one(path: Path, data: st.DataObject) -> None:
    """Two classifiers see the same scrapes; one may skip the parser, the other always parses: same metrics."""
    text = path.read_text()
    fast = Classifier(rules=CEREBRAS_RULES, resource_labels=frozenset({"organization_id"}))
    slow = Classifier(rules=CEREBRAS_RULES, resource_labels=frozenset({"organization_id"}))
    for minute in range(4):
        window = Window(ns(T0 + 60 * minute), ns(T0 + 60 * (minute + 1)))
        body = text if minute == 0 else _varied(text, data.draw)
        slow._learned = None  # always parsed
        expected, got = slow.ingest(body, window), fast.ingest(body, window)
        assert _described(got) == _described(expected) or _nan_equal(_described(got), _described(expected))
        assert (got.samples, got.parse_errors, fast.skipped.count) == (
            expected.samples,
            expected.parse_errors,
            slow.skipped.count,
        )
        assert fast.lifted == slow.lifted


#: Lines a learner may meet: blank, whitespace, comments (indented too), samples with odd or no values, no space.
_ODD_LINES = ["", " ", "\t", "\x1c", "\u00a0", "# c", "  # c", "#", "m 1", "m  1", "m 1 ", "m\t1", "m", "m 1_0", "m x"]


def _template_before(text: str, values: list[float]) -> list[tuple[str, bool]] | None:
    """What `_Learner.learned` learned before the template was compact (a loop per line): its rules, as heads."""
    remaining = iter(values)
    template = []
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped[0] == "#":
            template.append((line, False))
            continue
        value = next(remaining, None)
        head, space, token = line.rpartition(" ")
        if value is None or not space or "_" in token or not _reads_as(token, value):
            return None
        template.append((head + space, True))
    return None if next(remaining, None) is not None else template


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIXTURE_BODIES), st.data())
def test_a_body_is_learned_exactly_when_it_was_before(path: Path, data: st.DataObject) -> None:
    """Same learnability, same heads: on fixture bodies, varied or with odd lines, and values that may not match."""
    text = path.read_text()
    body = data.draw(st.sampled_from(["same", "varied", "odd lines"]))
    if body == "varied":
        text = _varied(text, data.draw)
    elif body == "odd lines":
        lines = text.split("\n")
        for _ in range(data.draw(st.integers(1, 3))):
            lines.insert(data.draw(st.integers(0, len(lines))), data.draw(st.sampled_from(_ODD_LINES)))
        text = "\n".join(lines)
    values = [sample.value for family in parser.parse(text).families for sample in family.samples]
    change = data.draw(st.sampled_from(["none", "none", "none", "other", "fewer", "more"]))
    if change == "other" and values:
        values[data.draw(st.integers(0, len(values) - 1))] += 1
    elif change == "fewer" and values:
        values.pop()
    elif change == "more":
        values.append(1.0)
    learner = classify._Learner()
    learner.samples = values
    learned = learner.learned(text, [], 0)
    expected = _template_before(text, values)
    assert (learned is None) == (expected is None)
    if learned is not None:
        heads = [text[start : start + length] for start, length in zip(learned.starts, learned.lengths, strict=True)]
        assert list(zip(heads, map(bool, learned.samples), strict=True)) == expected


def _reads_as(token: str, value: float) -> bool:
    try:
        read = float(token)
    except ValueError:
        return False
    return read == value or (read != read and value != value)


def _nan_equal(a: object, b: object) -> bool:
    """Equality where NaN equals NaN (a value of a scrape may be NaN)."""
    return repr(a) == repr(b)


def test_a_scrape_of_the_same_shape_skips_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (FIXTURES / "cerebras" / "two-endpoints-mixed-labels.prom").read_text()
    classifier = Classifier(rules=CEREBRAS_RULES, resource_labels=frozenset({"organization_id"}))
    classifier.ingest(text, Window(ns(T0), ns(T0 + 60)))
    parsed = []
    monkeypatch.setattr(classify, "parse", lambda *a, **k: parsed.append(1) or parser.parse(*a, **k))
    doubled = "\n".join(_doubled(line) for line in text.split("\n"))
    assert doubled != text
    classifier.ingest(doubled, Window(ns(T0 + 60), ns(T0 + 120)))
    assert parsed == [], "same lines, other values: recognised"
    classifier.ingest(text + "new_family 1\n", Window(ns(T0 + 120), ns(T0 + 180)))
    assert parsed == [1], "a new line: parsed, and learned again"


def _doubled(line: str) -> str:
    head, space, token = line.rpartition(" ")
    return line if line.startswith("#") or not space else f"{head} {float(token) * 2}"
