"""`console`: a readable table per window, for people (the demo's sink)."""

from __future__ import annotations

import datetime
import math
import sys
import unicodedata
from typing import Literal

from pydantic import Field

from bridge import registry
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


def render_table(batch: Batch, max_rows: int) -> str:
    rows = [_row(m, p) for m, p in batch.iter_points()]
    shown = rows[:max_rows]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(_COLUMNS)]
    resource = _one_line(" ".join(f"{k}={v}" for k, v in batch.resource if k != "bridge.source"))
    window = f"{_clock(batch.window_start_ns)} → {_clock(batch.window_end_ns)[11:]} UTC"
    lines = [
        f"── {_one_line(batch.source)} · window {window} · {len(rows)} points{' · ' + resource if resource else ''}",
        "  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths, strict=True)).rstrip(),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in shown]
    if len(rows) > len(shown):
        lines.append(f"… {len(rows) - len(shown)} more points")
    return "\n".join(lines) + "\n\n"


@registry.sinks.register("console")
class ConsoleSink(Sink):
    Config = ConsoleSinkConfig

    def prepare(self, batch: Batch) -> list[Payload]:
        text = render_table(batch, self.config.max_rows)
        return [Payload(text.encode(), batch.window_end_ns, batch.point_count())]

    async def deliver(self, payload: Payload) -> None:
        stream = sys.stdout if self.config.stream == "stdout" else sys.stderr
        stream.write(payload.body.decode())
        stream.flush()
