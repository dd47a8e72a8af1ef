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

Histogram and summary parts follow their metric's temporality like counters.
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
from typing import Any

from bridge.clock import Clock
from bridge.model import (
    NS_PER_S,
    Attrs,
    Batch,
    HistogramValue,
    Kind,
    Metric,
    SummaryValue,
    Temporality,
)
from bridge.sinks.datadog import encode
from bridge.sinks.datadog.config import AUTO, DatadogSinkConfig

STATISTIC = "statistic"
MAX_PAST_SECONDS = 3600
MAX_FUTURE_SECONDS = 600
SWEEP_EVERY_NS = 600 * NS_PER_S

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

#: (series head, timestamp in s, value, interval in s for counts else None): one point, ready to encode
Sample = tuple[str, int, float, int | None]


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
class Series:
    """One Datadog series: its encoded identity and, for cumulative inputs, the previous point."""

    head: str
    tags: tuple[str, ...]
    seen_ns: int = 0
    start_ns: int = 0
    value: float = 0.0
    end_ns: int = 0  # 0: no previous point yet


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


@dataclass
class _Plan:
    """How one metric of one resource maps to Datadog; owns that metric's series."""

    name: str
    unit: str
    tags: tuple[str, ...]  # resource and global tags
    suffix_statistic: bool
    host: str | None
    check_name: str | None  # the service check this metric also feeds
    series: dict[Any, Series] = field(default_factory=dict)

    def new_series(
        self, key: Any, attrs: Attrs, part: str, metric_type: int, unit: str, extra: tuple[str, ...]
    ) -> Series:
        name = f"{self.name}.{part}" if part else self.name
        if self.suffix_statistic:
            statistic = dict(attrs).get(STATISTIC)
            if statistic:
                name = f"{name}.{statistic}"
                attrs = tuple(kv for kv in attrs if kv[0] != STATISTIC)
        point_tags = (t for t in (encode.tag(k, v) for k, v in attrs) if t)
        tags = (*point_tags, *extra, *self.tags)
        series = Series(encode.series_head(encode.metric_name(name), metric_type, unit, tags, self.host), tags)
        self.series[key] = series
        return series

    def get(self, key: Any, attrs: Attrs, part: str, metric_type: int, unit: str, extra: tuple[str, ...]) -> Series:
        return self.series.get(key) or self.new_series(key, attrs, part, metric_type, unit, extra)


class Normalizer:
    """Turns batches into Datadog samples and service checks, remembering series between batches.

    Series are cached with their encoded identity; ones not seen for an hour
    are swept every ten minutes of window time, and the whole cache is dropped
    if it still holds more than `max_series` (cumulative counters then lose
    one point each, as on a restart).
    """

    def __init__(self, config: DatadogSinkConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._plans: dict[tuple[Attrs, str, str, Kind, Temporality | None, str, bool, str | None], _Plan] = {}
        self._resource_tags: dict[Attrs, tuple[str, ...]] = {}
        self._last_sweep_ns = 0
        self._handlers: dict[Kind, Callable[[_Plan, Metric, _Run], None]] = {
            Kind.GAUGE: self._gauges,
            Kind.COUNTER: self._counters,
            Kind.HISTOGRAM: self._histograms,
            Kind.SUMMARY: self._summaries,
        }

    def series_count(self) -> int:
        return sum(len(plan.series) for plan in self._plans.values())

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
        due = batch.window_end_ns - self._last_sweep_ns >= SWEEP_EVERY_NS
        if due or self.series_count() > self.config.max_series:
            self._sweep(batch.window_end_ns)
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
            tags = self._resource(resource)
            namespace = batch_namespace if self.config.namespace == AUTO else self.config.namespace
            base = metric.name.removesuffix("_total") if metric.kind is Kind.COUNTER else metric.name
            check_name = None
            if self.config.service_checks and metric.kind is Kind.GAUGE and metric.service_check:
                check_name = f"{namespace}.{metric.service_check}" if namespace else metric.service_check
            plan = self._plans[key] = _Plan(
                name=f"{namespace}.{base}" if namespace else base,
                unit=datadog_unit(metric.unit, metric.name),
                tags=tags,
                suffix_statistic=self.config.statistic_mode == "suffix",
                host=self.config.host,
                check_name=check_name,
            )
        return plan

    def _sweep(self, window_end_ns: int) -> None:
        """Forget series unseen for an hour (Datadog would refuse their points anyway); past the bound, all."""
        cutoff = window_end_ns - MAX_PAST_SECONDS * NS_PER_S
        for key, plan in list(self._plans.items()):
            plan.series = {k: s for k, s in plan.series.items() if s.seen_ns >= cutoff}
            if not plan.series:
                del self._plans[key]
        if self.series_count() > self.config.max_series:
            self._plans.clear()
            self._resource_tags.clear()
        self._last_sweep_ns = window_end_ns

    # ------------------------------------------------------------ emitters
    def _gauge(self, run: _Run, series: Series, timestamp_ns: int, value: float) -> None:
        timestamp = _seconds(timestamp_ns)
        if run.finite(value) and run.accept(timestamp):
            run.out.samples.append((series.head, timestamp, value, None))

    def _count(self, run: _Run, series: Series, start_ns: int, end_ns: int, value: float) -> None:
        timestamp = _seconds(start_ns)
        if run.finite(value) and run.accept(timestamp):
            run.out.samples.append((series.head, timestamp, value, _interval(start_ns, end_ns)))

    def _increase(self, run: _Run, series: Series, start_ns: int, end_ns: int, value: float) -> None:
        """Count the increase of a cumulative value since the series' previous point."""
        if not run.finite(value):
            return
        previous_end = series.end_ns
        if previous_end and end_ns <= previous_end:
            run.out.dropped["stale"] += 1  # a window already counted: never count it twice
            return
        reset = bool(previous_end) and (start_ns != series.start_ns or value < series.value)
        increase = value if reset else value - series.value
        window_start = max(previous_end, start_ns) if reset else previous_end
        series.start_ns, series.value, series.end_ns = start_ns, value, end_ns
        if previous_end:
            self._count(run, series, window_start, end_ns, increase)
        elif self.config.flush_first_value:
            self._count(run, series, end_ns - (run.window_ns or NS_PER_S), end_ns, value)
        else:
            run.out.dropped["first_value"] += 1

    def _part(self, run: _Run, series: Series, cumulative: bool, start_ns: int, end_ns: int, value: float) -> None:
        """A count-like part of a histogram or summary, diffed when its metric is cumulative."""
        series.seen_ns = end_ns
        if cumulative:
            self._increase(run, series, start_ns, end_ns, value)
        else:
            self._count(run, series, start_ns, end_ns, value)

    # ------------------------------------------------------------ per kind
    # Point.value follows the metric's kind (a float for a gauge or counter), which the type checker cannot
    # see: hence the `type: ignore`s on the values below.
    def _gauges(self, plan: _Plan, metric: Metric, run: _Run) -> None:
        for point in metric.points:
            series = plan.get(point.attributes, point.attributes, "", encode.GAUGE, plan.unit, ())
            series.seen_ns = point.end_ns
            self._gauge(run, series, point.start_ns or point.end_ns, point.value)  # type: ignore[arg-type]

    def _counters(self, plan: _Plan, metric: Metric, run: _Run) -> None:
        if metric.temporality is Temporality.DELTA:
            for point in metric.points:
                series = plan.get(point.attributes, point.attributes, "", encode.COUNT, plan.unit, ())
                series.seen_ns = point.end_ns
                self._count(run, series, point.start_ns, point.end_ns, point.value)  # type: ignore[arg-type]
            return
        metric_type = encode.COUNT if metric.monotonic else encode.GAUGE
        for point in metric.points:
            series = plan.get(point.attributes, point.attributes, "", metric_type, plan.unit, ())
            series.seen_ns = point.end_ns
            if metric.monotonic:
                self._increase(run, series, point.start_ns, point.end_ns, point.value)  # type: ignore[arg-type]
            else:
                self._gauge(run, series, point.end_ns, point.value)  # type: ignore[arg-type]

    def _count_and_sum(
        self,
        plan: _Plan,
        run: _Run,
        cumulative: bool,
        attrs: Attrs,
        start_ns: int,
        end_ns: int,
        count: float,
        total: float,
    ) -> None:
        for part, value, unit in (("count", count, ""), ("sum", total, plan.unit)):
            series = plan.get((attrs, part), attrs, part, encode.COUNT, unit, ())
            self._part(run, series, cumulative, start_ns, end_ns, value)

    def _histograms(self, plan: _Plan, metric: Metric, run: _Run) -> None:
        cumulative = metric.temporality is not Temporality.DELTA
        for point in metric.points:
            histogram: HistogramValue = point.value  # type: ignore[assignment]
            attrs, start_ns, end_ns = point.attributes, point.start_ns, point.end_ns
            self._count_and_sum(plan, run, cumulative, attrs, start_ns, end_ns, histogram.count, histogram.sum)
            for bound, bucket_count in histogram.buckets:
                upper_bound = (f"upper_bound:{_format_bound(bound)}",)
                series = plan.get((attrs, "bucket", bound), attrs, "bucket", encode.COUNT, "", upper_bound)
                self._part(run, series, cumulative, start_ns, end_ns, bucket_count)

    def _summaries(self, plan: _Plan, metric: Metric, run: _Run) -> None:
        cumulative = metric.temporality is not Temporality.DELTA
        for point in metric.points:
            summary: SummaryValue = point.value  # type: ignore[assignment]
            attrs, start_ns, end_ns = point.attributes, point.start_ns, point.end_ns
            self._count_and_sum(plan, run, cumulative, attrs, start_ns, end_ns, summary.count, summary.sum)
            stamp_ns = end_ns if cumulative else start_ns  # a cumulative start is the series' birth, not a window
            for quantile, value in summary.quantiles:
                quantile_tag = (f"quantile:{quantile!r}",)
                key = (attrs, "quantile", quantile)
                series = plan.get(key, attrs, "quantile", encode.GAUGE, plan.unit, quantile_tag)
                series.seen_ns = end_ns
                self._gauge(run, series, stamp_ns, value)

    def _checks(self, plan: _Plan, check_name: str, metric: Metric, run: _Run) -> None:
        """One service check per endpoint status point; NaN (status not computed) is UNKNOWN."""
        for point in metric.points:
            timestamp = _seconds(point.start_ns or point.end_ns)
            if not run.accept(timestamp):
                continue
            status = CHECK_STATUS.get(point.value, CHECK_UNKNOWN)  # type: ignore[arg-type]  # a gauge: a float
            tags = plan.series[point.attributes].tags
            run.out.checks.append(encode.service_check(check_name, status, timestamp, tags, plan.host))
