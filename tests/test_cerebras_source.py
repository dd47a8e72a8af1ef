"""The cerebras source against the simulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import math

import pytest

from bridge import telemetry
from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import NS_PER_S, Batch, Kind, Temporality
from bridge.simulator import CerebrasSimulator
from bridge.sources.cerebras import CerebrasSource
from tests.conftest import T0, run


def make_source(
    sim: CerebrasSimulator, clock: ManualClock, name: str = "cb", context: Context | None = None, **extra: object
) -> CerebrasSource:
    config = parse_config(
        {
            "sources": {
                name: {
                    "type": "cerebras",
                    "organization_id": sim.organization_id,
                    "api_key": "test-key-123",
                    "base_url": sim.url.rsplit("/", 1)[0],
                    **extra,
                }
            },
            "sinks": {"out": {"type": "console"}},
        }
    )
    return CerebrasSource(name, config.sources[name], context or Context(clock=clock))


async def collect_at(source: CerebrasSource, clock: ManualClock, when: float) -> Batch | None:
    await clock.set(when)
    return await source.collect(clock.now())


def by_name(batch: Batch) -> dict[str, object]:
    return {m.name: m for m in batch.metrics}


def sample_value(gauge: telemetry.Counter, *labels: str) -> float:
    return gauge.labels(*labels)._value.get()


def test_families_get_their_meaning(simulator: CerebrasSimulator, clock: ManualClock) -> None:
    async def go() -> Batch | None:
        source = make_source(simulator, clock)
        await source.start()
        try:
            return await collect_at(source, clock, T0 + 65)
        finally:
            await source.close()

    batch = run(go())
    assert batch is not None
    assert (batch.window_start_ns, batch.window_end_ns) == (int(T0 * NS_PER_S), int((T0 + 60) * NS_PER_S))
    assert ("cerebras.organization_id", "org_test") in batch.resource
    metrics = by_name(batch)
    for name, unit in [
        ("requests_count_total", "{request}"),
        ("requests_success_total", "{request}"),
        ("requests_failure_total", "{request}"),
        ("input_tokens_total", "{token}"),
        ("output_tokens_total", "{token}"),
    ]:
        metric = metrics[name]
        assert (metric.kind, metric.temporality, metric.unit) == (Kind.COUNTER, Temporality.DELTA, unit)
    for name in ("queue_time_seconds", "e2e_latency_seconds", "ttft_seconds", "tpot_seconds"):
        metric = metrics[name]
        assert (metric.kind, metric.unit) == (Kind.GAUGE, "s")
        assert {dict(p.attributes)["statistic"] for p in metric.points} == {"avg", "p50", "p90", "p95", "p99"}
    assert (metrics["inference_endpoint_status"].kind, metrics["inference_endpoint_status"].unit) == (Kind.GAUGE, "")
    assert (metrics["cache_rate"].kind, metrics["cache_rate"].unit) == (Kind.GAUGE, "1")
    for _metric, point in batch.iter_points():
        assert (point.start_ns, point.end_ns) == (batch.window_start_ns, batch.window_end_ns)
        assert "organization_id" not in dict(point.attributes), "the org id lives on the resource only"
    expected = simulator.window_values(T0)
    llama = expected.endpoints["acme-llama-3.3-70b"]
    values = {dict(p.attributes)["endpoint"]: p.value for p in metrics["requests_count_total"].points}
    assert values["acme-llama-3.3-70b"] == llama.requests
    idle = [p for p in metrics["ttft_seconds"].points if dict(p.attributes)["endpoint"] == "acme-idle-8b"]
    assert idle and all(math.isnan(p.value) for p in idle)


def test_percentile_label_is_normalised_to_statistic(clock: ManualClock) -> None:
    with CerebrasSimulator(
        organization_id="org_test", api_key="test-key-123", clock=clock, statistic_label="percentile"
    ) as sim:

        async def go() -> Batch | None:
            source = make_source(sim, clock)
            await source.start()
            try:
                return await collect_at(source, clock, T0 + 65)
            finally:
                await source.close()

        batch = run(go())
    ttft = by_name(batch)["ttft_seconds"]
    keys = {k for p in ttft.points for k, _ in p.attributes}
    assert keys == {"endpoint", "statistic"}


def test_a_window_is_forwarded_once(simulator: CerebrasSimulator, clock: ManualClock) -> None:
    async def go() -> list[Batch | None]:
        source = make_source(simulator, clock)
        await source.start()
        try:
            return [await collect_at(source, clock, t) for t in (T0 + 65, T0 + 80, T0 + 119, T0 + 125)]
        finally:
            await source.close()

    first, again, still_same, next_window = run(go())
    assert first is not None and next_window is not None
    assert again is None and still_same is None
    assert next_window.window_start_ns == first.window_end_ns


def test_two_sources_for_one_org_share_the_budget_and_the_window(
    simulator: CerebrasSimulator, clock: ManualClock
) -> None:
    context = Context(clock=clock)

    async def go() -> tuple[int, int]:
        a = make_source(simulator, clock, "a", context)
        b = make_source(simulator, clock, "b", context)
        await a.start()
        await b.start()
        forwarded = 0
        try:
            await clock.set(T0 + 65)
            for _ in range(10):  # both sources hammer the same minute
                for source in (a, b):
                    forwarded += (await source.collect(clock.now())) is not None
                await clock.advance(1)
        finally:
            await a.close()
            await b.close()
        return forwarded, len(simulator.requests_received)

    forwarded, requests = run(go())
    assert forwarded == 1
    assert requests == 6, "6 requests per minute per organization, shared"
    assert all(status == 200 for _, status in simulator.requests_received)


def test_auth_failures_are_logged_once_and_retried_next_minute(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    with CerebrasSimulator(organization_id="org_test", api_key="the-right-key", clock=clock) as sim:

        async def go() -> list[float]:
            source = make_source(sim, clock)  # sends test-key-123: wrong
            await source.start()
            dues = []
            try:
                await clock.set(T0 + 65)
                for _ in range(3):
                    assert await source.collect(clock.now()) is None
                    dues.append(source.next_due(clock.now()))
                    await clock.set(dues[-1])
            finally:
                await source.close()
            return dues

        with caplog.at_level(logging.WARNING):
            dues = run(go())
    assert dues == [T0 + 125, T0 + 185, T0 + 245]
    rejected = [r for r in caplog.records if "API key was rejected (401)" in r.getMessage()]
    assert len(rejected) == 1
    assert "test-key-123" not in caplog.text


@pytest.mark.parametrize("status", [403, 404])
def test_not_enabled_is_explained(
    simulator: CerebrasSimulator, clock: ManualClock, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.fail_next(status)

    async def go() -> float:
        source = make_source(simulator, clock)
        await source.start()
        try:
            assert await collect_at(source, clock, T0 + 65) is None
            return source.next_due(clock.now())
        finally:
            await source.close()

    with caplog.at_level(logging.WARNING):
        due = run(go())
    assert due == T0 + 125
    assert "may not be enabled for this organization" in caplog.text


def test_429_honours_retry_after(simulator: CerebrasSimulator, clock: ManualClock) -> None:
    simulator.fail_next(429, retry_after=90)

    async def go() -> float:
        source = make_source(simulator, clock)
        await source.start()
        try:
            assert await collect_at(source, clock, T0 + 65) is None
            return source.next_due(clock.now())
        finally:
            await source.close()

    assert run(go()) == T0 + 65 + 90


def test_the_request_budget_frees_each_slot_exactly_one_minute_after_it_was_used() -> None:
    """6 per rolling minute, retries included: the 7th request waits for the first to age out, to the second."""
    context = Context(clock=ManualClock(T0))
    budget = context.budget("cerebras:org_x", 6)
    assert context.budget("cerebras:org_x", 6) is budget, "one budget per organization"
    assert all(budget.try_acquire(T0 + t) for t in (0, 1, 2, 10, 20, 30))
    assert not budget.try_acquire(T0 + 59.5)
    assert budget.next_free(T0 + 40) == T0 + 60
    assert budget.try_acquire(T0 + 60), "the slot used at T0 is free again at T0 + 60 exactly"
    assert budget.next_free(T0 + 60.5) == T0 + 61
    budget.close_until(T0 + 100)  # a 429 with Retry-After
    budget.close_until(T0 + 80)  # a shorter Retry-After later does not reopen it early
    assert budget.next_free(T0 + 70) == T0 + 100 and not budget.try_acquire(T0 + 99.9)
    assert budget.try_acquire(T0 + 100)


def test_a_429_closes_the_budget_for_every_source_of_the_organization(
    simulator: CerebrasSimulator, clock: ManualClock
) -> None:
    """The API's limit is per organization: after one source's 429, no source of that org asks until Retry-After."""
    simulator.fail_next(429, retry_after=30)
    context = Context(clock=clock)
    held_back_before = sample_value(telemetry.SCRAPES, "b429", "rate_limited_locally")

    async def go() -> tuple[int, float, Batch | None]:
        a = make_source(simulator, clock, "a429", context)
        b = make_source(simulator, clock, "b429", context)
        await a.start()
        await b.start()
        try:
            assert await collect_at(a, clock, T0 + 65) is None  # 429, Retry-After: 30
            assert await collect_at(b, clock, T0 + 66) is None  # held back locally: nothing sent
            requests_while_closed = len(simulator.requests_received)
            b_retry = b.next_due(clock.now())
            return requests_while_closed, b_retry, await collect_at(b, clock, b_retry)
        finally:
            await a.close()
            await b.close()

    requests_while_closed, b_retry, b_batch = run(go())
    assert requests_while_closed == 1, "the second source must not spend a request while the budget is closed"
    assert sample_value(telemetry.SCRAPES, "b429", "rate_limited_locally") - held_back_before == 1
    assert b_retry == T0 + 95, "it asks again when Retry-After has passed, still inside the minute"
    assert b_batch is not None and b_batch.window_end_ns == int((T0 + 60) * NS_PER_S)
    assert [status for _, status in simulator.requests_received] == [429, 200]


def test_5xx_gets_one_retry_then_the_window_is_a_gap(simulator: CerebrasSimulator, clock: ManualClock) -> None:
    simulator.fail_next(503, count=2)
    gaps_before = sample_value(telemetry.GAPS, "flaky")

    async def go() -> tuple[list[float], Batch | None]:
        source = make_source(simulator, clock, "flaky")
        await source.start()
        try:
            assert await collect_at(source, clock, T0 + 65) is None
            retry = source.next_due(clock.now())
            assert await collect_at(source, clock, retry) is None
            after = source.next_due(clock.now())
            return [retry, after], await collect_at(source, clock, after)
        finally:
            await source.close()

    (retry, after), batch = run(go())
    assert retry == T0 + 75
    assert after == T0 + 125
    assert batch is not None and batch.window_start_ns == int((T0 + 60) * NS_PER_S)
    assert sample_value(telemetry.GAPS, "flaky") - gaps_before == 1


def test_missed_minutes_are_counted_as_gaps(simulator: CerebrasSimulator, clock: ManualClock) -> None:
    before = sample_value(telemetry.GAPS, "sleepy")

    async def go() -> None:
        source = make_source(simulator, clock, "sleepy")
        await source.start()
        try:
            assert await collect_at(source, clock, T0 + 65) is not None
            assert await collect_at(source, clock, T0 + 245) is not None  # two minutes never scraped
        finally:
            await source.close()

    run(go())
    assert sample_value(telemetry.GAPS, "sleepy") - before == 2


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge.config import ConfigError

    monkeypatch.delenv("CEREBRAS_API_KEY", raising=False)
    with pytest.raises(ConfigError) as error:
        parse_config(
            {"sources": {"cb": {"type": "cerebras", "organization_id": "org_x"}}, "sinks": {"out": {"type": "console"}}}
        )
    assert "sources.cb" in str(error.value) and "CEREBRAS_API_KEY" in str(error.value)


def test_key_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEREBRAS_API_KEY", "env-key-456")
    config = parse_config(
        {"sources": {"cb": {"type": "cerebras", "organization_id": "org_x"}}, "sinks": {"out": {"type": "console"}}}
    )
    assert config.sources["cb"].api_key.get_secret_value() == "env-key-456"
    assert "env-key-456" not in repr(config.sources["cb"])
