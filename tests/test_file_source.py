"""The file source reads the project's Cerebras fixtures with the Cerebras preset."""

from __future__ import annotations

import math

from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import Kind, Temporality
from bridge.sources.file import FileSource
from tests.conftest import CEREBRAS_FIXTURES, T0, run


def read(path: str, clock: ManualClock, **extra: object):
    config = parse_config(
        {"sources": {"f": {"type": "file", "path": path, **extra}}, "sinks": {"c": {"type": "console"}}}
    )
    source = FileSource("f", config.sources["f"], Context(clock=clock))

    async def go():
        await source.start()
        batch = await source.collect(clock.now())
        return batch, source.next_due(clock.now())

    return run(go())


def test_cerebras_fixtures_with_the_preset(clock: ManualClock) -> None:
    batch, due = read(str(CEREBRAS_FIXTURES / "two-endpoints-mixed-labels.prom"), clock, preset="cerebras")
    assert due is None, "once: the source is exhausted after one read"
    metrics = {m.name: m for m in batch.metrics}
    failures = metrics["requests_failure_total"]
    assert (failures.kind, failures.temporality) == (Kind.COUNTER, Temporality.DELTA)
    codes = {dict(p.attributes).get("http_code"): p.value for p in failures.points}
    assert codes == {"429": 17.0, "502": 4.0, "504": 1.0, None: 0.0}
    statistics = {
        dict(p.attributes)["statistic"] for m in ("queue_time_seconds", "ttft_seconds") for p in metrics[m].points
    }
    assert statistics == {"avg", "p50", "p90", "p95", "p99"}
    assert batch.window_end_ns == int(T0 * 1e9), "windowed: the last complete minute"


def test_idle_and_down_fixture(clock: ManualClock) -> None:
    batch, _ = read(str(CEREBRAS_FIXTURES / "idle-down-unknown.prom"), clock, preset="cerebras")
    metrics = {m.name: m for m in batch.metrics}
    assert all(math.isnan(p.value) for p in metrics["ttft_seconds"].points)
    assert "e2e_latency_seconds" not in metrics
    status = {dict(p.attributes)["endpoint"]: p.value for p in metrics["inference_endpoint_status"].points}
    assert status == {"northwind-phi-4-mini": 1.0, "northwind-deepseek-r1-70b": 0.0, "northwind-gemma-3-27b": -1.0}


def test_unreadable_file_is_an_outcome_not_a_crash(clock: ManualClock, tmp_path) -> None:
    batch, _ = read(str(tmp_path / "missing.prom"), clock)
    assert batch is None
