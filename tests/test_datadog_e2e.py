"""A simulated hour: simulator -> cerebras source -> pipeline -> datadog sink -> intake.

Datadog's counts must add up to exactly what the simulator served: requests,
successes, tokens and failures by http_code, per endpoint, even though the
intake refuses some requests along the way (the retries re-send the same
points, which the intake's last-value-per-timestamp storage must not count twice).
Every gauge (each latency statistic, cache_rate, endpoint status) must arrive
with exactly the value served, and an idle endpoint's NaN not at all.
"""

from __future__ import annotations

from collections import Counter

from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.pipeline import Pipeline
from bridge.simulator import CerebrasSimulator
from tests.conftest import T0, run
from tests.datadog_support import API_KEY
from tests.receivers.datadog_intake import SERIES_PATH, DatadogIntake
from tests.simulated_gauges import GaugeKey, assert_same_gauges, expected_gauges

SEED = 11
ORG = "org_e2e"
WINDOWS = 60
#: Small clock steps let each retry run before the next minute's scrape, as it would in real time.
STEPS_PER_MINUTE = 6


def expected_totals(window_starts: list[float]) -> Counter[tuple[str, str, str]]:
    """(Datadog metric, endpoint, http_code or "") -> the simulator's sum over the windows."""
    simulator = CerebrasSimulator(organization_id=ORG, seed=SEED)  # never started: only its numbers
    return Counter(
        {
            ("cerebras." + family.removesuffix("_total"), endpoint, code): value
            for (family, endpoint, code), value in simulator.count_totals(window_starts).items()
        }
    )


def received_totals(intake: DatadogIntake) -> Counter[tuple[str, str, str]]:
    totals: Counter[tuple[str, str, str]] = Counter()
    for point in intake.points():
        if point.type == 1 and point.value:
            totals[point.metric, point.tag("endpoint") or "", point.tag("http_code") or ""] += int(point.value)
    return totals


def received_gauges(intake: DatadogIntake) -> dict[GaugeKey, float]:
    return {
        (
            point.timestamp,
            point.metric.removeprefix("cerebras."),
            point.tag("endpoint") or "",
            point.tag("statistic") or "",
        ): point.value
        for point in intake.points()
        if point.type == 3
    }


def test_a_simulated_hour_adds_up_exactly() -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        with DatadogIntake({API_KEY}, clock=clock) as intake:
            config = parse_config(
                {
                    "sources": {"sim": {"type": "simulator", "organization_id": ORG, "seed": SEED}},
                    "sinks": {"dd": {"type": "datadog", "url": intake.url, "api_key": API_KEY}},
                }
            )
            pipeline = Pipeline(config, Context(clock=clock))
            await pipeline.start()
            try:
                for step in range(WINDOWS * STEPS_PER_MINUTE):
                    if step == 20 * STEPS_PER_MINUTE:
                        intake.fail_next(503, retry_after=20)
                    if step == 40 * STEPS_PER_MINUTE:
                        intake.fail_next(429, count=2, retry_after=5)
                        intake.fail_next(413, path=SERIES_PATH)
                    if step == 50 * STEPS_PER_MINUTE:  # split; first half stored, second refused: all re-sent
                        intake.fail_next(413, path=SERIES_PATH)
                        intake.fail_next(503, path=SERIES_PATH, after=1, retry_after=10)
                    await clock.advance(60 / STEPS_PER_MINUTE)
                    await pipeline.settle()
            finally:
                await pipeline.stop()

            window_starts = sorted({p.timestamp for p in intake.points("cerebras.requests_count")})
            assert window_starts == [T0 - 60 + 60 * k for k in range(WINDOWS)]
            expected = expected_totals([float(t) for t in window_starts])
            assert received_totals(intake) == +expected
            served = expected_gauges(CerebrasSimulator(organization_id=ORG, seed=SEED), window_starts)
            assert_same_gauges(received_gauges(intake), served, nan_sent=False)  # NaN is never sent to Datadog
            assert sum(v for (m, _, _), v in expected.items() if m == "cerebras.requests_count") > 50_000
            statuses = Counter(r.status for r in intake.requests)
            assert (statuses[503], statuses[429], statuses[413]) == (2, 2, 2)
            assert intake.out_of_range == 0
            assert len(intake.checks) == WINDOWS * 3
            assert {c["status"] for c in intake.checks} == {0}

    run(go())
