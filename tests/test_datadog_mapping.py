"""The README's table of Cerebras families in Datadog (read from README.md), pinned against what the intake receives.

The batch comes from the real `cerebras` source scraping the simulator over
HTTP, so the table holds for what the bridge actually produces.
"""

from __future__ import annotations

from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.presets.cerebras import FAMILIES
from bridge.simulator import CerebrasSimulator
from bridge.sources.cerebras import CerebrasSource
from tests.conftest import T0, run
from tests.datadog_support import wired
from tests.readme_tables import table_under

#: README.md's section on the Datadog names; every series also carries `bridge.source` and `cerebras.organization_id`.
README_SECTION = "The Cerebras families in Datadog"
SERVICE_CHECK = "cerebras.inference_endpoint.status"
RESOURCE_TAG_KEYS = {"bridge.source", "cerebras.organization_id"}
TYPES = {1: "count", 3: "gauge"}


def table_rows() -> dict[str, tuple[str, str, str, str, str]]:
    """Cerebras family -> (Datadog metric, type, interval, unit, tags), as README.md prints them."""
    return {
        row["Cerebras family"]: (row["Datadog metric"], row["type"], row["interval"], row["unit"], row["tags"])
        for row in table_under(README_SECTION)
    }


def test_the_table_covers_every_family_the_cerebras_preset_knows() -> None:
    assert set(table_rows()) == set(FAMILIES)
    assert len(table_under(README_SECTION)) == len(FAMILIES), "one row per family"


def test_every_cerebras_family_arrives_as_the_readme_says(simulator: CerebrasSimulator, clock: ManualClock) -> None:
    async def go() -> None:
        config = parse_config(
            {
                "sources": {
                    "cb": {
                        "type": "cerebras",
                        "organization_id": simulator.organization_id,
                        "api_key": "test-key-123",
                        "base_url": simulator.url.rsplit("/", 1)[0],
                    }
                },
                "sinks": {"dd": {"type": "datadog", "url": "http://unused", "api_key": "unused-key"}},
            }
        )
        source = CerebrasSource("cb", config.sources["cb"], Context(clock=clock))
        await source.start()
        try:
            await clock.set(T0 + 65)
            batch = await source.collect(clock.now())
        finally:
            await source.close()
        assert batch is not None
        async with wired(clock) as w:
            await w.send(batch)
            seen: dict[str, tuple[str, str, str]] = {}
            tag_keys: dict[str, set[str]] = {}
            for point in w.intake.points():
                interval = "" if point.interval is None else str(point.interval)
                seen[point.metric] = (TYPES[point.type], interval, point.unit or "")
                tag_keys.setdefault(point.metric, set()).update(t.split(":", 1)[0] for t in point.tags)
                assert {t.split(":", 1)[0] for t in point.tags} >= RESOURCE_TAG_KEYS
                assert point.timestamp == int(T0)
            expected = {metric: (kind, interval, unit) for metric, kind, interval, unit, _ in table_rows().values()}
            assert seen == expected
            for metric, _, _, _, tags in table_rows().values():
                assert tag_keys[metric] - RESOURCE_TAG_KEYS == set(tags.split(", ")), metric
            assert {c["check"] for c in w.intake.checks} == {SERVICE_CHECK}
            assert {c["tags"][0] for c in w.intake.checks} == {f"endpoint:{e.name}" for e in simulator.endpoints}

    run(go())
