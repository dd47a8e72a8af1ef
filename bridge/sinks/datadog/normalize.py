"""What each model metric means on Datadog's side; stateful per series (counter memory), no I/O.

| model metric                          | Datadog                                                            |
|---------------------------------------|--------------------------------------------------------------------|
| counter, delta                        | COUNT, interval = window length, timestamp = window start          |
| counter, cumulative, monotonic        | COUNT of the increase since the previous point, over [prev, end);  |
|                                       | a reset (value drops or start changes) counts the value since it;  |
|                                       | the first point is only remembered unless `flush_first_value`      |
| counter, cumulative, non-monotonic    | GAUGE of the value, at the point's end                             |
| gauge                                 | GAUGE, at the window start (statistic -> tag or name suffix)       |
| histogram                             | `<name>.count`, `<name>.sum` COUNT; `<name>.bucket` COUNT per      |
|                                       | `upper_bound:<le>` tag, cumulative in le (the agent's defaults)    |
| summary                               | `<name>.count`, `<name>.sum` COUNT; `<name>.quantile` GAUGE per    |
|                                       | `quantile:<q>` tag                                                 |

Histogram and summary parts follow their metric's temporality like counters;
cumulative inputs are judged by the one counter rule (bridge/series/counter.py),
a histogram or summary as a whole (so its parts reset together), with the same
drop reasons as every sink: `first_value` for a baseline, `out_of_order` for a
window already counted. Each series' encoded identity and counter state live
on its series-table entry, so the table's bound is theirs too.
Windowed values are stamped at their window start, as DogStatsD stamps its
buckets, so a minute's counts and percentiles line up. NaN and +-Inf are never
sent: they are counted as dropped (`nan`, `inf`), as are points Datadog would
reject for age (`too_old` > 1 h, `too_new` > 10 min ahead of the clock).
Names: the namespace (by default the batch's own hint, `cerebras` for the
Cerebras preset), then the metric name with `_total` stripped from counters, as Datadog's OpenMetrics
check does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from typing import Any, cast

from bridge import speedups
from bridge.clock import Clock
from bridge.model import NS_PER_S, Attrs, Batch, HistogramValue, Kind, Metric, SummaryValue, Temporality, Value
from bridge.model import Series as Entry
from bridge.series import new_slot
from bridge.series.counter import (
    BASELINE_REASON,
    STALE_REASON,
    Change,
    CounterState,
    began,
    difference,
    grew,
    has_no_value,
)
from bridge.sinks.datadog import encode
from bridge.sinks.datadog.config import AUTO, DatadogSinkConfig

STATISTIC = "statistic"
MAX_PAST_SECONDS = 3600
MAX_FUTURE_SECONDS = 600

#: endpoint status gauge value -> service check status (0 OK, 2 CRITICAL, 3 UNKNOWN)
CHECK_STATUS = {1.0: 0, 0.0: 2, -1.0: 3}
CHECK_UNKNOWN = 3

#: UCUM-style model units -> Datadog unit names; units without a Datadog name are left off.
UNITS = {
    "s": "second",
    "ms": "millisecond",
    "us": "microsecond",
    "ns": "nanosecond",
    "min": "minute",
    "h": "hour",
    "d": "day",
    "By": "byte",
    "KiBy": "kibibyte",
    "MiBy": "mebibyte",
    "GiBy": "gibibyte",
    "bit": "bit",
    "%": "percent",
    "{request}": "request",
    "{token}": "token",
    "{error}": "error",
    "{connection}": "connection",
    "{packet}": "packet",
    "{message}": "message",
    "{event}": "event",
    "{operation}": "operation",
    "{query}": "query",
}
_FRACTION_SUFFIXES = ("_rate", "_ratio")

Sample = encode.Sample
Head = encode.Head
#: A cumulative counter's head before it is made
NO_HEAD: Head = ("", "")


def datadog_unit(unit: str, name: str) -> str:
    """Dimensionless ("1") is a fraction only for ratio-named metrics: a status of 1 is not 100 %."""
    if unit == "1":
        return "fraction" if name.endswith(_FRACTION_SUFFIXES) else ""
    return UNITS.get(unit, "")


def _seconds(ns: int) -> int:
    return ns // NS_PER_S


def _interval(start_ns: int, end_ns: int) -> int:
    return max(1, round((end_ns - start_ns) / NS_PER_S))


def _format_bound(bound: float) -> str:
    return "inf" if bound == math.inf else repr(float(bound))


@dataclass(slots=True)
class Parts:
    """What a Datadog sink keeps on one series-table entry that has counter state or several Datadog series.

    A gauge or a per-window count keeps only its head in the memo: most series, so the
    smallest form. A cumulative counter keeps its head and state here; a histogram or summary is
    several Datadog series (`.count`, `.sum`, one `.bucket` per bound or `.quantile` per quantile),
    judged together.
    """

    head: Head = NO_HEAD
    by_part: dict[Any, Head] | None = None
    state: CounterState | None = None


@dataclass
class Normalized:
    """One batch in Datadog terms."""

    samples: list[Sample] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    window_end_ns: int = 0


@dataclass
class _Run:
    """Per-batch accumulators and the clock-derived acceptance window."""

    out: Normalized
    oldest: int
    newest: int
    window_ns: int

    def accept(self, timestamp: int) -> bool:
        if timestamp < self.oldest:
            self.out.dropped["too_old"] += 1
            return False
        if timestamp > self.newest:
            self.out.dropped["too_new"] += 1
            return False
        return True

    def finite(self, value: float) -> bool:
        if math.isfinite(value):
            return True
        self.out.dropped["nan" if math.isnan(value) else "inf"] += 1
        return False

    def gauge(self, head: Head, timestamp_ns: int, value: float) -> None:
        timestamp = _seconds(timestamp_ns)
        if self.finite(value) and self.accept(timestamp):
            self.out.samples.append((head, timestamp, value, None))

    def count(self, head: Head, start_ns: int, end_ns: int, value: float) -> None:
        timestamp = _seconds(start_ns)
        if self.finite(value) and self.accept(timestamp):
            self.out.samples.append((head, timestamp, value, _interval(start_ns, end_ns)))


@dataclass
class _Plan:
    """How one metric of one resource maps to Datadog; its memo slot holds each series' Parts."""

    name: str
    unit: str
    tags: tuple[str, ...]  # resource and global tags
    suffix_statistic: bool
    host: str | None
    check_name: str | None  # the service check this metric also feeds
    slot: int = field(default_factory=new_slot)
    #: (part, statistic suffix, type, unit) -> the heads' first piece
    prefixes: dict[tuple[str, str, int, str], str] = field(default_factory=dict)

    def parts(self, entry: Entry) -> Parts:
        parts: Parts | None = entry.memo.get(self.slot)
        if parts is None:
            parts = entry.memo[self.slot] = Parts()
        return parts

    def series_tags(self, entry: Entry, extra: tuple[str, ...] = ()) -> tuple[str, tuple[str, ...]]:
        """The Datadog name suffix (a statistic, in suffix mode) and the tags of one series of this entry."""
        suffix, tags, _ = _tagging(entry.attributes, extra, self.tags, self.suffix_statistic, self.host)
        return suffix, tags

    def head(self, entry: Entry, part: str, metric_type: int, unit: str, extra: tuple[str, ...] = ()) -> Head:
        """The encoded identity of one Datadog series of this entry (`part`: "" for the metric itself): its
        tags' piece shared with every series of the same labels, its name's with every series of the metric."""
        suffix, _, tail = _tagging(entry.attributes, extra, self.tags, self.suffix_statistic, self.host)
        return self.prefix(part, suffix, metric_type, unit), tail

    def prefix(self, part: str, suffix: str, metric_type: int, unit: str) -> str:
        """A head's first piece: the name, type and unit of one Datadog metric of this plan."""
        key = (part, suffix, metric_type, unit)
        prefix = self.prefixes.get(key)
        if prefix is None:
            name = (f"{self.name}.{part}" if part else self.name) + suffix
            prefix = self.prefixes[key] = encode.series_prefix(encode.metric_name(name), metric_type, unit)
        return prefix

    def only_heads(self, entries: list[Entry], metric_type: int) -> list[Head]:
        """Each entry's head, made where it has none, for series that need nothing else (gauges, per-window
        counts): kept as the memo itself, the smallest form."""
        return own_heads(entries, self.slot, *self._head_makers(metric_type))

    def mains(self, entries: list[Entry], metric_type: int) -> list[Parts]:
        """Each entry's Parts, with its own head made where it has none (a first scrape's whole metric at once)."""
        slot = self.slot
        found: list[Parts | None] = [entry.memo.get(slot) for entry in entries]
        new = [entry for entry, parts in zip(entries, found, strict=True) if parts is None or parts.head is NO_HEAD]
        if not new:
            return cast(list[Parts], found)
        for entry, head in zip(new, own_heads(new, None, *self._head_makers(metric_type)), strict=True):
            parts = entry.memo.get(slot)
            if parts is None:
                entry.memo[slot] = Parts(head)
            else:
                parts.head = head
        return [entry.memo[slot] for entry in entries]

    def _head_makers(self, metric_type: int) -> tuple[dict[Attrs, Tagging], MakeTail, dict[str, str], MakePrefix]:
        """own_heads' caches and their makers for this plan's own heads (`head(entry, "", ...)`): the tags of a
        label set are shared by every plan of the same resource tags, so a first scrape makes each once."""
        tags, suffix_statistic, host, unit = self.tags, self.suffix_statistic, self.host, self.unit
        tails = _tails(tags, suffix_statistic, host)
        if len(tails) > _TAILS_LIMIT:
            tails.clear()
        return (
            tails,
            lambda attributes: _tagging(attributes, (), tags, suffix_statistic, host),
            {},
            lambda suffix: self.prefix("", suffix, metric_type, unit),
        )

    def part(
        self, parts: Parts, entry: Entry, key: Any, part: str, metric_type: int, unit: str, extra: tuple[str, ...] = ()
    ) -> Head:
        if parts.by_part is None:
            parts.by_part = {}
        head = parts.by_part.get(key)
        if head is None:
            head = parts.by_part[key] = self.head(entry, part, metric_type, unit, extra)
        return head


#: _tagging's answer: the name suffix, the tags, and the head's second piece.
Tagging = tuple[str, tuple[str, ...], str]
MakeTail = Callable[[Attrs], Tagging]
MakePrefix = Callable[[str], str]
_TAILS_LIMIT = 65_536  # label sets remembered per resource tagging, as _tagging's own cache


@lru_cache(maxsize=64)  # one per resource tagging: as many as sources and their organizations
def _tails(resource_tags: tuple[str, ...], suffix_statistic: bool, host: str | None) -> dict[Attrs, Tagging]:
    """Where own_heads keeps the tagging of each label set, for plans of these resource tags."""
    return {}


def python_own_heads(
    entries: list[Entry],
    slot: int | None,
    tails: dict[Attrs, Tagging],
    make_tail: MakeTail,
    prefixes: dict[str, str],
    make_prefix: MakePrefix,
) -> list[Head]:
    """Each entry's own head: the one in its memo at `slot`, else (prefix, tail) made and kept there (`slot`
    None: made for every entry, kept nowhere). The reference of the C extension's own_heads, and what runs
    without it."""
    if slot is not None:
        found: list[Head | None] = [entry.memo.get(slot) for entry in entries]
        if all(found):  # steady state
            return cast(list[Head], found)
    heads: list[Head] = []
    for entry in entries:
        head: Head | None = entry.memo.get(slot) if slot is not None else None
        if head is None:
            attributes = entry.attributes
            tagging = tails.get(attributes)
            if tagging is None:
                tagging = tails[attributes] = make_tail(attributes)
            suffix, _, tail = tagging
            prefix = prefixes.get(suffix)
            if prefix is None:
                prefix = prefixes[suffix] = make_prefix(suffix)
            head = (prefix, tail)
            if slot is not None:
                entry.memo[slot] = head
        heads.append(head)
    return heads


own_heads: Callable[..., list[Head]] = speedups.native.own_heads if speedups.native is not None else python_own_heads


@lru_cache(maxsize=65_536)  # a label set recurs in every family: its tags are made once
def _tagging(
    attrs: Attrs, extra: tuple[str, ...], resource_tags: tuple[str, ...], suffix_statistic: bool, host: str | None
) -> tuple[str, tuple[str, ...], str]:
    """The Datadog name suffix (a statistic, in suffix mode), the tags of a series with these attributes, and
    its head's second piece (`encode.series_tail`)."""
    suffix = ""
    if suffix_statistic:
        statistic = dict(attrs).get(STATISTIC)
        if statistic:
            suffix = f".{statistic}"
            attrs = tuple(kv for kv in attrs if kv[0] != STATISTIC)
    tag = encode.tag
    tags = (*[t for k, v in attrs if (t := tag(k, v))], *extra, *resource_tags)
    return suffix, tags, encode.series_tail(tags, host)


class Normalizer:
    """Turns batches into Datadog samples and service checks; per-series memory lives in the series table."""

    def __init__(self, config: DatadogSinkConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._plans: dict[tuple[Attrs, str, str, Kind, Temporality | None, str, bool, str | None], _Plan] = {}
        self._resource_tags: dict[Attrs, tuple[str, ...]] = {}
        self._handlers: dict[Kind, Callable[[_Plan, Metric, _Run], None]] = {
            Kind.GAUGE: self._gauges,
            Kind.COUNTER: self._counters,
            Kind.HISTOGRAM: self._histograms,
            Kind.SUMMARY: self._summaries,
        }

    def normalize(self, batch: Batch) -> Normalized:
        now = self.clock.now()
        run = _Run(
            Normalized(window_end_ns=batch.window_end_ns),
            oldest=math.ceil(now - MAX_PAST_SECONDS),
            newest=math.floor(now + MAX_FUTURE_SECONDS),
            window_ns=batch.window_end_ns - batch.window_start_ns,
        )
        for metric in batch.metrics:
            plan = self._plan(batch.resource, batch.namespace, metric)
            self._handlers[metric.kind](plan, metric, run)
            if plan.check_name is not None:
                self._checks(plan, plan.check_name, metric, run)
        return run.out

    # ------------------------------------------------------------ identity
    def _resource(self, resource: Attrs) -> tuple[str, ...]:
        """Resource + global tags of a batch resource."""
        cached = self._resource_tags.get(resource)
        if cached is None:
            resource_tags = (t for t in (encode.tag(k, v) for k, v in resource) if t)
            global_tags = (t for t in map(encode.sanitize_tag, self.config.tags) if t)
            cached = self._resource_tags[resource] = (*resource_tags, *global_tags)
        return cached

    def _plan(self, resource: Attrs, batch_namespace: str, metric: Metric) -> _Plan:
        key = (
            resource,
            batch_namespace,
            metric.name,
            metric.kind,
            metric.temporality,
            metric.unit,
            metric.monotonic,
            metric.service_check,
        )
        plan = self._plans.get(key)
        if plan is None:
            namespace = batch_namespace if self.config.namespace == AUTO else self.config.namespace
            base = metric.name.removesuffix("_total") if metric.kind is Kind.COUNTER else metric.name
            check_name = None
            if self.config.service_checks and metric.kind is Kind.GAUGE and metric.service_check:
                check_name = f"{namespace}.{metric.service_check}" if namespace else metric.service_check
            plan = self._plans[key] = _Plan(
                name=f"{namespace}.{base}" if namespace else base,
                unit=datadog_unit(metric.unit, metric.name),
                tags=self._resource(resource),
                suffix_statistic=self.config.statistic_mode == "suffix",
                host=self.config.host,
                check_name=check_name,
            )
        return plan

    # ------------------------------------------------------------ the counter rule
    def _observe(
        self, run: _Run, parts: Parts, start_ns: int, end_ns: int, value: Value
    ) -> tuple[Value, int, int] | None:
        """A cumulative observation -> (increase, start, end) to count, or None (baseline or already counted)."""
        observed, parts.state = difference(parts.state, start_ns, end_ns, value)
        if observed.change is Change.STALE:
            run.out.dropped[STALE_REASON] += 1
            return None
        if observed.change is Change.BASELINE:
            if self.config.flush_first_value:
                return value, end_ns - (run.window_ns or NS_PER_S), end_ns
            run.out.dropped[BASELINE_REASON] += 1
            return None
        assert observed.value is not None
        return observed.value, observed.start_ns, observed.end_ns

    # ------------------------------------------------------------ per kind
    # A metric's values follow its kind (a float for a gauge or counter), which the type checker cannot
    # see: hence the `type: ignore`s on the values below.
    def _gauges(self, plan: _Plan, metric: Metric, run: _Run) -> None:
        """The hot loop (most points are gauges): one memo lookup per point, the stamp checked once per window.

        The usual metric (one window for all its points, all finite) is appended in one `extend` of zipped
        columns; any other goes point by point.
        """
        samples = run.out.samples
        values, starts = metric.values, metric.starts
        heads = plan.only_heads(metric.series, encode.GAUGE)
        count = len(heads)
        at = starts[0] if starts else 0
        if (
            at
            and starts.count(at) == count
            and run.oldest <= (timestamp := _seconds(at)) <= run.newest
            and len(values) == len(metric.ends) == count
            and all(map(math.isfinite, values))  # type: ignore[arg-type]  # a gauge's values are floats
        ):
            samples.extend(zip(heads, repeat(timestamp), values, repeat(None), strict=False))  # type: ignore[arg-type]
            return
        stamp, timestamp, accepted = -1, 0, False
        for head, value, start_ns, end_ns in zip(heads, values, starts, metric.ends, strict=True):
            at = start_ns or end_ns
            if at != stamp:
                stamp, timestamp = at, _seconds(at)
                accepted = run.oldest <= timestamp <= run.newest
            if value - value != 0.0 or not accepted:  # type: ignore[operator]  # a gauge's value is a float
                run.gauge(head, at, value)  # type: ignore[arg-type]  # counts why it is dropped
                continue
            samples.append((head, timestamp, value, None))  # type: ignore[arg-type]

    def _counters(self, plan: _Plan, metric: Metric, run: _Run) -> None:
        cumulative = metric.temporality is not Temporality.DELTA
        if not cumulative:
            self._deltas(plan, metric, run)
            return
        metric_type = encode.COUNT if metric.monotonic else encode.GAUGE
        samples = run.out.samples
        window, timestamp, interval, accepted = (-1, -1), 0, 0, False
        baselines = 0  # first values remembered, not sent (`_observe`'s BASELINE without flush_first_value)
        quick_baselines = metric.monotonic and not self.config.flush_first_value
        for parts, value, start_ns, end_ns in zip(
            plan.mains(metric.series, metric_type), metric.values, metric.starts, metric.ends, strict=True
        ):
            grown = grew(parts.state, start_ns, end_ns, value) if metric.monotonic else None
            if grown is not None:  # the usual case: what `difference` and `run.count` would make of it
                increase, since = grown
                if (since, end_ns) != window:
                    window, timestamp, interval = (since, end_ns), _seconds(since), _interval(since, end_ns)
                    accepted = run.oldest <= timestamp <= run.newest
                if increase - increase != 0.0 or not accepted:
                    run.count(parts.head, since, end_ns, increase)  # counts why it is dropped
                    continue
                samples.append((parts.head, timestamp, increase, interval))
                continue
            if not metric.monotonic:
                run.gauge(parts.head, end_ns, value)  # type: ignore[arg-type]
            elif quick_baselines and (first := began(parts.state, start_ns, end_ns, value)) is not None:
                parts.state = first  # a first scrape's usual case
                baselines += 1
            elif run.finite(value):  # type: ignore[arg-type]
                counted = self._observe(run, parts, start_ns, end_ns, value)
                if counted is not None:
                    run.count(parts.head, counted[1], counted[2], counted[0])  # type: ignore[arg-type]
        if baselines:
            run.out.dropped[BASELINE_REASON] += baselines

    def _deltas(self, plan: _Plan, metric: Metric, run: _Run) -> None:
        """Per-window counts as they are: the hot loop of the Cerebras families, like `_gauges`."""
        samples = run.out.samples
        window, timestamp, interval, accepted = (-1, -1), 0, 0, False
        for head, value, start_ns, end_ns in zip(
            plan.only_heads(metric.series, encode.COUNT), metric.values, metric.starts, metric.ends, strict=True
        ):
            if (start_ns, end_ns) != window:
                window, timestamp, interval = (start_ns, end_ns), _seconds(start_ns), _interval(start_ns, end_ns)
                accepted = run.oldest <= timestamp <= run.newest
            if value - value != 0.0 or not accepted:  # type: ignore[operator]  # a count's value is a float
                run.count(head, start_ns, end_ns, value)  # type: ignore[arg-type]  # counts why it is dropped
                continue
            samples.append((head, timestamp, value, interval))  # type: ignore[arg-type]

    def _histograms(self, plan: _Plan, metric: Metric, run: _Run) -> None:
        cumulative = metric.temporality is not Temporality.DELTA
        for entry, raw, start_ns, end_ns in zip(metric.series, metric.values, metric.starts, metric.ends, strict=True):
            histogram: HistogramValue = raw  # type: ignore[assignment]
            parts = plan.parts(entry)
            counted = self._counts(run, parts, cumulative, histogram, start_ns, end_ns, 2 + len(histogram.buckets))
            if counted is None:
                continue
            value, start, end = counted
            assert isinstance(value, HistogramValue)
            self._count_and_sum(plan, parts, entry, run, start, end, value.count, value.sum)
            for bound, bucket_count in value.buckets:
                upper_bound = (f"upper_bound:{_format_bound(bound)}",)
                head = plan.part(parts, entry, bound, "bucket", encode.COUNT, "", upper_bound)
                run.count(head, start, end, bucket_count)

    def _summaries(self, plan: _Plan, metric: Metric, run: _Run) -> None:
        cumulative = metric.temporality is not Temporality.DELTA
        for entry, raw, start_ns, end_ns in zip(metric.series, metric.values, metric.starts, metric.ends, strict=True):
            summary: SummaryValue = raw  # type: ignore[assignment]
            parts = plan.parts(entry)
            counted = self._counts(run, parts, cumulative, summary, start_ns, end_ns, 2)
            if counted is not None:
                value, start, end = counted
                assert isinstance(value, SummaryValue)
                self._count_and_sum(plan, parts, entry, run, start, end, value.count, value.sum)
            stamp_ns = end_ns if cumulative else start_ns  # a cumulative start is the series' birth, not a window
            for quantile, quantile_value in summary.quantiles:
                quantile_tag = (f"quantile:{quantile!r}",)
                key = ("quantile", quantile)
                head = plan.part(parts, entry, key, "quantile", encode.GAUGE, plan.unit, quantile_tag)
                run.gauge(head, stamp_ns, quantile_value)

    def _counts(
        self, run: _Run, parts: Parts, cumulative: bool, value: Value, start_ns: int, end_ns: int, series: int
    ) -> tuple[Value, int, int] | None:
        """The counts of a histogram or summary to send over [start, end), or None (each of its `series` dropped)."""
        if has_no_value(value):  # nothing recorded: none of its parts is a count
            run.out.dropped["nan"] += series
            return None
        if not cumulative:
            return value, start_ns, end_ns
        return self._observe(run, parts, start_ns, end_ns, value)

    def _count_and_sum(
        self, plan: _Plan, parts: Parts, entry: Entry, run: _Run, start_ns: int, end_ns: int, count: float, total: float
    ) -> None:
        for part, value, unit in (("count", count, ""), ("sum", total, plan.unit)):
            run.count(plan.part(parts, entry, part, part, encode.COUNT, unit), start_ns, end_ns, value)

    def _checks(self, plan: _Plan, check_name: str, metric: Metric, run: _Run) -> None:
        """One service check per endpoint status point; NaN (status not computed) is UNKNOWN."""
        for entry, value, start_ns, end_ns in zip(
            metric.series, metric.values, metric.starts, metric.ends, strict=True
        ):
            timestamp = _seconds(start_ns or end_ns)
            if not run.accept(timestamp):
                continue
            status = CHECK_STATUS.get(value, CHECK_UNKNOWN)  # type: ignore[arg-type]  # a gauge: a float
            _, tags = plan.series_tags(entry)
            run.out.checks.append(encode.service_check(check_name, status, timestamp, tags, plan.host))
