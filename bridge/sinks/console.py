"""`console`: a readable table per window, for people (the demo's sink).

`layout: summary` (the default) shows one row per Cerebras endpoint, with each count's change since
that endpoint's previous window; a batch without the Cerebras families (any other exporter) has no
endpoints to summarise and prints the per-point table, which `layout: points` always prints.
"""

from __future__ import annotations

import datetime
import math
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from bridge import registry
from bridge.context import Context
from bridge.model import (
    NS_PER_S,
    Batch,
    HistogramValue,
    Kind,
    Metric,
    Point,
    SummaryValue,
    Value,
)
from bridge.schema import SinkConfig
from bridge.sinks.base import Payload, Sink

_COLUMNS = ("metric", "kind", "endpoint", "statistic", "value", "labels")


class ConsoleSinkConfig(SinkConfig):
    stream: Literal["stdout", "stderr"] = "stdout"
    layout: Literal["summary", "points"] = Field(
        "summary",
        description="summary: one row per Cerebras endpoint (other sources print points); points: one row per point",
    )
    max_rows: int = Field(500, ge=1, description="rows shown per window; the rest are counted")


def _clock(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / NS_PER_S, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_value(value: Value) -> str:
    if isinstance(value, HistogramValue):
        return f"count={value.count:g} sum={value.sum:g} buckets={len(value.buckets)}"
    if isinstance(value, SummaryValue):
        return f"count={value.count:g} sum={value.sum:g} " + " ".join(f"q{q:g}={v:g}" for q, v in value.quantiles)
    if math.isnan(value):
        return "NaN"
    return f"{value:.0f}" if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"


def _kind(metric: Metric) -> str:
    if metric.kind is Kind.GAUGE:
        return "gauge"
    return f"{metric.kind.value}/{metric.temporality.value if metric.temporality else '?'}"


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if unicodedata.category(char) not in ("Cc", "Zl", "Zp"):
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _one_line(text: str) -> str:
    """`text` on one line: a label value may hold a newline or another control that would break the table."""
    return text if text.isprintable() else "".join(map(_escape_char, text))


def _row(metric: Metric, point: Point) -> tuple[str, ...]:
    attrs = dict(point.attributes)
    endpoint = attrs.pop("endpoint", "")
    statistic = attrs.pop("statistic", "")
    rest = " ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    cells = (metric.name, _kind(metric), endpoint, statistic, format_value(point.value), rest)
    return tuple(map(_one_line, cells))


def _title(batch: Batch, count: str, label: str = "window ") -> str:
    resource = _one_line(" ".join(f"{k}={v}" for k, v in batch.resource if k != "bridge.source"))
    window = f"{_clock(batch.window_start_ns)} → {_clock(batch.window_end_ns)[11:]} UTC"
    return f"── {_one_line(batch.source)} · {label}{window} · {count}{' · ' + resource if resource else ''}"


def render_table(batch: Batch, max_rows: int) -> str:
    rows = [_row(m, p) for m, p in batch.iter_points()]
    shown = rows[:max_rows]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(_COLUMNS)]
    lines = [
        _title(batch, f"{len(rows)} points"),
        "  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True)).rstrip(),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in shown]
    if len(rows) > len(shown):
        lines.append(f"… {len(rows) - len(shown)} more points")
    return "\n".join(lines) + "\n\n"


# The Cerebras families the summary reads (bridge/presets/cerebras.py), by the row field they fill.
_STATUS_FAMILY = "inference_endpoint_status"
_COUNT_FAMILIES = {
    "requests_count_total": "requests",
    "requests_success_total": "success",
    "requests_failure_total": "failures",  # one series per http_code: summed
    "input_tokens_total": "input",
    "output_tokens_total": "output",
}
_LATENCIES = (("ttft_seconds", "p50"), ("ttft_seconds", "p95"), ("e2e_latency_seconds", "p95"))
_STATUS_WORDS = {1.0: "up", 0.0: "DOWN", -1.0: "unknown"}
_SUMMARY_COLUMNS = ("endpoint", "status", "requests", "success", "failures", "tokens in/out", "TTFT p50/p95", "e2e p95")
_ENDPOINT_WIDTH = 28  # longer names are cut, so a row fits in about 100 columns
#: an endpoint absent for this long (window time) loses its previous window: the sink's memory stays bounded
FORGET_AFTER_NS = 3600 * NS_PER_S


@dataclass(slots=True)
class EndpointRow:
    """One endpoint's numbers in one window; a family the batch lacks stays absent (shown as "-")."""

    status: float | None = None
    counts: dict[str, float] = field(default_factory=dict)
    latencies: dict[tuple[str, str], float] = field(default_factory=dict)


def summarise(batch: Batch) -> dict[str, EndpointRow]:
    """The Cerebras families' points by endpoint, in the order the batch first names each endpoint."""
    rows: dict[str, EndpointRow] = {}
    for metric, point in batch.iter_points():
        attrs = dict(point.attributes)
        endpoint = attrs.get("endpoint")
        value = point.value
        if endpoint is None or isinstance(value, HistogramValue | SummaryValue):
            continue
        if metric.name == _STATUS_FAMILY:
            rows.setdefault(endpoint, EndpointRow()).status = value
        elif metric.name in _COUNT_FAMILIES:
            counts = rows.setdefault(endpoint, EndpointRow()).counts
            key = _COUNT_FAMILIES[metric.name]
            counts[key] = counts.get(key, 0.0) + value
        elif (metric.name, attrs.get("statistic")) in _LATENCIES:
            rows.setdefault(endpoint, EndpointRow()).latencies[(metric.name, attrs["statistic"])] = value
    return rows


def _count(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}"


def _change(value: float | None, previous: float | None) -> str:
    if value is None or previous is None or math.isnan(value - previous):
        return ""
    return f" ({value - previous + 0.0:+,.0f})"  # + 0.0: no "-0"


def _compact(value: float | None) -> str:
    """Token counts run to millions a minute: three significant digits and a k/M/G suffix."""
    if value is None or math.isnan(value) or abs(value) < 10_000:
        return _count(value)
    for scale, suffix in ((1e3, "k"), (1e6, "M"), (1e9, "G")):
        if abs(value) / scale < 999.5:
            return f"{value / scale:.3g}{suffix}"
    return f"{value / 1e12:.3g}T"


def _duration(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) * 1000 < 999.5:
        return f"{value * 1000:.3g}ms"
    return f"{value:.3g}s" if abs(value) < 999.5 else f"{value:,.0f}s"


def _success(counts: dict[str, float]) -> str:
    requests, success = counts.get("requests", math.nan), counts.get("success", math.nan)
    if not requests > 0 or math.isnan(success):
        return "-"
    percent = 100 * success / requests
    return f"{min(percent, 99.9) if success < requests else percent:.1f}%"  # a failure never rounds to 100.0%


def _status(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return _STATUS_WORDS.get(value, format_value(value))


def _endpoint_cell(endpoint: str) -> str:
    text = _one_line(endpoint)
    return text if len(text) <= _ENDPOINT_WIDTH else text[: _ENDPOINT_WIDTH - 1] + "…"


def _summary_row(endpoint: str, row: EndpointRow, previous: dict[str, float] | None) -> tuple[str, ...]:
    counts, before = row.counts, previous or {}
    latency = row.latencies.get
    return (
        _endpoint_cell(endpoint),
        _status(row.status),
        _count(counts.get("requests")) + _change(counts.get("requests"), before.get("requests")),
        _success(counts),
        _count(counts.get("failures")) + _change(counts.get("failures"), before.get("failures")),
        f"{_compact(counts.get('input'))} / {_compact(counts.get('output'))}",
        f"{_duration(latency(('ttft_seconds', 'p50')))} / {_duration(latency(('ttft_seconds', 'p95')))}",
        _duration(latency(("e2e_latency_seconds", "p95"))),
    )


def render_summary(
    batch: Batch, rows: dict[str, EndpointRow], previous: dict[str, dict[str, float]], max_rows: int
) -> str:
    """One line per endpoint; `previous` holds each endpoint's counts from its last window, for the change."""
    cells = [_summary_row(name, row, previous.get(name)) for name, row in rows.items()]
    shown = cells[:max_rows]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(_SUMMARY_COLUMNS)]

    def line(row: tuple[str, ...]) -> str:
        # names and states read left to right, numbers line up on the right
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    lines = [_title(batch, f"{len(cells)} endpoints", label=""), line(_SUMMARY_COLUMNS).rstrip()]  # 100 columns
    lines += [line(row).rstrip() for row in shown]
    if len(cells) > len(shown):
        lines.append(f"… {len(cells) - len(shown)} more endpoints")
    return "\n".join(lines) + "\n\n"


@registry.sinks.register("console")
class ConsoleSink(Sink):
    Config = ConsoleSinkConfig

    def __init__(self, name: str, config: ConsoleSinkConfig, context: Context) -> None:
        super().__init__(name, config, context)
        #: source -> endpoint -> (window end, counts) of the endpoint's last window, for the change column
        self.previous: dict[str, dict[str, tuple[int, dict[str, float]]]] = {}

    def prepare(self, batch: Batch) -> list[Payload]:
        rows = summarise(batch) if self.config.layout == "summary" else {}
        if not rows:
            text = render_table(batch, self.config.max_rows)
            return [Payload(text.encode(), batch.window_end_ns, batch.point_count())]
        # an endpoint absent for an hour of this source's window time is forgotten: the memory stays bounded
        horizon = batch.window_end_ns - FORGET_AFTER_NS
        seen = {e: last for e, last in self.previous.get(batch.source, {}).items() if last[0] > horizon}
        text = render_summary(batch, rows, {e: counts for e, (_, counts) in seen.items()}, self.config.max_rows)
        seen.update((e, (batch.window_end_ns, row.counts)) for e, row in rows.items())
        self.previous[batch.source] = seen
        return [Payload(text.encode(), batch.window_end_ns, batch.point_count())]

    async def deliver(self, payload: Payload) -> None:
        stream = sys.stdout if self.config.stream == "stdout" else sys.stderr
        stream.write(payload.body.decode())
        stream.flush()
