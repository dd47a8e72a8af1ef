"""Turn parsed exposition families into model metrics that know what they mean.

One small handler per exposition type (as Datadog's OpenMetrics transformers
do), plus rules that override a family's declared type: the Cerebras
`*_total` families are declared gauges but are per-window counts, so a rule
makes them delta counters. Statistic-labelled gauges keep their kind and get
one normalised `statistic` attribute.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from bridge.http import excerpt
from bridge.model import (
    NS_PER_S,
    Attrs,
    HistogramValue,
    Kind,
    Metric,
    Point,
    SummaryValue,
    Temporality,
)
from bridge.parser import Family, Sample
from bridge.schema import Regex, StrictModel

log = logging.getLogger(__name__)

STATISTIC = "statistic"


class FamilyRule(StrictModel):
    """Overrides for families whose name fully matches `match` (a regex)."""

    match: Regex = Field(description="regular expression matched against the whole family name")
    kind: Literal["gauge", "counter"] | None = None
    temporality: Literal["cumulative", "delta"] | None = None
    unit: str | None = None
    statistic_labels: list[str] = Field(
        default_factory=list, description="labels that carry a statistic (p95, avg, ...); renamed to `statistic`"
    )
    service_check: str | None = Field(
        None, description="a gauge that is a state (1 ok, 0 critical, -1 unknown): also sent as this service check"
    )


@dataclass
class Window:
    start_ns: int
    end_ns: int


@dataclass
class _CompiledRule:
    pattern: re.Pattern[str]
    rule: FamilyRule


_UNIT_SUFFIXES = (("_seconds", "s"), ("_bytes", "By"), ("_ratio", "1"), ("_percent", "%"))


def unit_from_name(name: str) -> str:
    base = name.removesuffix("_total")
    for suffix, unit in _UNIT_SUFFIXES:
        if base.endswith(suffix):
            return unit
    return ""


class SeriesStarts:
    """Stable start times for cumulative series, with reset detection; bounded (LRU)."""

    def __init__(self, max_series: int = 200_000) -> None:
        self.max_series = max_series
        self._state: OrderedDict[tuple[str, Attrs], tuple[int, float]] = OrderedDict()

    def start_for(self, key: tuple[str, Attrs], value: float, first_seen_ns: int, reset_ns: int) -> int:
        previous = self._state.get(key)
        if previous is None:
            start = first_seen_ns
        else:
            start = reset_ns if value < previous[1] else previous[0]  # a drop is a reset: a new series life
            self._state.move_to_end(key)  # seen now, reset or not: the least recently seen is evicted first
        self._state[key] = (start, value)
        if len(self._state) > self.max_series:
            self._state.popitem(last=False)
        return start


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


@dataclass
class Classifier:
    """Stateful only in `starts` (cumulative start times); otherwise a pure mapping.

    Never raises on what a target sends: a sample it cannot use is skipped and
    counted in `skipped` (reset by each classify), and the rest of the scrape is kept.
    Labels in `resource_labels` are lifted off the points into `lifted` (label -> value,
    reset by each classify) for the batch's resource; a point whose value differs from
    the first one seen keeps its label, so nothing is lost.
    """

    rules: list[FamilyRule] = field(default_factory=list)
    resource_labels: frozenset[str] = frozenset()
    on_family: Callable[[Family], None] | None = None  # sees each family once per scrape
    starts: SeriesStarts = field(default_factory=SeriesStarts)
    skipped: Skipped = field(default_factory=Skipped)
    lifted: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._compiled = [_CompiledRule(re.compile(r.match), r) for r in self.rules]
        self._rule_cache: dict[str, FamilyRule | None] = {}

    def rule_for(self, name: str) -> FamilyRule | None:
        if name not in self._rule_cache:
            found = next((c.rule for c in self._compiled if c.pattern.fullmatch(name)), None)
            if len(self._rule_cache) > 10_000:
                self._rule_cache.clear()
            self._rule_cache[name] = found
        return self._rule_cache[name]

    def classify(self, families: list[Family], window: Window) -> list[Metric]:
        self.skipped = Skipped()
        self.lifted = {}
        metrics = []
        for family in families:
            rule = self.rule_for(family.name)
            if self.on_family is not None:
                self.on_family(family)
            try:
                metric = self._classify_family(family, rule, window)
            except Exception as exc:  # a shape no handler foresaw: lose this family, not the scrape
                log.debug("family %s not classified", family.name, exc_info=True)
                self.skipped.add(family.name, f"unusable family ({type(exc).__name__})", len(family.samples))
                continue
            if metric is not None and metric.points:
                metrics.append(metric)
        return metrics

    def _attrs(self, labels: Attrs, rule: FamilyRule | None, exclude: frozenset[str] = frozenset()) -> Attrs:
        if not self.resource_labels and not exclude and not (rule and rule.statistic_labels):
            return labels
        out = []
        for key, value in labels:
            if key in exclude:
                continue
            if key in self.resource_labels and self.lifted.setdefault(key, value) == value:
                continue
            out.append((STATISTIC if rule and key in rule.statistic_labels else key, value))
        out.sort()
        return tuple(out)

    def _point_end(self, family: Family, sample: Sample, window: Window) -> int | None:
        """The sample's own time if it has one, else the window end; None (skipped, counted) if unrepresentable."""
        if sample.timestamp is None:
            return window.end_ns
        end = to_ns(sample.timestamp)
        if end is None:
            self.skipped.add(family.name, f"timestamp {sample.timestamp!r} out of range")
        return end

    def _classify_family(self, family: Family, rule: FamilyRule | None, window: Window) -> Metric | None:
        kind = rule.kind if rule and rule.kind else family.type
        unit = rule.unit if rule and rule.unit is not None else (family.unit or unit_from_name(family.name))
        handler = _HANDLERS.get(kind, _gauge)
        metric = handler(self, family, rule, window)
        if metric is not None:
            metric.unit = unit
            metric.description = family.help
            metric.service_check = rule.service_check if rule else None
        return metric


def _plain_points(
    classifier: Classifier, family: Family, rule: FamilyRule | None, window: Window, samples: list[Sample]
) -> list[Point]:
    points = []
    for s in samples:
        end = classifier._point_end(family, s, window)
        if end is not None:
            points.append(Point(classifier._attrs(s.labels, rule), s.value, window.start_ns, end))
    return points


def _gauge(classifier: Classifier, family: Family, rule: FamilyRule | None, window: Window) -> Metric:
    samples = [s for s in family.samples if s.name == family.name]
    return Metric(family.name, Kind.GAUGE, _plain_points(classifier, family, rule, window, samples))


def _created_ns(value: float) -> int | None:
    """A `_created` sample as a start time; None (fall back to tracked starts) if absent or unusable."""
    return to_ns(value) if value else None


def _counter(classifier: Classifier, family: Family, rule: FamilyRule | None, window: Window) -> Metric:
    temporality = Temporality(rule.temporality) if rule and rule.temporality else Temporality.CUMULATIVE
    if temporality is Temporality.DELTA:
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        return Metric(family.name, Kind.COUNTER, _plain_points(classifier, family, rule, window, samples), temporality)
    created = {s.labels: s.value for s in family.samples if s.name == family.name + "_created"}
    points = []
    for s in family.samples:
        if s.name.endswith("_created") and s.name != family.name:
            continue
        end = classifier._point_end(family, s, window)
        if end is None:
            continue
        attrs = classifier._attrs(s.labels, rule)
        start = _created_ns(created.get(s.labels, 0.0))
        if start is None:
            start = classifier.starts.start_for((family.name, attrs), s.value, window.start_ns, window.start_ns)
        points.append(Point(attrs, s.value, start, end))
    return Metric(family.name, Kind.COUNTER, points, temporality)


def _grouped(
    classifier: Classifier, family: Family, rule: FamilyRule | None, group_label: str
) -> dict[Attrs, dict[str, list[Sample]]]:
    """Samples of a histogram or summary grouped by series (labels without le/quantile)."""
    groups: dict[Attrs, dict[str, list[Sample]]] = {}
    exclude = frozenset((group_label,))
    for s in family.samples:
        suffix = s.name[len(family.name) :]
        attrs = classifier._attrs(s.labels, rule, exclude)
        groups.setdefault(attrs, {}).setdefault(suffix, []).append(s)
    return groups


def _series_start(
    classifier: Classifier, family: Family, attrs: Attrs, parts: dict[str, list[Sample]], count: float, window: Window
) -> int:
    created = parts.get("_created")
    start = _created_ns(created[0].value) if created else None
    if start is not None:
        return start
    return classifier.starts.start_for((family.name, attrs), count, window.start_ns, window.start_ns)


def _first_value(parts: dict[str, list[Sample]], suffix: str) -> float:
    samples = parts.get(suffix)
    return samples[0].value if samples else math.nan


def _bounds(
    classifier: Classifier, family: Family, samples: list[Sample], label: str, default: str | None
) -> list[tuple[float, float]]:
    """(bound, value) pairs read from the `le` or `quantile` label, ascending; unreadable bounds skipped."""
    pairs = []
    for s in samples:
        raw = dict(s.labels).get(label, default)
        try:
            bound = float(raw) if raw is not None else math.nan
        except ValueError:
            bound = math.nan
        if math.isnan(bound):
            classifier.skipped.add(family.name, f"{label}={excerpt(repr(raw), 40)} is not a number")
            continue
        pairs.append((bound, s.value))
    pairs.sort()
    return pairs


def _histogram(classifier: Classifier, family: Family, rule: FamilyRule | None, window: Window) -> Metric:
    points = []
    for attrs, parts in _grouped(classifier, family, rule, "le").items():
        buckets = _bounds(classifier, family, parts.get("_bucket", []), "le", "+Inf")
        count = _first_value(parts, "_count")
        if math.isnan(count) and buckets:
            count = buckets[-1][1]
        anchors = parts.get("_bucket") or parts.get("_count")
        if not anchors:
            continue
        anchor = anchors[0]
        end = classifier._point_end(family, anchor, window)
        if end is None:
            continue
        start = _series_start(classifier, family, attrs, parts, count, window)
        value = HistogramValue(count, _first_value(parts, "_sum"), tuple(buckets))
        points.append(Point(attrs, value, start, end))
    return Metric(family.name, Kind.HISTOGRAM, points, Temporality.CUMULATIVE)


def _summary(classifier: Classifier, family: Family, rule: FamilyRule | None, window: Window) -> Metric:
    points = []
    for attrs, parts in _grouped(classifier, family, rule, "quantile").items():
        quantiles = _bounds(classifier, family, parts.get("", []), "quantile", None)
        count = _first_value(parts, "_count")
        anchors = parts.get("_count") or parts.get("")
        if not anchors:
            continue
        anchor = anchors[0]
        end = classifier._point_end(family, anchor, window)
        if end is None:
            continue
        start = _series_start(classifier, family, attrs, parts, count, window)
        value = SummaryValue(count, _first_value(parts, "_sum"), tuple(quantiles))
        points.append(Point(attrs, value, start, end))
    return Metric(family.name, Kind.SUMMARY, points, Temporality.CUMULATIVE)


_HANDLERS: dict[str, Callable[[Classifier, Family, FamilyRule | None, Window], Metric | None]] = {
    "gauge": _gauge,
    "untyped": _gauge,
    "unknown": _gauge,
    "counter": _counter,
    "histogram": _histogram,
    "gaugehistogram": _gauge,
    "summary": _summary,
}
