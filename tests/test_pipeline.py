"""The whole spine on an injected clock: simulator -> scheduler -> transforms -> sinks, a simulated hour."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path

from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import Batch
from bridge.pipeline import Pipeline
from bridge.simulator import CerebrasSimulator, render_exposition
from bridge.sinks.base import Payload, Sink
from tests.conftest import T0, run
from tests.simulated_gauges import assert_same_gauges, expected_gauges


def hour_config(sim: CerebrasSimulator, out: Path, **sink_extra: object) -> dict:
    return {
        "sources": {
            "cb": {
                "type": "cerebras",
                "organization_id": sim.organization_id,
                "api_key": "test-key-123",
                "base_url": sim.url.rsplit("/", 1)[0],
            }
        },
        "sinks": {"file": {"type": "jsonl", "path": str(out), **sink_extra}},
    }


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def samples_served(simulator: CerebrasSimulator, window_start: float) -> list[str]:
    """The sample lines of the exposition the simulator served for a window."""
    text = render_exposition(simulator.window_values(window_start), simulator.organization_id)
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_a_simulated_hour_forwards_every_window_once(
    simulator: CerebrasSimulator, clock: ManualClock, tmp_path: Path
) -> None:
    out = tmp_path / "points.jsonl"
    config = parse_config(hour_config(simulator, out))

    async def go() -> list[float]:
        pipeline = Pipeline(config, Context(clock=clock))
        await pipeline.start()
        scrape_times = []
        try:
            await pipeline.settle()
            for _ in range(60):
                await clock.advance(60)
                await pipeline.settle()
                scrape_times.append(clock.now())
        finally:
            await pipeline.stop()
        return scrape_times

    run(go())
    points = read_jsonl(out)
    windows = sorted({p["start_ns"] for p in points})
    assert len(windows) == 61
    assert all(b - a == 60 * 10**9 for a, b in itertools.pairwise(windows))
    served = Counter((p["start_ns"], p["name"], tuple(sorted(p["attributes"].items()))) for p in points)
    assert max(served.values()) == 1, "no series is forwarded twice in a window"
    assert len(served) == sum(len(samples_served(simulator, start)) for start in simulator.served_windows)
    # scrapes happen at minute + 5 s, one per minute (the first at start-up)
    assert [t % 60 for t, _ in simulator.requests_received] == [5.0] * 61
    # the sum of counts at the sink equals the simulator's, per endpoint and per http_code
    sums: dict[tuple[str, str, str], float] = defaultdict(float)
    for p in points:
        if p["kind"] == "counter":
            assert p["temporality"] == "delta"
            sums[(p["name"], p["attributes"]["endpoint"], p["attributes"].get("http_code", ""))] += p["value"]
    expected = simulator.count_totals()
    for key, value in expected.items():
        assert sums[key] == value, key
    gauges = {
        (p["start_ns"] // 10**9, p["name"], p["attributes"]["endpoint"], p["attributes"].get("statistic", "")): float(
            p["value"]
        )
        for p in points
        if p["kind"] == "gauge"
    }
    assert_same_gauges(gauges, expected_gauges(simulator, simulator.served_windows), nan_sent=True)


def test_sink_transforms_apply_to_that_sink_only(
    simulator: CerebrasSimulator, clock: ManualClock, tmp_path: Path
) -> None:
    data = hour_config(simulator, tmp_path / "all.jsonl")
    data["transforms"] = [{"type": "labels", "add": {"env": "test"}}]
    data["sinks"]["filtered"] = {
        "type": "jsonl",
        "path": str(tmp_path / "filtered.jsonl"),
        "transforms": [
            {"type": "filter", "keep_names": ["requests_.*"], "drop_points": {"endpoint": ".*idle.*"}},
            {"type": "rename", "prefix": "cerebras_"},
        ],
    }
    config = parse_config(data)

    async def go() -> None:
        pipeline = Pipeline(config, Context(clock=clock))
        await pipeline.start()
        try:
            await pipeline.settle()
        finally:
            await pipeline.stop()

    run(go())
    everything = read_jsonl(tmp_path / "all.jsonl")
    filtered = read_jsonl(tmp_path / "filtered.jsonl")
    assert {p["name"] for p in everything} >= {"ttft_seconds", "requests_count_total"}
    assert {p["name"] for p in filtered} == {
        "cerebras_requests_count_total",
        "cerebras_requests_success_total",
        "cerebras_requests_failure_total",
    }
    assert all("idle" not in p["attributes"]["endpoint"] for p in filtered)
    assert all(p["attributes"]["env"] == "test" for p in everything + filtered)


class FailingSink(Sink):
    def prepare(self, batch: Batch) -> list[Payload]:
        raise RuntimeError("encoder bug")

    async def deliver(self, payload: Payload) -> None:
        raise AssertionError("never reached")


def test_a_failing_sink_never_stops_the_others(
    simulator: CerebrasSimulator, clock: ManualClock, tmp_path: Path
) -> None:
    from bridge import registry

    registry.sinks.register("test_failing")(FailingSink)
    data = hour_config(simulator, tmp_path / "ok.jsonl")
    data["sinks"]["broken"] = {"type": "test_failing"}
    config = parse_config(data)

    async def go() -> None:
        pipeline = Pipeline(config, Context(clock=clock))
        await pipeline.start()
        try:
            for _ in range(3):
                await pipeline.settle()
                await clock.advance(60)
            await pipeline.settle()
        finally:
            await pipeline.stop()

    run(go())
    windows = Counter(p["start_ns"] for p in read_jsonl(tmp_path / "ok.jsonl"))
    assert len(windows) == 4


def test_reload_keeps_unchanged_components(simulator: CerebrasSimulator, clock: ManualClock, tmp_path: Path) -> None:
    first = parse_config(hour_config(simulator, tmp_path / "a.jsonl"))
    second_data = hour_config(simulator, tmp_path / "a.jsonl")
    second_data["sinks"]["more"] = {"type": "jsonl", "path": str(tmp_path / "b.jsonl")}
    second = parse_config(second_data)

    async def go() -> None:
        pipeline = Pipeline(first, Context(clock=clock))
        await pipeline.start()
        try:
            await pipeline.settle()
            kept_source = pipeline.sources["cb"].source
            kept_lane = pipeline.lanes["file"]
            await pipeline.reload(second)
            assert pipeline.sources["cb"].source is kept_source
            assert pipeline.lanes["file"] is kept_lane
            await clock.advance(60)
            await pipeline.settle()
        finally:
            await pipeline.stop()

    run(go())
    assert len({p["start_ns"] for p in read_jsonl(tmp_path / "a.jsonl")}) == 2
    assert len({p["start_ns"] for p in read_jsonl(tmp_path / "b.jsonl")}) == 1


def test_a_finished_file_source_does_not_make_the_bridge_unready(clock: ManualClock, tmp_path: Path) -> None:
    from bridge.health import HealthState
    from tests.conftest import CEREBRAS_FIXTURES

    config = parse_config(
        {
            "sources": {
                "replay": {
                    "type": "file",
                    "path": str(CEREBRAS_FIXTURES / "single-endpoint-all-families.prom"),
                    "preset": "cerebras",
                }
            },
            "sinks": {"file": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}},
        }
    )
    context = Context(clock=clock, health=HealthState(clock))

    async def go() -> tuple[bool, list[str]]:
        pipeline = Pipeline(config, context)
        await pipeline.start()
        try:
            await pipeline.settle()
            await clock.advance(600)  # ten intervals later
            return context.health.ready()
        finally:
            await pipeline.stop()

    assert run(go()) == (True, [])
    assert read_jsonl(tmp_path / "out.jsonl")


def test_a_restart_within_the_minute_does_not_forward_the_window_again(
    simulator: CerebrasSimulator, clock: ManualClock, tmp_path: Path
) -> None:
    from bridge.context import WindowLedger

    out = tmp_path / "points.jsonl"
    data = hour_config(simulator, out)
    data["state_path"] = str(tmp_path / "state.json")
    config = parse_config(data)

    async def one_life(advance: float) -> None:
        pipeline = Pipeline(config, Context(clock=clock, windows=WindowLedger(config.state_path)))
        await pipeline.start()
        try:
            await pipeline.settle()
            await clock.advance(advance)
            await pipeline.settle()
        finally:
            await pipeline.stop()

    run(one_life(20))  # forwards the window that ended at T0
    run(one_life(40))  # restarted at T0+25: same window, not forwarded again; at T0+65 the next one
    assert sorted({p["end_ns"] for p in read_jsonl(out)}) == [int(T0 * 1e9), int((T0 + 60) * 1e9)]
    assert len(read_jsonl(out)) == 2 * len([p for p in read_jsonl(out) if p["end_ns"] == int(T0 * 1e9)])


def test_an_unreadable_state_file_is_a_warning_not_a_crash(tmp_path: Path, caplog) -> None:
    from bridge.context import WindowLedger

    state = tmp_path / "state.json"
    state.write_text("{not json")
    ledger = WindowLedger(str(state))
    assert ledger.last("x") is None
    ledger.record("x", 60.0)
    assert WindowLedger(str(state)).last("x") == 60.0
    assert "unreadable" in caplog.text
