"""The shared vocabulary: every stage after the parser speaks only these types.

A point knows what it means: its metric's kind and temporality, and the window
[start_ns, end_ns) it describes. Sinks normalise from this to what their backend
wants; nothing downstream has to guess from a metric's name.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

# Attrs: sorted (key, value) pairs, hashable. Series: one interned series (bridge/series/table.py).
from bridge.series.table import NS_PER_S as NS_PER_S
from bridge.series.table import Attrs as Attrs
from bridge.series.table import Series as Series
from bridge.series.table import shared


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
    """One point, as plug-ins read and write them; batches store them as columns (see Metric)."""

    attributes: Attrs
    value: Value
    start_ns: int
    end_ns: int


class Metric:
    """One metric of a batch: what it means, and its points as columns.

    Column i is one point: `series[i]` (the interned series: its attributes and
    everything consumers remember about it), `values[i]`, `starts[i]`, `ends[i]`.
    Sources and the built-in sinks read and write the columns; `points` and
    `with_points` are the easy vocabulary for plug-ins and tests (points built
    that way are interned in the shared series table by name and attributes).
    """

    __slots__ = (
        "description",
        "ends",
        "kind",
        "monotonic",
        "name",
        "series",
        "service_check",
        "starts",
        "temporality",
        "unit",
        "values",
    )

    def __init__(
        self,
        name: str,
        kind: Kind,
        points: Iterable[Point] = (),
        temporality: Temporality | None = None,  # counters, histograms, summaries
        unit: str = "",  # UCUM-style as OTLP uses: "s", "1", "{request}", "{token}"
        description: str = "",
        monotonic: bool = True,  # counters only
        #: a hint from the source's preset: this gauge is a state a backend may also show as a service check
        service_check: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.temporality = temporality
        self.unit = unit
        self.description = description
        self.monotonic = monotonic
        self.service_check = service_check
        self.series: list[Series] = []
        self.values: list[Value] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        if points:
            self._set_points(points)

    def _set_points(self, points: Iterable[Point]) -> None:
        intern = shared.intern
        for point in points:
            self.series.append(intern(self.name, point.attributes, point.attributes))
            self.values.append(point.value)
            self.starts.append(point.start_ns)
            self.ends.append(point.end_ns)

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Metric):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__ if name != "series") and [
            s.attributes for s in self.series
        ] == [s.attributes for s in other.series]

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return f"Metric({self.name!r}, {self.kind.value}, {len(self)} points)"

    @property
    def points(self) -> list[Point]:
        """The columns as Point objects (a copy: edit a metric through `with_points`)."""
        return [
            Point(s.attributes, v, a, b)
            for s, v, a, b in zip(self.series, self.values, self.starts, self.ends, strict=True)
        ]

    def replace(self, **changes: Any) -> Metric:
        """A copy with some fields changed (the columns are shared unless replaced)."""
        copy = Metric.__new__(Metric)
        for name in self.__slots__:
            setattr(copy, name, changes.pop(name) if name in changes else getattr(self, name))
        if changes:
            raise TypeError(f"unknown Metric fields: {sorted(changes)}")
        return copy

    def with_points(self, points: Iterable[Point]) -> Metric:
        copy = self.replace(series=[], values=[], starts=[], ends=[])
        copy._set_points(points)
        return copy

    def with_columns(self, series: list[Series], values: list[Value], starts: list[int], ends: list[int]) -> Metric:
        return self.replace(series=series, values=values, starts=starts, ends=ends)

    def take(self, indices: Iterable[int]) -> Metric:
        """A copy holding only the points at these indices (in that order)."""
        picked = list(indices)
        return self.with_columns(
            [self.series[i] for i in picked],
            [self.values[i] for i in picked],
            [self.starts[i] for i in picked],
            [self.ends[i] for i in picked],
        )

    def slice(self, start: int, stop: int) -> Metric:
        return self.with_columns(
            self.series[start:stop], self.values[start:stop], self.starts[start:stop], self.ends[start:stop]
        )


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
        return sum(len(m) for m in self.metrics)

    def iter_points(self) -> Iterator[tuple[Metric, Point]]:
        for metric in self.metrics:
            for point in metric.points:
                yield metric, point


def attrs_from(mapping: dict[str, str]) -> Attrs:
    """Canonical (sorted) attribute tuple from a mapping."""
    return tuple(sorted(mapping.items()))
