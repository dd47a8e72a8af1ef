"""Per-sink temporality: turn what a source produced into what the backend wants.

- `cumulative` (Prometheus-style backends): each series' per-window deltas are
  summed into a running total whose start time is the first window this
  process saw for the series. A restart (a new sink) starts a new start time at
  zero, so backends see a counter reset, never a fake jump. Cumulative inputs
  (Prometheus counters and histograms) pass through.
- `delta`: deltas pass through; cumulative inputs are differenced against the
  previous observation. The first observation is only a baseline (its value
  includes history we never saw); a drop in value or a new start time is a
  reset, whose delta is the new value since its start.

A delta series that is absent from a window (an `http_code` that saw no failures this
minute) is still a live counter for a Prometheus-style backend: in cumulative mode its
running total is repeated at the new window's end, as an exporter keeps exposing a
counter that did not move, until the series goes idle. Without that, a series seen
once would be a single sample that `rate()` and `increase()` never show.

Gauges and summaries are stateless and pass through (OTLP summaries carry no
temporality). A NaN value is never added into state: the point goes out as NaN,
which the encoder marks "no recorded value". State is per series (resource,
name, attributes), kept in least-recently-updated order so the series limit
and the idle expiry (in window time, so replays and simulated clocks agree)
both evict from the front.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace

from bridge import telemetry
from bridge.model import NS_PER_S, Attrs, Batch, HistogramValue, Kind, Metric, Point, Temporality, Value

SeriesKey = tuple[Attrs, str, Attrs]  # (resource, metric name, point attributes)


@dataclass(slots=True)
class _Series:
    start_ns: int
    value: Value  # cumulative target: the running total; delta target: the last cumulative observation
    last_end_ns: int


def has_no_value(value: Value) -> bool:
    """NaN (an idle endpoint's statistic) or a histogram whose count is NaN: nothing was recorded."""
    if isinstance(value, HistogramValue):
        return math.isnan(value.count)
    return isinstance(value, float) and math.isnan(value)


def _same_bounds(a: HistogramValue, b: HistogramValue) -> bool:
    return len(a.buckets) == len(b.buckets) and all(x[0] == y[0] for x, y in zip(a.buckets, b.buckets, strict=True))


def _add(total: Value, delta: Value) -> Value | None:
    """total + delta, or None when they cannot be added (histogram bounds changed: start over)."""
    if isinstance(total, HistogramValue) and isinstance(delta, HistogramValue):
        if not _same_bounds(total, delta):
            return None
        buckets = tuple((le, a + b) for (le, a), (_, b) in zip(total.buckets, delta.buckets, strict=True))
        return HistogramValue(total.count + delta.count, total.sum + delta.sum, buckets)
    if isinstance(total, float | int) and isinstance(delta, float | int):
        return total + delta
    return None


def _subtract(current: Value, previous: Value) -> Value | None:
    """current - previous, or None when current cannot follow previous (a reset)."""
    if isinstance(current, HistogramValue) and isinstance(previous, HistogramValue):
        if not _same_bounds(current, previous) or current.count < previous.count:
            return None
        buckets = tuple((le, a - b) for (le, a), (_, b) in zip(current.buckets, previous.buckets, strict=True))
        if any(count < 0 for _, count in buckets):
            return None
        return HistogramValue(current.count - previous.count, current.sum - previous.sum, buckets)
    if isinstance(current, float | int) and isinstance(previous, float | int):
        return current - previous if current >= previous else None
    return None


class TemporalityNormalizer:
    def __init__(self, target: Temporality, *, sink_name: str, series_limit: int, idle_seconds: float) -> None:
        self.target = target
        self.sink_name = sink_name
        self.series_limit = series_limit
        self.idle_ns = int(idle_seconds * NS_PER_S)
        self._series: OrderedDict[SeriesKey, _Series] = OrderedDict()
        self._by_metric: dict[tuple[Attrs, str], dict[Attrs, None]] = {}  # tracked attributes per metric

    def __len__(self) -> int:
        return len(self._series)

    def normalize(self, batch: Batch) -> Batch:
        self._expire_idle(batch.window_end_ns)
        metrics = [self._metric(batch.resource, metric) for metric in batch.metrics]
        telemetry.OTLP_TRACKED_SERIES.labels(self.sink_name).set(len(self._series))
        return batch.with_metrics([metric for metric in metrics if metric.points])

    def _metric(self, resource: Attrs, metric: Metric) -> Metric:
        if metric.kind not in (Kind.COUNTER, Kind.HISTOGRAM):
            return metric
        source = metric.temporality or Temporality.CUMULATIVE
        up_down_total = metric.kind is Kind.COUNTER and not metric.monotonic and source is Temporality.CUMULATIVE
        if source is self.target or up_down_total:  # an up-down total stays cumulative, as in the OTel SDK
            return metric
        convert = self._accumulate if self.target is Temporality.CUMULATIVE else self._difference
        points = []
        for point in metric.points:
            converted = convert((resource, metric.name, point.attributes), point)
            if converted is not None:
                points.append(converted)
        if self.target is Temporality.CUMULATIVE and metric.points:
            points += self._carried_forward(resource, metric, max(p.end_ns for p in metric.points))
        return replace(metric, points=points, temporality=self.target)

    def _carried_forward(self, resource: Attrs, metric: Metric, end_ns: int) -> list[Point]:
        """Running totals of this metric's tracked series that the batch did not mention."""
        tracked = self._by_metric.get((resource, metric.name))
        if not tracked or len(tracked) <= len(metric.points):
            return []
        present = {point.attributes for point in metric.points}
        out = []
        for attributes in tracked:
            series = self._series.get((resource, metric.name, attributes))
            if attributes not in present and series is not None and series.last_end_ns < end_ns:
                out.append(Point(attributes, series.value, series.start_ns, end_ns))
        return out

    def _accumulate(self, key: SeriesKey, point: Point) -> Point | None:
        series = self._series.get(key)
        if has_no_value(point.value):
            return replace(point, start_ns=series.start_ns if series else point.start_ns)
        if series is not None and point.end_ns <= series.last_end_ns:
            self._count_out_of_order()
            return None
        total = None if series is None else _add(series.value, point.value)
        if series is None or total is None:
            series = _Series(point.start_ns, point.value, point.end_ns)
        else:
            series.value, series.last_end_ns = total, point.end_ns
        self._touch(key, series)
        return Point(point.attributes, series.value, series.start_ns, point.end_ns)

    def _difference(self, key: SeriesKey, point: Point) -> Point | None:
        previous = self._series.get(key)
        if has_no_value(point.value):
            return replace(point, start_ns=previous.last_end_ns if previous else point.start_ns)
        if previous is not None and point.end_ns <= previous.last_end_ns:
            self._count_out_of_order()
            return None
        self._touch(key, _Series(point.start_ns, point.value, point.end_ns))
        if previous is None:
            return None  # a baseline: its value holds increases from before we were watching
        delta = _subtract(point.value, previous.value) if point.start_ns == previous.start_ns else None
        if delta is None:  # reset: the counter restarted from zero since the previous observation
            return Point(point.attributes, point.value, max(point.start_ns, previous.last_end_ns), point.end_ns)
        return Point(point.attributes, delta, previous.last_end_ns, point.end_ns)

    def _count_out_of_order(self) -> None:
        """A window at or before one already counted (a replay) is dropped: adding it again would double count."""
        telemetry.DROPPED_POINTS.labels(self.sink_name, "out_of_order").inc()

    def _touch(self, key: SeriesKey, series: _Series) -> None:
        self._series[key] = series
        self._series.move_to_end(key)
        self._by_metric.setdefault(key[:2], {})[key[2]] = None
        if len(self._series) > self.series_limit:
            self._evict_oldest()
            telemetry.OTLP_SERIES_EVICTED.labels(self.sink_name, "limit").inc()

    def _evict_oldest(self) -> None:
        (resource, name, attributes), _ = self._series.popitem(last=False)
        tracked = self._by_metric.get((resource, name))
        if tracked is not None:
            tracked.pop(attributes, None)
            if not tracked:
                del self._by_metric[(resource, name)]

    def _expire_idle(self, now_ns: int) -> None:
        horizon = now_ns - self.idle_ns
        expired = 0
        while self._series:
            oldest = next(iter(self._series.values()))
            if oldest.last_end_ns >= horizon:
                break
            self._evict_oldest()
            expired += 1
        if expired:
            telemetry.OTLP_SERIES_EVICTED.labels(self.sink_name, "idle").inc(expired)
