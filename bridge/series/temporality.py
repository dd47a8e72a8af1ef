"""Per-sink temporality: turn what a source produced into what the backend wants (OTLP, remote write).

Both directions are the one counter rule (bridge/series/counter.py), with the
state kept on each series' entry in the series table (one memo slot per sink,
resource and metric), so the table's bound is this state's bound too:

- `cumulative` (Prometheus-style backends): each series' per-window deltas are
  summed into a running total (`accumulate`) whose start time is the first
  window this process saw for the series. A restart (a new sink) starts a new
  start time at zero, so backends see a counter reset, never a fake jump.
  Cumulative inputs (Prometheus counters and histograms) pass through.
- `delta`: deltas pass through; cumulative inputs are differenced (`difference`):
  the first observation is only a baseline (its value includes history we never
  saw; counted as dropped `first_value`), a drop in value or a new start time is
  a reset, whose delta is the new value since its start.

A window at or before one already counted is dropped and counted as
`out_of_order`, in either direction (adding it again would double count).

A delta series that is absent from a window (an `http_code` that saw no failures this
minute) is still a live counter for a Prometheus-style backend: in cumulative mode its
running total is repeated at the new window's end, as an exporter keeps exposing a
counter that did not move, until the series table forgets the series (idle for
`series.idle_seconds`). Without that, a series seen once would be a single sample
that `rate()` and `increase()` never show.

Gauges and summaries are stateless and pass through (OTLP summaries carry no
temporality). A NaN value is never added into state: the point goes out as NaN,
which the encoder marks "no recorded value".
"""

from __future__ import annotations

from bridge import telemetry
from bridge.model import Attrs, Batch, Kind, Metric, Series, Temporality
from bridge.series import new_slot
from bridge.series.counter import (
    BASELINE_REASON,
    STALE_REASON,
    Change,
    CounterState,
    accumulate,
    difference,
    has_no_value,
)


class TemporalityNormalizer:
    def __init__(self, target: Temporality, *, sink_name: str) -> None:
        self.target = target
        self.sink_name = sink_name
        self._slots: dict[tuple[Attrs, str], int] = {}  # (resource, metric name) -> memo slot of its series' state

    def normalize(self, batch: Batch) -> Batch:
        metrics = [self._metric(batch.resource, metric) for metric in batch.metrics]
        return batch.with_metrics([metric for metric in metrics if metric.values])

    def _slot(self, resource: Attrs, name: str) -> int:
        slot = self._slots.get((resource, name))
        if slot is None:
            slot = self._slots[(resource, name)] = new_slot()
        return slot

    def _metric(self, resource: Attrs, metric: Metric) -> Metric:
        if metric.kind not in (Kind.COUNTER, Kind.HISTOGRAM):
            return metric
        source = metric.temporality or Temporality.CUMULATIVE
        up_down_total = metric.kind is Kind.COUNTER and not metric.monotonic and source is Temporality.CUMULATIVE
        if source is self.target or up_down_total:  # an up-down total stays cumulative, as in the OTel SDK
            return metric
        slot = self._slot(resource, metric.name)
        out = metric.replace(temporality=self.target, series=[], values=[], starts=[], ends=[])
        cumulative = self.target is Temporality.CUMULATIVE
        rule = accumulate if cumulative else difference
        dropped = {STALE_REASON: 0, BASELINE_REASON: 0}
        for series, value, start_ns, end_ns in zip(
            metric.series, metric.values, metric.starts, metric.ends, strict=True
        ):
            memo = series.memo
            state: CounterState | None = memo.get(slot)
            if has_no_value(value):  # nothing recorded: sent as is, never added into state
                start = (state.start_ns if cumulative else state.end_ns) if state is not None else start_ns
                _append(out, series, value, start, end_ns)
                continue
            observed, memo[slot] = rule(state, start_ns, end_ns, value)
            change = observed.change
            if change is Change.STALE:
                dropped[STALE_REASON] += 1
            elif change is Change.BASELINE and not cumulative:
                dropped[BASELINE_REASON] += 1
            else:
                _append(out, series, observed.value, observed.start_ns, observed.end_ns)
        for reason, count in dropped.items():
            if count:
                telemetry.DROPPED_POINTS.labels(self.sink_name, reason).inc(count)
        if cumulative and metric.series:
            _carry_forward(out, metric, slot, max(metric.ends))
        return out


def _append(metric: Metric, series: Series, value: object, start_ns: int, end_ns: int) -> None:
    metric.series.append(series)
    metric.values.append(value)  # type: ignore[arg-type]  # a Value: the counter rule returns what it was given
    metric.starts.append(start_ns)
    metric.ends.append(end_ns)


def _carry_forward(out: Metric, metric: Metric, slot: int, end_ns: int) -> None:
    """Running totals of this metric's live series that the batch did not mention, repeated at its end."""
    members = metric.series[0].members
    if len(members) <= len(metric.series):
        return
    present = set(metric.series)
    for series in members.values():
        state: CounterState | None = series.memo.get(slot)
        if state is not None and series not in present and state.end_ns < end_ns:
            _append(out, series, state.value, state.start_ns, end_ns)
