"""`jsonl`: one JSON object per point with its full meaning (kind, temporality, window).

For tests, debugging and piping into other tools. Non-finite values are
written as the strings "NaN", "+Inf", "-Inf" (JSON has no such numbers).
"""

from __future__ import annotations

import json
import math
import sys
from typing import IO, Any

from pydantic import Field

from bridge import registry
from bridge.model import Batch, HistogramValue, SummaryValue, Value
from bridge.schema import SinkConfig
from bridge.sinks.base import Payload, RetryableError, Sink


class JsonlSinkConfig(SinkConfig):
    path: str = Field("-", description="file to append to; `-` is stdout")


def _number(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def encode_value(value: Value) -> Any:
    if isinstance(value, HistogramValue):
        return {
            "count": value.count,
            "sum": _number(value.sum),
            "buckets": [[_number(le), c] for le, c in value.buckets],
        }
    if isinstance(value, SummaryValue):
        return {
            "count": value.count,
            "sum": _number(value.sum),
            "quantiles": [[q, _number(v)] for q, v in value.quantiles],
        }
    return _number(value)


def encode_batch(batch: Batch) -> bytes:
    resource = dict(batch.resource)
    lines = []
    for metric, point in batch.iter_points():
        lines.append(
            json.dumps(
                {
                    "source": batch.source,
                    "resource": resource,
                    "name": metric.name,
                    "kind": metric.kind.value,
                    "temporality": metric.temporality.value if metric.temporality else None,
                    "unit": metric.unit,
                    "attributes": dict(point.attributes),
                    "value": encode_value(point.value),
                    "start_ns": point.start_ns,
                    "end_ns": point.end_ns,
                },
                separators=(",", ":"),
            )
        )
    return ("\n".join(lines) + "\n").encode() if lines else b""


@registry.sinks.register("jsonl")
class JsonlSink(Sink):
    Config = JsonlSinkConfig

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._file: IO[bytes] | None = None

    async def start(self) -> None:
        if self.config.path != "-":
            self._file = open(self.config.path, "ab")  # noqa: ASYNC230, SIM115  # once, at start; held until close()

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def prepare(self, batch: Batch) -> list[Payload]:
        body = encode_batch(batch)
        return [Payload(body, batch.window_end_ns, batch.point_count())] if body else []

    async def deliver(self, payload: Payload) -> None:
        target = self._file if self._file is not None else sys.stdout.buffer
        try:
            target.write(payload.body)
            target.flush()
        except OSError as exc:
            raise RetryableError("write_failed", str(exc.strerror)) from None
