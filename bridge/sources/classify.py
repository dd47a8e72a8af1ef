"""Turn a scrape into model metrics that know what they mean, interning every series once.

One small handler per exposition type (as Datadog's OpenMetrics transformers
do) says which series and which part of it each sample is; rules override a
family's declared type: the Cerebras `*_total` families are declared gauges
but are per-window counts, so a rule makes them delta counters.
Statistic-labelled gauges keep their kind and get one normalised `statistic`
attribute.

Two ways in, one way out. The first scrape of a target (and any scrape whose
shape changed) is parsed in full (bridge.parser), each sample is mapped to its
interned series and part, and the body is remembered with where each of its
lines starts and how much of it (a sample line's text up to its value) must
recur. A later scrape whose every line is a remembered one, under the
same metadata lines, skips the parser: a sample costs one comparison of its
line with the remembered one and one float parse. Both paths hand the same
(series, part, value) columns to the same assembly, so they cannot disagree.
"""

from __future__ import annotations

import logging
import math
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate, compress, repeat
from operator import getitem, ne
from typing import cast

from bridge import gcpause, speedups
from bridge.http import excerpt
from bridge.model import NS_PER_S, Attrs, HistogramValue, Kind, Metric, Series, SummaryValue, Temporality, Value
from bridge.parser import Family, parse
from bridge.presets import FamilyRule
from bridge.series.counter import Change, began, difference, grew, has_no_value
from bridge.series.table import SeriesTable, mark_seen

log = logging.getLogger(__name__)

STATISTIC = "statistic"


@dataclass
class Window:
    start_ns: int
    end_ns: int


_UNIT_SUFFIXES = (("_seconds", "s"), ("_bytes", "By"), ("_ratio", "1"), ("_percent", "%"))


def unit_from_name(name: str) -> str:
    base = name.removesuffix("_total")
    for suffix, unit in _UNIT_SUFFIXES:
        if base.endswith(suffix):
            return unit
    return ""


class Skipped:
    """Samples classification could not use (a bad `le`, a summary line without `quantile`,
    a timestamp no backend can represent): counted, with the first reason kept for the log."""

    __slots__ = ("count", "first")

    def __init__(self) -> None:
        self.count = 0
        self.first = ""

    def add(self, family: str, reason: str, samples: int = 1) -> None:
        if not self.count:
            self.first = f"{family}: {reason}"
        self.count += samples


#: Latest representable point time: OTLP carries fixed64 nanoseconds, and every model time is int64 ns.
_MAX_TIME_NS = 2**63 - 1


def to_ns(seconds: float) -> int | None:
    """Unix seconds as int64 nanoseconds; None for NaN, infinities, negatives and times past 2262."""
    if not 0 <= seconds < _MAX_TIME_NS / NS_PER_S:  # False for NaN too
        return None
    return int(seconds * NS_PER_S)


#: Which part of its series a sample is: None for the value itself, a suffix ("_count", "_sum",
#: "_created"), or a bound (the `le` of a bucket, the `quantile` of a summary line).
Part = str | float | None


@dataclass(slots=True)
class Plan:
    """What one family means (from its declared type, HELP, UNIT and the matching rule); built once per shape."""

    name: str
    kind: Kind
    temporality: Temporality | None
    unit: str
    description: str
    service_check: str | None
    rule: FamilyRule | None
    handler: str  # "plain", "counter", "histogram" or "summary"


@dataclass(slots=True)
class Columns:
    """One family's samples in line order: the series, the part and the value of each, and its time if it had one."""

    plan: Plan
    series: list[Series] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    ends: list[int | None] | None = None  # None: no sample had a time of its own


@dataclass
class Ingested:
    metrics: list[Metric]
    samples: int
    parse_errors: int = 0
    first_error: tuple[int, str] | None = None


@dataclass(slots=True)
class _Learned:
    """A scrape's exact shape, so the next scrape of the same shape needs no parser: the body is the same
    line for line, only the values differ.

    The body itself and two numbers per line, not a string per line: the heads are slices of `text`, read
    in place by `_speedups.recognise` and cut out per call by `_recognised_values`.
    """

    text: str  # the learned body (the scrape's own str, not a copy)
    #: per line: where it starts in `text`
    starts: array[int]
    #: per line: the length of its head, which a later scrape's line must start with: a sample line's text up
    #: to its value (the space included), a comment or blank line whole
    lengths: array[int]
    samples: bytes  # per line: 1 for a sample line, 0 for a comment or blank line
    families: list[Columns]  # per family: its plan, and each sample's series and part, in order
    evictions: int  # the table's eviction count when learned: an evicted series must be interned again


class Classifier:
    """Never raises on what a target sends: a sample it cannot use is skipped and
    counted in `skipped` (reset by each scrape), and the rest of the scrape is kept.

    Labels in `resource_labels` are lifted off the points into `lifted` (label ->
    value, reset by each scrape) for the batch's resource; a point whose value
    differs from the first one seen keeps its label, so nothing is lost.
    """

    def __init__(
        self,
        *,
        rules: list[FamilyRule] | None = None,
        resource_labels: frozenset[str] = frozenset(),
        on_family: Callable[[Family], None] | None = None,  # sees each family of a full parse
        table: SeriesTable | None = None,
    ) -> None:
        self.rules = rules or []
        self.resource_labels = resource_labels
        self.on_family = on_family
        self.table = table if table is not None else SeriesTable("classifier")
        self.skipped = Skipped()
        self.lifted: dict[str, str] = {}
        self._compiled = [(re.compile(r.match), r) for r in self.rules]
        self._rule_cache: dict[str, FamilyRule | None] = {}
        self._learned: _Learned | None = None

    def rule_for(self, name: str) -> FamilyRule | None:
        if name not in self._rule_cache:
            found = next((rule for pattern, rule in self._compiled if pattern.fullmatch(name)), None)
            if len(self._rule_cache) > 10_000:
                self._rule_cache.clear()
            self._rule_cache[name] = found
        return self._rule_cache[name]

    # -- the two ways in ---------------------------------------------------------------------
    @gcpause.paused
    def ingest(self, text: str, window: Window, *, openmetrics: bool = False, timestamps: bool = True) -> Ingested:
        """Parse (or recognise) a scrape and classify it; the table is swept for this window."""
        self.skipped = Skipped()
        self.lifted = {}
        learned = self._learned
        recognised = None
        if learned is not None and not openmetrics and learned.evictions == self.table.evictions:
            recognised = self._recognise(text, learned)
        if recognised is not None:
            columns, samples = recognised
            result = Ingested(self._assemble(columns, window), samples)
        else:
            result = self._parse(text, window, openmetrics=openmetrics, timestamps=timestamps)
        self.table.sweep(window.end_ns)
        return result

    def _parse(self, text: str, window: Window, *, openmetrics: bool, timestamps: bool) -> Ingested:
        parsed = parse(text, openmetrics=openmetrics)
        learner = _Learner() if not openmetrics and not parsed.errors else None
        columns = []
        samples = 0
        for family in parsed.families:
            samples += len(family.values)
            plan = self._plan(family)
            if self.on_family is not None:
                self.on_family(family)
            skipped = self.skipped.count
            try:
                family_columns = self._columns(plan, family, timestamps, learner)
            except Exception as exc:  # a shape no handler foresaw: lose this family, not the scrape
                log.debug("family %s not classified", family.name, exc_info=True)
                self.skipped.add(family.name, f"unusable family ({type(exc).__name__})", len(family.values))
                family_columns = Columns(plan)
                learner = None
            if self.skipped.count != skipped:
                learner = None  # a skip is counted and logged each time: such a shape is always parsed
            columns.append(family_columns)
        self._learned = learner.learned(text, columns, self.table.evictions) if learner is not None else None
        first = parsed.error_samples[0] if parsed.error_samples else None
        return Ingested(self._assemble(columns, window), samples, parsed.errors, first)

    def _recognise(self, text: str, learned: _Learned) -> tuple[list[Columns], int] | None:
        """The scrape as columns if it is the remembered body but for its values, else None (then it is parsed).

        What the parser would reject here (an `_` in a value, a timestamp, a line of another shape) falls
        back to the parser, so both paths always agree.
        """
        if speedups.native is not None and text.isascii() and learned.text.isascii():
            values = speedups.native.recognise(text, learned.text, learned.starts, learned.lengths, learned.samples)
        else:
            values = _recognised_values(text, learned)
        if values is None:
            return None
        columns = []
        taken = 0
        for family in learned.families:
            count = len(family.series)
            columns.append(Columns(family.plan, list(family.series), family.parts, values[taken : taken + count]))
            taken += count
        return columns, len(values)

    # -- per family: which series and part each sample is -----------------------------------------
    def _plan(self, family: Family) -> Plan:
        rule = self.rule_for(family.name)
        handler = _HANDLERS.get(rule.kind if rule and rule.kind else family.type, "plain")
        temporality = None
        if handler != "plain":
            temporality = Temporality(rule.temporality if rule and rule.temporality else "cumulative")
            if temporality is Temporality.DELTA and handler == "counter":
                handler = "delta"
        unit = rule.unit if rule and rule.unit is not None else (family.unit or unit_from_name(family.name))
        service_check = rule.service_check if rule else None
        return Plan(family.name, _KINDS[handler], temporality, unit, family.help, service_check, rule, handler)

    def _columns(self, plan: Plan, family: Family, timestamps: bool, learner: _Learner | None) -> Columns:
        """The family's samples as (series, part, value, end); the learner sees each family's values."""
        timed = family.timestamps is not None
        if plan.handler in _ONE_PART and not (timestamps and timed):
            columns = self._one_part_columns(plan, family)
        else:
            columns = self._any_columns(plan, family, timestamps)
        if learner is not None:
            learner.see(family.values, kept=len(columns.values), timed=timed)
        return columns

    def _one_part_columns(self, plan: Plan, family: Family) -> Columns:
        """`_any_columns` for the usual family (a sample is its series' one value, or a counter's `_created`):
        the parser's columns taken whole where every sample is kept (a first scrape interns them all here)."""
        name, handler = plan.name, plan.handler
        created = name + "_created"
        names, labels, values = family.names, family.labels, family.values
        if handler == "plain" and names.count(name) != len(names):
            names, labels, values = _kept([sample_name == name for sample_name in names], names, labels, values)
        elif handler == "delta" and created in names:
            names, labels, values = _kept([sample_name != created for sample_name in names], names, labels, values)
        parts: list[Part] = (
            [("_created" if sample_name == created else None) for sample_name in names]
            if handler == "counter" and created in names
            else [None] * len(names)
        )
        if self.resource_labels or (plan.rule and plan.rule.statistic_labels):  # attributes made from the labels
            series = [self._intern(plan, sample_labels) for sample_labels in labels]
        else:  # attributes are the labels: the parser's own (cached, sorted) tuples
            series = self.table.intern_all(name, labels)
        return Columns(plan, series, parts, list(values))

    def _any_columns(self, plan: Plan, family: Family, timestamps: bool) -> Columns:
        columns = Columns(plan)
        stamps = family.timestamps if family.timestamps is not None else repeat(None)
        samples = zip(family.names, family.labels, family.values, stamps, strict=False)  # stamps may be endless
        for sample_name, labels, value, timestamp in samples:
            placed = self._part(plan, family.name, sample_name, labels)
            if placed is None:
                continue
            end = None
            if timestamps and timestamp is not None:
                end = to_ns(timestamp)
                if end is None:
                    end = _BAD_TIME  # judged by the assembly: a plain point is skipped, a bucket's time unused
            series, part = placed
            columns.series.append(series)
            columns.parts.append(part)
            columns.values.append(value)
            if end is not None:
                if columns.ends is None:
                    columns.ends = [None] * (len(columns.values) - 1)
                columns.ends.append(end)
            elif columns.ends is not None:
                columns.ends.append(None)
        return columns

    def _part(self, plan: Plan, name: str, sample_name: str, labels: Attrs) -> tuple[Series, Part] | None:
        """Which series of the family a sample belongs to and which part of it it is; None to leave it out."""
        suffix = sample_name[len(name) :]
        handler = plan.handler
        if handler == "plain":
            return (self._intern(plan, labels), None) if sample_name == name else None
        if handler == "delta":
            return None if suffix == "_created" else (self._intern(plan, labels), None)
        if handler == "counter":
            return self._intern(plan, labels), ("_created" if suffix == "_created" else None)
        label = "le" if handler == "histogram" else "quantile"
        bound, series_labels = _bound(labels, label)
        if suffix in ("_count", "_sum", "_created"):
            return self._intern(plan, series_labels), suffix
        if bound is None or math.isnan(bound):
            raw = dict(labels).get(label)
            self.skipped.add(name, f"{label}={excerpt(repr(raw), 40)} is not a number")
            return None
        return self._intern(plan, series_labels), bound

    def _intern(self, plan: Plan, labels: Attrs) -> Series:
        series = self.table.get(plan.name, labels)
        if series is not None:
            return series
        renamed = plan.rule.statistic_labels if plan.rule else ()
        lifting = self.resource_labels
        if not renamed and (not lifting or lifting.isdisjoint([key for key, _ in labels])):
            return self.table.intern(plan.name, labels, labels)  # the parser's own (cached, sorted) tuple
        attributes = []
        lifted = []
        for key, value in labels:
            if key in self.resource_labels:
                lifted.append((key, value))
            else:
                attributes.append((STATISTIC if key in renamed else key, value))
        attributes.sort()
        return self.table.intern(plan.name, labels, tuple(attributes), tuple(lifted))

    # -- the one way out ------------------------------------------------------------------------
    def _assemble(self, columns: list[Columns], window: Window) -> list[Metric]:
        metrics = []
        for family in columns:
            if not family.values:
                continue
            plan = family.plan
            try:
                metric = (
                    self._plain(family, window) if plan.handler in ("plain", "delta") else self._grouped(family, window)
                )
            except Exception as exc:  # a shape no handler foresaw: lose this family, not the scrape
                log.debug("family %s not classified", plan.name, exc_info=True)
                self.skipped.add(plan.name, f"unusable family ({type(exc).__name__})", len(family.values))
                continue
            if metric.values:
                metrics.append(metric)
        return metrics

    def _placed(self, series: Series) -> Series:
        """The series as this scrape places it: lifted labels go to the resource, unless they differ from it."""
        for key, value in series.lifted:
            if self.lifted.setdefault(key, value) != value:
                kept = tuple(sorted((*series.attributes, (key, value))))
                return self.table.intern(series.family, ("unlifted", key, series.key), kept)
        return series

    def _metric(self, plan: Plan) -> Metric:
        return Metric(
            plan.name,
            plan.kind,
            temporality=plan.temporality,
            unit=plan.unit,
            description=plan.description,
            service_check=plan.service_check,
        )

    def _plain(self, family: Columns, window: Window) -> Metric:
        """Gauges and per-window counts: a point per sample, over the window (or at the sample's own time)."""
        metric = self._metric(family.plan)
        end = window.end_ns
        series = family.series
        if self.resource_labels:
            series = [self._placed(s) for s in series]
        if family.ends is not None:
            return self._timed(metric, family, family.ends, series, window)
        mark_seen(series, end)
        metric.series = series
        metric.values = cast(list[Value], family.values)  # floats are Values; no copy
        metric.starts = [window.start_ns] * len(series)
        metric.ends = [end] * len(series)
        return metric

    def _timed(
        self, metric: Metric, family: Columns, ends: list[int | None], series: list[Series], window: Window
    ) -> Metric:
        for s, value, own_end in zip(series, family.values, ends, strict=True):
            if own_end == _BAD_TIME:
                self.skipped.add(metric.name, "timestamp out of range")
                continue
            end = window.end_ns if own_end is None else own_end
            s.seen_ns = end
            metric.series.append(s)
            metric.values.append(value)
            metric.starts.append(window.start_ns)
            metric.ends.append(end)
        return metric

    def _grouped(self, family: Columns, window: Window) -> Metric:
        """Counters, histograms and summaries: their parts gathered per series; start from `_created` or tracked."""
        plan = family.plan
        if plan.handler == "counter" and family.ends is None and not any(family.parts):
            return self._counters(family, window)
        gathered: dict[Series, list[tuple[Part, float, int | None]]] = {}
        ends = family.ends or [None] * len(family.values)
        for series, part, value, end in zip(family.series, family.parts, family.values, ends, strict=True):
            gathered.setdefault(series, []).append((part, value, end))
        metric = self._metric(plan)
        build = _POINTS[plan.handler]
        for series, parts in gathered.items():
            created = next((v for p, v, _ in parts if p == "_created"), 0.0)
            placed = self._placed(series) if self.resource_labels else series
            for point_value, own_end in build(parts):
                if own_end == _BAD_TIME:
                    self.skipped.add(plan.name, "timestamp out of range")
                    continue
                end = window.end_ns if own_end is None else own_end
                start = to_ns(created) if created else None
                if start is None:
                    start = _tracked_start(placed, point_value, window.start_ns, end)
                placed.seen_ns = end
                metric.series.append(placed)
                metric.values.append(point_value)
                metric.starts.append(start)
                metric.ends.append(end)
        return metric

    def _counters(self, family: Columns, window: Window) -> Metric:
        """The common counter: a value per sample, no `_created`, no own times (what `_grouped` does, directly)."""
        metric = self._metric(family.plan)
        series = [self._placed(s) for s in family.series] if self.resource_labels else family.series
        start, end = window.start_ns, window.end_ns
        metric.starts = [_tracked_start(s, value, start, end) for s, value in zip(series, family.values, strict=True)]
        mark_seen(series, end)
        metric.series = list(series)
        metric.values = cast(list[Value], family.values)  # floats are Values; no copy
        metric.ends = [end] * len(series)
        return metric


#: An end time no backend can represent: the sample is skipped (and counted) if its time is used.
_BAD_TIME = -1

#: Handlers whose samples are each one series' value (a counter's `_created` aside): `_one_part_columns`.
_ONE_PART = ("plain", "delta", "counter")

_HANDLERS = {
    "gauge": "plain",
    "untyped": "plain",
    "unknown": "plain",
    "gaugehistogram": "plain",
    "counter": "counter",
    "histogram": "histogram",
    "summary": "summary",
}
_KINDS = {
    "plain": Kind.GAUGE,
    "delta": Kind.COUNTER,
    "counter": Kind.COUNTER,
    "histogram": Kind.HISTOGRAM,
    "summary": Kind.SUMMARY,
}

Gathered = list[tuple[Part, float, int | None]]


def _counter_points(parts: Gathered) -> list[tuple[Value, int | None]]:
    return [(value, end) for part, value, end in parts if part is None]


def _first(parts: Gathered, wanted: str) -> float:
    return next((value for part, value, _ in parts if part == wanted), math.nan)


def _anchor_end(
    parts: Gathered, first: Callable[[Part], bool], then: Callable[[Part], bool]
) -> tuple[bool, int | None]:
    """When a histogram or summary was observed: its first `first` part's time, else its first `then` part's."""
    for wanted in (first, then):
        for part, _, end in parts:
            if wanted(part):
                return True, end
    return False, None


def _is_bound(part: Part) -> bool:
    return isinstance(part, float)


def _is_count(part: Part) -> bool:
    return part == "_count"


def _histogram_points(parts: Gathered) -> list[tuple[Value, int | None]]:
    buckets = sorted((part, value) for part, value, _ in parts if isinstance(part, float))
    found, end = _anchor_end(parts, _is_bound, _is_count)
    if not found:
        return []
    count = _first(parts, "_count")
    if math.isnan(count) and buckets:
        count = buckets[-1][1]
    return [(HistogramValue(count, _first(parts, "_sum"), tuple(buckets)), end)]


def _summary_points(parts: Gathered) -> list[tuple[Value, int | None]]:
    quantiles = sorted((part, value) for part, value, _ in parts if isinstance(part, float))
    found, end = _anchor_end(parts, _is_count, _is_bound)
    if not found:
        return []
    return [(SummaryValue(_first(parts, "_count"), _first(parts, "_sum"), tuple(quantiles)), end)]


_POINTS = {"counter": _counter_points, "histogram": _histogram_points, "summary": _summary_points}


def _tracked_start(series: Series, value: Value, window_start_ns: int, end_ns: int) -> int:
    """A cumulative series' start when the target gives none: the first window seen, renewed at each reset.

    `series.last` keeps the source's counter state (the rule's own; its start is the series' start),
    judged against this observation.
    """
    state = series.last
    if state is not None and grew(state, state.start_ns, end_ns, value) is not None:  # the usual case, at once
        return state.start_ns  # type: ignore[no-any-return]
    first = began(state, window_start_ns, end_ns, value)  # a first scrape's usual case
    if first is not None:
        series.last = first
        return window_start_ns
    if has_no_value(value):  # nothing recorded: nothing to judge a reset by
        return state.start_ns if state is not None else window_start_ns
    start = state.start_ns if state is not None else window_start_ns
    observed, state = difference(state, start, end_ns, value)
    if observed.change is Change.BASELINE or observed.change is Change.RESET:
        state.start_ns = window_start_ns
    series.last = state
    return state.start_ns


def _kept(
    keep: list[bool], names: list[str], labels: list[Attrs], values: list[float]
) -> tuple[list[str], list[Attrs], list[float]]:
    """The samples (as columns) where `keep` is true."""
    return list(compress(names, keep)), list(compress(labels, keep)), list(compress(values, keep))


def _bound(labels: Attrs, label: str) -> tuple[float | None, Attrs]:
    """A sample's `le` (default +Inf) or `quantile` (None if absent) as a float, and its labels without it."""
    raw = None
    rest = []
    for key, value in labels:
        if key == label:
            raw = value
        else:
            rest.append((key, value))
    if raw is None:
        return (math.inf if label == "le" else None), tuple(rest)
    try:
        return float(raw), tuple(rest)
    except ValueError:
        return math.nan, tuple(rest)


#: `text[where]`, as `map` takes it (typed: `operator.getitem` is too generic for mypy to follow)
_cut = cast(Callable[[str, slice], str], getitem)
#: `bytes.translate` table turning 1 into 0 and 0 into 1: `_Learned.samples` into its comment lines
_NEGATED = bytes([1, 0]) + bytes(254)
#: where lines start and how long heads are: 32-bit offsets into the body
_LONGEST_BODY = 2**32 - 1


def _recognised_values(text: str, learned: _Learned) -> list[float] | None:
    """The values of a body that is the remembered one but for them, else None: the reference for
    `_speedups.recognise` (bridge/_speedups.c does the same in one pass, reading the heads in place).

    Each line's head is cut out of the new line and found at its place in the remembered body; the
    passes are C-level builtins (`map`, `all`, `compress`) over `text.split("\n")`, not a Python loop per line.
    """
    lines = text.split("\n")
    lengths = learned.lengths
    if len(lines) != len(lengths):  # more or fewer lines than remembered
        return None
    distinct = set(lengths)  # one slice object per head length, not per line: a body has few
    heads = {length: slice(length) for length in distinct}
    tails = {length: slice(length, None) for length in distinct}
    # a line cut short passes for the start of its head: a sample's value is then "", not a number
    if not all(map(learned.text.startswith, map(_cut, lines, map(heads.__getitem__, lengths)), learned.starts)):
        return None
    comments = learned.samples.translate(_NEGATED)
    if any(map(ne, map(len, compress(lines, comments)), compress(lengths, comments))):  # no more, no less
        return None
    # each sample line's value text
    kept = list(map(_cut, compress(lines, learned.samples), map(tails.__getitem__, compress(lengths, learned.samples))))
    if "_" in "".join(kept):  # float() takes `1_000`, the parser does not
        return None
    try:
        values = list(map(float, kept))
    except ValueError:  # not a number: the parser will say what it is
        return None
    return values


class _Learner:
    """Collects a parsed scrape's shape: which series and part each sample line is."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.usable = True

    def see(self, values: list[float], *, kept: int, timed: bool) -> None:
        """A family's values, of which `kept` were classified; `timed` if any sample had its own time."""
        if kept != len(values) or timed:
            self.usable = False  # a left-out or timed sample: this shape is always parsed
        self.samples += values

    def learned(self, text: str, columns: list[Columns], evictions: int) -> _Learned | None:
        """The body as a template, if every sample line can be recognised by its text before the value
        and that text's value reads back as the parsed one."""
        if not self.usable or len(text) > _LONGEST_BODY:
            return None
        if speedups.native is not None and text.isascii():
            found = speedups.native.learn(text)
            shape = None if found is None else (array("I", found[0]), array("I", found[1]), *found[2:])
        else:
            shape = _shape(text)
        if shape is None:
            return None
        starts, lengths, samples, values = shape
        if len(values) != len(self.samples) or not _all_same(values, self.samples):
            return None
        families = [Columns(c.plan, c.series, c.parts) for c in columns]
        return _Learned(text, starts, lengths, samples, families, evictions)


def _shape(text: str) -> tuple[array[int], array[int], bytes, list[float]] | None:
    """Where each line starts and how long its head is, which lines are samples, each sample's value: the
    reference for `_speedups.learn`. One split of the body, then a few passes over its lines: a sample
    line's head ends at its last space, and the text after it is its value. None if a value is not one.
    """
    lines = text.split("\n")
    # per line: 1 for a sample line, 0 for a comment or blank line (empty, or `#` once stripped on the left)
    samples = bytes([line.lstrip()[:1] not in ("", "#") for line in lines])
    sample_lines = list(compress(lines, samples))
    sample_heads = [line.rfind(" ") + 1 for line in sample_lines]  # a head ends with the line's last space
    if 0 in sample_heads:  # no space: no value to find
        return None
    tokens = [line[head:] for line, head in zip(sample_lines, sample_heads, strict=True)]
    if "_" in "".join(tokens):  # float() takes `1_000`, the parser does not
        return None
    try:
        values = list(map(float, tokens))
    except ValueError:
        return None
    heads = iter(sample_heads)  # a sample line's head; a comment or blank line whole
    lengths = array("I", [next(heads) if sample else len(line) for line, sample in zip(lines, samples, strict=True)])
    starts = array("I", accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
    return starts, lengths, samples, values


def _all_same(read: list[float], parsed: list[float]) -> bool:
    """Whether each value read from the text is the parsed one; all at once in the usual case (no NaN)."""
    return read == parsed or all(map(_same, read, parsed))


def _same(read: float, parsed: float) -> bool:
    return read == parsed or (read != read and parsed != parsed)
