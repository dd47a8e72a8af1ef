"""The shared vocabulary: every stage after the parser speaks only these types.

A point knows what it means: its metric's kind and temporality, and the window
[start_ns, end_ns) it describes. Sinks normalise from this to what their backend
wants; nothing downstream has to guess from a metric's name.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

#: Attributes (labels) of a point: sorted (key, value) pairs. A tuple so it is
#: hashable and can key per-series caches and state in sinks.
Attrs = tuple[tuple[str, str], ...]

NS_PER_S = 1_000_000_000


class Kind(str, enum.Enum):
    GAUGE = "gauge"
    COUNTER = "counter"
    SUMMARY = "summary"
    HISTOGRAM = "histogram"


class Temporality(str, enum.Enum):
    """How a counter's value relates to time (OTLP's AggregationTemporality)."""

    CUMULATIVE = "cumulative"  # running total since start_ns (a Prometheus counter)
    DELTA = "delta"  # increase over [start_ns, end_ns) only (a Cerebras per-minute count)


@dataclass(frozen=True, slots=True)
class HistogramValue:
    """A Prometheus histogram point: cumulative bucket counts by upper bound."""

    count: float
    sum: float
    buckets: tuple[tuple[float, float], ...]  # (le, cumulative count), ascending, +Inf last


@dataclass(frozen=True, slots=True)
class SummaryValue:
    """A Prometheus summary point: count, sum and quantile values."""

    count: float
    sum: float
    quantiles: tuple[tuple[float, float], ...]  # (quantile, value), ascending


Value = float | HistogramValue | SummaryValue


@dataclass(slots=True)
class Point:
    attributes: Attrs
    value: Value
    start_ns: int
    end_ns: int


@dataclass(slots=True)
class Metric:
    name: str
    kind: Kind
    points: list[Point] = field(default_factory=list)
    temporality: Temporality | None = None  # counters, histograms, summaries
    unit: str = ""  # UCUM-style as OTLP uses: "s", "1", "{request}", "{token}"
    description: str = ""
    monotonic: bool = True  # counters only
    #: a hint from the source's preset: this gauge is a state a backend may also show as a service check
    service_check: str | None = None

    def with_points(self, points: list[Point]) -> Metric:
        return replace(self, points=points)


@dataclass(slots=True)
class Batch:
    """Everything one source produced for one window."""

    source: str
    resource: Attrs  # e.g. (("bridge.source", "cerebras"), ("cerebras.organization_id", "org_x"))
    window_start_ns: int
    window_end_ns: int
    metrics: list[Metric]
    #: a hint from the source's preset: the upstream's metric namespace (Datadog prefixes names with it)
    namespace: str = ""

    def with_metrics(self, metrics: list[Metric]) -> Batch:
        return replace(self, metrics=metrics)

    def point_count(self) -> int:
        return sum(len(m.points) for m in self.metrics)

    def iter_points(self) -> Iterator[tuple[Metric, Point]]:
        for metric in self.metrics:
            for point in metric.points:
                yield metric, point


def attrs_from(mapping: dict[str, str]) -> Attrs:
    """Canonical (sorted) attribute tuple from a mapping."""
    return tuple(sorted(mapping.items()))
