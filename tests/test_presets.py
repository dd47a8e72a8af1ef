"""A preset is data: the live `cerebras` source and a replay of its saved scrape send the same bytes.

No sink recognises Cerebras by its metric names any more: the namespace and the
service check travel as hints on the batch and the metric, so a `file` source
with `preset: cerebras` must produce exactly what the live source produces.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import Batch, Kind, Temporality
from bridge.simulator import CerebrasSimulator
from bridge.sources.cerebras import CerebrasSource
from bridge.sources.file import FileSource
from tests.conftest import T0, run
from tests.servers import ExpositionServer, Response

SINKS = {
    "datadog": {"type": "datadog", "api_key": "dd-preset-test-key", "site": "datadoghq.com"},
    "otlp": {"type": "otlp", "endpoint": "http://127.0.0.1:1", "protocol": "http/protobuf"},
}


def _sources(config: dict[str, Any]) -> Any:
    return parse_config({"sources": config, "sinks": SINKS})


def _saved_scrape(simulator: CerebrasSimulator, path: Path) -> None:
    """What the API answered, saved as a user would save it (curl -o)."""
    response = httpx.get(simulator.url, headers={"Authorization": "Bearer test-key-123"})
    response.raise_for_status()
    path.write_bytes(response.content)


def _payload_bodies(batch: Batch, clock: ManualClock) -> dict[str, list[bytes]]:
    from bridge import registry

    config = parse_config({"sources": {"x": {"type": "file", "path": "x"}}, "sinks": SINKS})
    bodies = {}
    for name, sink_config in config.sinks.items():
        sink = registry.sinks.get(sink_config.type)(name, sink_config, Context(clock=clock))
        bodies[name] = [payload.body for payload in sink.prepare(batch)]
    return bodies


def test_a_replayed_scrape_sends_what_the_live_source_sends(
    simulator: CerebrasSimulator, clock: ManualClock, tmp_path: Path
) -> None:
    saved = tmp_path / "scrape.prom"
    at = T0 + 65

    async def live() -> Batch | None:
        config = _sources(
            {
                "cerebras": {
                    "type": "cerebras",
                    "organization_id": simulator.organization_id,
                    "api_key": "test-key-123",
                    "base_url": simulator.url.rsplit("/", 1)[0],
                }
            }
        )
        source = CerebrasSource("cerebras", config.sources["cerebras"], Context(clock=clock))
        await source.start()
        try:
            await clock.set(at)
            _saved_scrape(simulator, saved)  # the same minute the live source reads
            return await source.collect(clock.now())
        finally:
            await source.close()

    async def replay() -> Batch | None:
        config = _sources({"cerebras": {"type": "file", "path": str(saved), "preset": "cerebras"}})
        source = FileSource("cerebras", config.sources["cerebras"], Context(clock=clock))
        await source.start()
        return await source.collect(clock.now())

    live_batch = run(live())
    replayed = run(replay())
    assert live_batch is not None and replayed is not None
    assert live_batch.namespace == "cerebras"
    assert ("cerebras.organization_id", simulator.organization_id) in live_batch.resource
    assert not any(key == "organization_id" for _, p in live_batch.iter_points() for key, _ in p.attributes)
    assert repr(replayed) == repr(live_batch)  # repr: NaN (an idle endpoint) never equals itself
    assert _payload_bodies(replayed, clock) == _payload_bodies(live_batch, clock)


CEREBRAS_SHAPED = """\
# HELP requests_count_total Requests in the last complete minute.
# TYPE requests_count_total gauge
requests_count_total{endpoint="llama",organization_id="org_new"} 40
# HELP cache_hit_tokens_total Input tokens served from the prompt cache in the last complete minute.
# TYPE cache_hit_tokens_total gauge
cache_hit_tokens_total{endpoint="llama",organization_id="org_new"} 1200
# TYPE decode_speed gauge
decode_speed{endpoint="llama",organization_id="org_new"} 950
"""


def test_an_unknown_total_family_is_a_per_minute_count_with_one_warning(
    exposition_server: ExpositionServer, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    exposition_server.respond(Response(200, CEREBRAS_SHAPED))
    config = _sources(
        {
            "cb": {
                "type": "cerebras",
                "organization_id": "org_new",
                "api_key": "k-new-1234",
                "base_url": exposition_server.url.rsplit("/", 1)[0],
            }
        }
    )
    source = CerebrasSource("cb", config.sources["cb"], Context(clock=clock))

    async def two_minutes() -> list[Batch | None]:
        await source.start()
        try:
            batches = []
            for minute in (1, 2):
                await clock.set(T0 + 60 * minute + 5)
                batches.append(await source.collect(clock.now()))
            return batches
        finally:
            await source.close()

    with caplog.at_level(logging.WARNING):
        batches = run(two_minutes())
    assert all(b is not None for b in batches)
    metrics = {m.name: m for m in batches[0].metrics}  # type: ignore[union-attr]
    cache_hits = metrics["cache_hit_tokens_total"]
    assert (cache_hits.kind, cache_hits.temporality) == (Kind.COUNTER, Temporality.DELTA)
    assert [p.value for p in cache_hits.points] == [1200.0]
    assert metrics["decode_speed"].kind is Kind.GAUGE
    warnings = [r.getMessage() for r in caplog.records if "unknown cerebras family" in r.getMessage()]
    assert len(warnings) == 2, warnings  # one per unknown family, not one per scrape
    assert any("'cache_hit_tokens_total'" in w and "delta counter" in w for w in warnings)


def test_a_plain_exporter_gets_no_namespace_and_no_service_check(
    exposition_server: ExpositionServer, clock: ManualClock
) -> None:
    """Only a preset's hint makes a check: an exporter's own `inference_endpoint_status` stays a gauge."""
    exposition_server.respond(Response(200, "# TYPE inference_endpoint_status gauge\ninference_endpoint_status 1\n"))
    config = _sources({"exp": {"type": "prometheus", "url": exposition_server.url}})
    from bridge.sources.prometheus import PrometheusSource

    source = PrometheusSource("exp", config.sources["exp"], Context(clock=clock))

    async def once() -> Batch | None:
        await source.start()
        try:
            return await source.collect(clock.now())
        finally:
            await source.close()

    batch = run(once())
    assert batch is not None and batch.namespace == ""
    assert [m.service_check for m in batch.metrics] == [None]
