"""The one counter rule: what an observation of a counter-like series means.

Every consumer of counter state goes through `difference` (a cumulative value
in, the increase since the last one out: the source's start times, OTLP's
cumulative->delta and Datadog's COUNT diffing) or `accumulate` (a per-window
delta in, the running total out: OTLP's and remote write's delta->cumulative).
So every sink gives the same answer to the same events:

| event                                        | change    | what a delta consumer emits            |
|----------------------------------------------|-----------|----------------------------------------|
| first observation of the series              | BASELINE  | nothing (its value holds unseen history) |
| value >= previous, same start                | DELTA     | value - previous over [previous end, end) |
| value < previous, or a new start time,       | RESET     | the value itself, over [max(start, previous end), end) |
| or (histograms) a bucket or the count fell,  |           |                                        |
| or the bucket bounds changed                 |           |                                        |
| window end <= the last one counted           | STALE     | nothing (counting it again would double it) |

A histogram or summary is judged as a whole by its count and buckets: a dip
in `_sum` alone is not a reset (negative observations make `_sum` fall), so
its delta may be negative. A NaN observation (nothing recorded) never enters
the state; callers pass those through as they are.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from bridge.model import HistogramValue, SummaryValue, Value


class Change(enum.Enum):
    BASELINE = "baseline"
    DELTA = "delta"
    RESET = "reset"
    STALE = "stale"


#: The drop reason every sink counts for a STALE observation (bridge_dropped_points_total{reason}).
STALE_REASON = "out_of_order"
#: The drop reason for a BASELINE a delta consumer cannot send.
BASELINE_REASON = "first_value"


@dataclass(slots=True)
class CounterState:
    """A series' counter memory: its current life's start, the last (cumulative) value, the last window end."""

    start_ns: int
    value: Value
    end_ns: int


def has_no_value(value: Value) -> bool:
    """NaN (an idle endpoint's statistic) or a histogram/summary whose count is NaN: nothing was recorded."""
    if isinstance(value, HistogramValue | SummaryValue):
        return math.isnan(value.count)
    return value != value


def _same_bounds(a: HistogramValue, b: HistogramValue) -> bool:
    return len(a.buckets) == len(b.buckets) and all(x[0] == y[0] for x, y in zip(a.buckets, b.buckets, strict=True))


def _increase(current: Value, previous: Value) -> Value | None:
    """current - previous, or None when current cannot follow previous (a reset)."""
    if isinstance(current, float | int) and isinstance(previous, float | int):
        return current - previous if current >= previous else None
    if isinstance(current, HistogramValue) and isinstance(previous, HistogramValue):
        if not _same_bounds(current, previous) or current.count < previous.count:
            return None
        buckets = tuple((le, a - b) for (le, a), (_, b) in zip(current.buckets, previous.buckets, strict=True))
        if any(count < 0 for _, count in buckets):
            return None
        return HistogramValue(current.count - previous.count, current.sum - previous.sum, buckets)
    if isinstance(current, SummaryValue) and isinstance(previous, SummaryValue):
        if current.count < previous.count:
            return None
        return SummaryValue(current.count - previous.count, current.sum - previous.sum, current.quantiles)
    return None  # the kind changed: a new life


def _total(total: Value, delta: Value) -> Value | None:
    """total + delta, or None when they cannot be added (a kind or bucket-bounds change: start over)."""
    if isinstance(total, float | int) and isinstance(delta, float | int):
        return total + delta
    if isinstance(total, HistogramValue) and isinstance(delta, HistogramValue):
        if not _same_bounds(total, delta):
            return None
        buckets = tuple((le, a + b) for (le, a), (_, b) in zip(total.buckets, delta.buckets, strict=True))
        return HistogramValue(total.count + delta.count, total.sum + delta.sum, buckets)
    if isinstance(total, SummaryValue) and isinstance(delta, SummaryValue):
        return SummaryValue(total.count + delta.count, total.sum + delta.sum, delta.quantiles)
    return None


@dataclass(slots=True)
class Observed:
    """What one observation meant, and for a delta consumer what to emit: `value` over [start_ns, end_ns)."""

    change: Change
    value: Value | None = None
    start_ns: int = 0
    end_ns: int = 0


_STALE = Observed(Change.STALE)
_BASELINE = Observed(Change.BASELINE)  # shared, as _STALE: nothing to emit, nothing to change


def difference(state: CounterState | None, start_ns: int, end_ns: int, value: Value) -> tuple[Observed, CounterState]:
    """A cumulative observation (value since start_ns, at end_ns) against the series' state.

    Returns the meaning and the state to keep (the same object, updated, unless it was None).
    """
    if state is None:
        return _BASELINE, CounterState(start_ns, value, end_ns)
    if end_ns <= state.end_ns:
        return _STALE, state
    increase = _increase(value, state.value) if start_ns == state.start_ns else None
    if increase is None:
        observed = Observed(Change.RESET, value, max(start_ns, state.end_ns), end_ns)
    else:
        observed = Observed(Change.DELTA, increase, state.end_ns, end_ns)
    state.start_ns, state.value, state.end_ns = start_ns, value, end_ns
    return observed, state


def grew(state: CounterState | None, start_ns: int, end_ns: int, value: Value) -> tuple[float, int] | None:
    """`difference`'s usual answer, for the hot loops: a finite float that did not fall since the last
    observation of the same life, in a later window. Returns the increase and where it began (the last
    window's end), the state moved on; None for anything else, which `difference` judges."""
    if (
        state is None
        or type(value) is not float
        or type(state.value) is not float
        or start_ns != state.start_ns
        or end_ns <= state.end_ns
        or not value >= state.value
        or value - value != 0.0  # inf or NaN
    ):
        return None
    increase, since = value - state.value, state.end_ns
    state.value, state.end_ns = value, end_ns
    return increase, since


def began(state: CounterState | None, start_ns: int, end_ns: int, value: Value) -> CounterState | None:
    """`difference`'s answer to a series' first finite float, for the hot loops of a first scrape: the state it
    starts (the observation is a BASELINE); None for anything else, which `difference` judges."""
    if state is not None or type(value) is not float or value - value != 0.0:  # inf or NaN
        return None
    return CounterState(start_ns, value, end_ns)


def accumulate(state: CounterState | None, start_ns: int, end_ns: int, delta: Value) -> tuple[Observed, CounterState]:
    """A per-window delta over [start_ns, end_ns) added to the series' running total.

    The result's value is the running total since the state's start (which is the
    first window this process saw for the series, or the window where a kind or
    bucket-bounds change started a new life).
    """
    if state is None:
        state = CounterState(start_ns, delta, end_ns)
        return Observed(Change.BASELINE, delta, start_ns, end_ns), state
    if end_ns <= state.end_ns:
        return _STALE, state
    total = _total(state.value, delta)
    if total is None:
        state.start_ns, state.value, state.end_ns = start_ns, delta, end_ns
        return Observed(Change.RESET, delta, start_ns, end_ns), state
    state.value, state.end_ns = total, end_ns
    return Observed(Change.DELTA, total, state.start_ns, end_ns), state
