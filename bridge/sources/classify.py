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
from dataclasses import dataclass, field
from typing import Callable, Literal

from pydantic import Field

from bridge.config import Regex, StrictModel
from bridge.model import NS_PER_S, Attrs, HistogramValue, Kind, Metric, Point, SummaryValue, Temporality
from bridge.parser import Family, Sample

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
        elif value < previous[1]:  # counter reset: a new series life begins
            start = reset_ns
        else:
            start = previous[0]
            self._state.move_to_end(key)
        self._state[key] = (start, value)
        if len(self._state) > self.max_series:
            self._state.popitem(last=False)
        return start


@dataclass
class Classifier:
    """Stateful only in `starts` (cumulative start times); otherwise a pure mapping."""

    rules: list[FamilyRule] = field(default_factory=list)
    drop_labels: frozenset[str] = frozenset()
    on_family: Callable[[Family], None] | None = None  # sees each family once per scrape
    starts: SeriesStarts = field(default_factory=SeriesStarts)

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
        metrics = []
        for family in families:
            rule = self.rule_for(family.name)
            if self.on_family is not None:
                self.on_family(family)
            metric = self._classify_family(family, rule, window)
            if metric is not None and metric.points:
                metrics.append(metric)
        return metrics

    def _attrs(self, labels: Attrs, rule: FamilyRule | None, exclude: frozenset[str] = frozenset()) -> Attrs:
        if not self.drop_labels and not exclude and not (rule and rule.statistic_labels):
            return labels
        out = []
        for key, value in labels:
            if key in self.drop_labels or key in exclude:
                continue
            if rule and key in rule.statistic_labels:
                key = STATISTIC
            out.append((key, value))
        out.sort()
        return tuple(out)

    def _classify_family(self, family: Family, rule: FamilyRule | None, window: Window) -> Metric | None:
        kind = rule.kind if rule and rule.kind else family.type
        unit = rule.unit if rule and rule.unit is not None else (family.unit or unit_from_name(family.name))
        handler = _HANDLERS.get(kind, _gauge)
        metric = handler(self, family, rule, window)
        if metric is not None:
            metric.unit = unit
            metric.description = family.help
        return metric


def _point_end(sample: Sample, window: Window) -> int:
    return int(sample.timestamp * NS_PER_S) if sample.timestamp is not None else window.end_ns


def _gauge(classifier: Classifier, family: Family, rule: FamilyRule | None, window: Window) -> Metric:
    points = [
        Point(classifier._attrs(s.labels, rule), s.value, window.start_ns, _point_end(s, window))
        for s in family.samples
        if s.name == family.name
    ]
    return Metric(family.name, Kind.GAUGE, points)


def _counter(classifier: Classifier, family: Family, rule: FamilyRule | None, window: Window) -> Metric:
    temporality = Temporality(rule.temporality) if rule and rule.temporality else Temporality.CUMULATIVE
    if temporality is Temporality.DELTA:
        points = [
            Point(classifier._attrs(s.labels, rule), s.value, window.start_ns, _point_end(s, window))
            for s in family.samples
            if not s.name.endswith("_created")
        ]
        return Metric(family.name, Kind.COUNTER, points, temporality)
    created = {s.labels: s.value for s in family.samples if s.name == family.name + "_created"}
    points = []
    for s in family.samples:
        if s.name.endswith("_created") and s.name != family.name:
            continue
        attrs = classifier._attrs(s.labels, rule)
        end = _point_end(s, window)
        if s.labels in created and not math.isnan(created[s.labels]):
            start = int(created[s.labels] * NS_PER_S)
        else:
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
        suffix = s.name[len(family.name):]
        attrs = classifier._attrs(s.labels, rule, exclude)
        groups.setdefault(attrs, {}).setdefault(suffix, []).append(s)
    return groups


def _series_start(classifier: Classifier, family: Family, attrs: Attrs, parts: dict[str, list[Sample]],
                  count: float, window: Window) -> int:
    created = parts.get("_created")
    if created and not math.isnan(created[0].value):
        return int(created[0].value * NS_PER_S)
    return classifier.starts.start_for((family.name, attrs), count, window.start_ns, window.start_ns)


def _first_value(parts: dict[str, list[Sample]], suffix: str) -> float:
    samples = parts.get(suffix)
    return samples[0].value if samples else math.nan


def _histogram(classifier: Classifier, family: Family, rule: FamilyRule | None, window: Window) -> Metric:
    points = []
    for attrs, parts in _grouped(classifier, family, rule, "le").items():
        buckets = sorted(
            (float(dict(s.labels).get("le", "+Inf")), s.value) for s in parts.get("_bucket", [])
        )
        count = _first_value(parts, "_count")
        if math.isnan(count) and buckets:
            count = buckets[-1][1]
        anchor = (parts.get("_bucket") or parts.get("_count") or [None])[0]
        if anchor is None:
            continue
        start = _series_start(classifier, family, attrs, parts, count, window)
        value = HistogramValue(count, _first_value(parts, "_sum"), tuple(buckets))
        points.append(Point(attrs, value, start, _point_end(anchor, window)))
    return Metric(family.name, Kind.HISTOGRAM, points, Temporality.CUMULATIVE)


def _summary(classifier: Classifier, family: Family, rule: FamilyRule | None, window: Window) -> Metric:
    points = []
    for attrs, parts in _grouped(classifier, family, rule, "quantile").items():
        quantiles = sorted((float(dict(s.labels)["quantile"]), s.value) for s in parts.get("", []))
        count = _first_value(parts, "_count")
        anchor = (parts.get("_count") or parts.get("") or [None])[0]
        if anchor is None:
            continue
        start = _series_start(classifier, family, attrs, parts, count, window)
        value = SummaryValue(count, _first_value(parts, "_sum"), tuple(quantiles))
        points.append(Point(attrs, value, start, _point_end(anchor, window)))
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
