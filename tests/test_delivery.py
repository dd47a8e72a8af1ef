"""The delivery layer on its own: queue caps, backoff, age limit, drain order, spool, shutdown.

A scripted in-process sink stands in for a backend, so every attempt, its
outcome and its simulated time are known exactly. The fault suite
(tests/test_delivery_faults.py) does the same against real receivers.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge import registry, telemetry
from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.delivery import SinkRunner
from bridge.delivery.backoff import retry_delay
from bridge.delivery.pending import Entry
from bridge.delivery.spool import Spool
from bridge.health import HealthState
from bridge.model import NS_PER_S, Batch, Kind, Metric, Point
from bridge.pipeline import Pipeline
from bridge.schema import DeliveryConfig, SinkConfig
from bridge.sinks.base import (
    DeliveryError,
    Payload,
    PermanentError,
    RetryableError,
    Sink,
)
from tests.conftest import T0, run

MINUTE = 60.0
POINTS_PER_BATCH = 2


class ScriptedSinkConfig(SinkConfig):
    down: bool = False  # every attempt fails with a retryable 503 and Retry-After: 60


@registry.sinks.register("test_scripted")
class ScriptedSink(Sink):
    """A backend in a list: each attempt takes the next scripted error (none left: accepted)."""

    Config = ScriptedSinkConfig
    body_size = 100

    def __init__(
        self, name: str = "scripted", config: ScriptedSinkConfig | None = None, context: Context | None = None
    ) -> None:
        super().__init__(name, config or ScriptedSinkConfig(type="test_scripted"), context or Context())
        self.script: deque[DeliveryError | None] = deque()
        self.attempts: list[tuple[float, int]] = []  # (clock time, window end in minutes since T0)
        self.delivered: list[Payload] = []
        self.hold: asyncio.Event | None = None  # while set to an unset event, attempts hang
        self.sending: list[str] = []  # the sources of the attempts under way
        self.most_at_once = 0
        self.overlapping_one_source = False  # two attempts of one source were ever under way together

    def prepare(self, batch: Batch) -> list[Payload]:
        minute = minutes(batch.window_end_ns)
        body = f"window {minute};".encode().ljust(self.body_size, b".")
        meta = {"window": str(minute), "source": batch.source}
        return [Payload(body, batch.window_end_ns, batch.point_count(), meta)]

    async def deliver(self, payload: Payload) -> None:
        self.attempts.append((self.context.clock.now(), minutes(payload.window_end_ns)))
        source = payload.meta["source"]
        self.overlapping_one_source |= source in self.sending
        self.sending.append(source)
        self.most_at_once = max(self.most_at_once, len(self.sending))
        try:
            await self._answer(payload)
        finally:
            self.sending.remove(source)

    async def _answer(self, payload: Payload) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if self.config.down:
            raise RetryableError("http_503", retry_after=60)
        error = self.script.popleft() if self.script else None
        if error is not None:
            raise error
        self.delivered.append(payload)

    @property
    def delivered_windows(self) -> list[int]:
        return [minutes(p.window_end_ns) for p in self.delivered]


def minutes(window_end_ns: int) -> int:
    return round((window_end_ns / NS_PER_S - T0) / MINUTE)


def batch(minute: int, source: str = "test") -> Batch:
    """The window ending `minute` minutes after T0."""
    end = int((T0 + minute * MINUTE) * NS_PER_S)
    start = end - int(MINUTE * NS_PER_S)
    points = [Point((("n", str(i)),), 1.0, start, end) for i in range(POINTS_PER_BATCH)]
    return Batch(source, (), start, end, [Metric("m", Kind.GAUGE, points)])


def down(retry_after: float | None = None) -> RetryableError:
    return RetryableError("http_503", retry_after=retry_after)


def counter(metric: Any, *labels: str) -> float:
    return metric.labels(*labels)._value.get()


def sample(name: str, sink: str) -> float | None:
    return telemetry.REGISTRY.get_sample_value(name, {"sink": sink})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + 5)


def runner_for(sink: ScriptedSink, clock: ManualClock, **delivery: Any) -> SinkRunner:
    sink.context = Context(clock=clock)
    runner = SinkRunner(sink, DeliveryConfig(**delivery), sink.context)
    runner.rng.seed(1)
    return runner


async def submit_each_minute(runner: SinkRunner, clock: ManualClock, first: int, count: int) -> None:
    """Advance the clock minute by minute, submitting windows first, first + 1, ... as a scrape would."""
    for minute in range(first, first + count):
        await clock.advance(MINUTE)
        runner.submit(batch(minute))
        await runner.settle()


# ---------------------------------------------------------------- backoff
@given(
    failures=st.integers(1, 100_000),
    initial=st.floats(0.01, 10),
    cap=st.floats(0.01, 600),
    retry_after=st.none() | st.floats(0, 3600),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_full_jitter_under_a_capped_exponential_with_a_capped_retry_after_as_a_floor(
    failures: int, initial: float, cap: float, retry_after: float | None, seed: int
) -> None:
    delay = retry_delay(failures, initial, cap, retry_after, random.Random(seed))
    ceiling = min(cap, initial * 2.0 ** min(failures - 1, 62))
    floor = min(retry_after or 0.0, cap)
    assert floor <= delay <= max(ceiling, floor) <= cap


def test_backoff_jitter_spreads_over_the_whole_range() -> None:
    rng = random.Random(3)
    delays = [retry_delay(10, 1.0, 60.0, None, rng) for _ in range(2000)]
    assert min(delays) < 3 and max(delays) > 57  # full jitter: anywhere in [0, 60]
    assert 27 < sum(delays) / len(delays) < 33


# ---------------------------------------------------------------- retries, order, caps, age
def test_a_retryable_failure_backs_off_the_whole_sink_and_honours_retry_after(clock: ManualClock) -> None:
    sink = ScriptedSink()
    sink.script.extend([down(retry_after=30), down(), None])
    runner = runner_for(sink, clock, retry_initial_seconds=1, retry_max_seconds=30)
    retries_before = counter(telemetry.DELIVERY_RETRIES, "scripted")

    async def go() -> None:
        await runner.start()
        runner.submit(batch(0))
        await runner.settle()
        runner.submit(batch(1))  # arrives during the backoff: waits for it, no extra request
        await runner.settle()
        assert len(sink.attempts) == 1
        await clock.advance(29.9)
        await runner.settle()
        assert len(sink.attempts) == 1
        await clock.advance(0.1)
        await runner.settle()  # second failure: backoff in [0, 2] s
        await clock.advance(2)
        await runner.settle()
        await clock.advance(2)
        await runner.settle()
        await runner.stop()

    run(go())
    times = [t - (T0 + 5) for t, _ in sink.attempts]
    assert times[:2] == [0.0, 30.0] and 30.0 <= times[2] <= 32.0
    assert sink.delivered_windows == [1, 0]  # the newest window first once the backend answers
    assert counter(telemetry.DELIVERY_RETRIES, "scripted") - retries_before == 2


@pytest.mark.parametrize("drain_order", ["newest_first", "oldest_first"])
def test_max_in_flight_sends_several_sources_at_once_never_two_of_one_source(
    clock: ManualClock, drain_order: str
) -> None:
    """Thousands of sources, one request per window each: a backend's round trip, not the CPU, would bound a sink
    that sent one at a time. A source's windows still go one at a time, in the drain order."""
    sink = ScriptedSink("parallel")
    sink.hold = asyncio.Event()
    runner = runner_for(sink, clock, max_in_flight=3, drain_order=drain_order)

    async def go() -> None:
        await runner.start()
        for source in ("a", "b", "c", "d"):
            runner.submit(batch(0, source))
        runner.submit(batch(1, "a"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(sink.sending) == 3 and len(set(sink.sending)) == 3  # three at once, all different sources
        assert sample("bridge_queue_batches", "parallel") == 5
        assert sink.hold is not None
        sink.hold.set()
        await runner.settle()
        await runner.stop()

    run(go())
    assert sink.most_at_once == 3 and not sink.overlapping_one_source
    delivered = [(p.meta["source"], minutes(p.window_end_ns)) for p in sink.delivered]
    assert sorted(delivered) == [("a", 0), ("a", 1), ("b", 0), ("c", 0), ("d", 0)]
    a_windows = [window for source, window in delivered if source == "a"]
    assert a_windows == ([1, 0] if drain_order == "newest_first" else [0, 1])


def test_with_max_in_flight_a_backoff_stops_new_sends_and_the_others_finish(clock: ManualClock) -> None:
    sink = ScriptedSink("parallel_backoff")
    sink.script.extend([down(retry_after=30)])  # the first attempt fails, the others succeed
    runner = runner_for(sink, clock, max_in_flight=4, drain_order="oldest_first")

    async def go() -> None:
        await runner.start()
        for source in ("a", "b", "c"):
            runner.submit(batch(0, source))
        await runner.settle()
        assert len(sink.attempts) == 3 and len(sink.delivered) == 2  # all three went at once
        runner.submit(batch(0, "d"))  # during the backoff: waits like the failed one
        await runner.settle()
        assert len(sink.attempts) == 3
        await clock.advance(30)
        await runner.settle()
        await runner.stop()

    run(go())
    assert sorted(p.meta["source"] for p in sink.delivered) == ["a", "b", "c", "d"]
    assert [t - (T0 + 5) for t, _ in sink.attempts] == [0.0, 0.0, 0.0, 30.0, 30.0]


def test_a_permanent_failure_drops_that_payload_only_and_shows_in_readiness(clock: ManualClock) -> None:
    sink = ScriptedSink("permanent")
    sink.script.extend([PermanentError("http_400", "bad metric name")])
    health = HealthState(clock)
    health.expect_sink("permanent")
    sink.context = Context(clock=clock, health=health)
    runner = SinkRunner(sink, DeliveryConfig(), sink.context)
    before = counter(telemetry.DROPPED_POINTS, "permanent", "http_400")

    async def go() -> None:
        await runner.start()
        runner.submit(batch(0))
        await runner.settle()
        assert health.ready() == (False, ["sink permanent: failing permanently: http_400"])
        runner.submit(batch(1))
        await runner.settle()
        assert health.ready() == (True, [])
        await runner.stop()

    run(go())
    assert sink.delivered_windows == [1]
    assert counter(telemetry.DROPPED_POINTS, "permanent", "http_400") - before == POINTS_PER_BATCH


@pytest.mark.parametrize("drain_order", ["newest_first", "oldest_first"])
def test_after_an_outage_live_data_goes_first_then_the_backlog(clock: ManualClock, drain_order: str) -> None:
    sink = ScriptedSink(f"drain-{drain_order}")
    sink.script.extend([down(retry_after=300)])
    runner = runner_for(sink, clock, drain_order=drain_order, retry_max_seconds=300)

    async def release(count: int) -> None:
        """Let the held attempts through one at a time until `count` payloads are delivered."""
        while len(sink.delivered) < count:
            hold, sink.hold = sink.hold, asyncio.Event()
            assert hold is not None
            hold.set()
            await asyncio.sleep(0.01)

    async def go() -> None:
        await runner.start()
        runner.submit(batch(0))  # fails: the backend is down for 5 minutes
        await runner.settle()
        for minute in range(1, 6):
            await clock.advance(59)
            runner.submit(batch(minute))
            await runner.settle()
        sink.hold = asyncio.Event()
        await clock.advance(MINUTE)  # the backend is back: the worker starts on the backlog
        await release(3)
        runner.submit(batch(6))  # live data arrives during the backfill
        await release(7)
        await runner.stop()

    run(go())
    if drain_order == "newest_first":
        assert sink.delivered_windows == [5, 4, 3, 2, 6, 1, 0]  # 2 was already in flight when 6 arrived
    else:
        assert sink.delivered_windows == [0, 1, 2, 3, 4, 5, 6]


def test_a_full_queue_evicts_the_oldest_window_and_counts_it(clock: ManualClock) -> None:
    sink = ScriptedSink("capped", ScriptedSinkConfig(type="test_scripted", down=True))
    runner = runner_for(sink, clock, max_batches=3)
    evicted = counter(telemetry.DELIVERY_EVICTIONS, "capped", "queue_full")
    dropped = counter(telemetry.DROPPED_POINTS, "capped", "queue_full")

    async def go() -> None:
        await runner.start()
        for minute in range(6):
            runner.submit(batch(minute))
        await runner.settle()
        assert sample("bridge_queue_batches", "capped") == 3
        sink.config.down = False
        await clock.advance(MINUTE)
        await runner.settle()
        await runner.stop()

    run(go())
    assert sorted(sink.delivered_windows) == [3, 4, 5]
    assert counter(telemetry.DELIVERY_EVICTIONS, "capped", "queue_full") - evicted == 3
    assert counter(telemetry.DROPPED_POINTS, "capped", "queue_full") - dropped == 3 * POINTS_PER_BATCH


def test_by_default_a_minute_of_thousands_of_sources_fits_the_queue(clock: ManualClock) -> None:
    """One payload per source window, all arriving in the same second: 5,000 sources' minute is no reason to evict.

    (With the old default of 1,000 payloads, bench_cycle's 2,000 sources lost 717 windows of a healthy sink.)"""
    sink = ScriptedSink("burst", ScriptedSinkConfig(type="test_scripted"))
    runner = runner_for(sink, clock)
    evicted = counter(telemetry.DELIVERY_EVICTIONS, "burst", "queue_full")

    async def go() -> None:
        await runner.start()
        for _ in range(5000):  # before the worker gets a turn, as a burst of scrapes finishing together
            runner.submit(batch(0))
        await runner.settle()
        await runner.stop()

    run(go())
    assert len(sink.delivered_windows) == 5000
    assert counter(telemetry.DELIVERY_EVICTIONS, "burst", "queue_full") == evicted


def test_the_queue_is_capped_by_bytes_too(clock: ManualClock) -> None:
    sink = ScriptedSink("bytes", ScriptedSinkConfig(type="test_scripted", down=True))
    sink.body_size = 1000
    runner = runner_for(sink, clock, max_bytes=2500)
    evicted = counter(telemetry.DELIVERY_EVICTIONS, "bytes", "queue_full")

    async def go() -> None:
        await runner.start()
        for minute in range(4):
            runner.submit(batch(minute))
        await runner.settle()
        assert sample("bridge_queue_bytes", "bytes") == 2000
        sink.body_size = 3000  # one payload larger than the whole queue: dropped alone
        runner.submit(batch(4))
        assert sample("bridge_queue_bytes", "bytes") == 2000
        await runner.stop(grace=0)

    run(go())
    assert counter(telemetry.DELIVERY_EVICTIONS, "bytes", "queue_full") - evicted == 2
    assert counter(telemetry.DELIVERY_EVICTIONS, "bytes", "larger_than_queue") == 1


class HourLimitedSink(ScriptedSink):
    default_max_age_seconds = 3600.0


@pytest.mark.parametrize("configured_age", [None, 600.0])
def test_payloads_past_the_age_limit_are_dropped_and_counted(clock: ManualClock, configured_age: float | None) -> None:
    name = f"aged-{configured_age}"
    sink = HourLimitedSink(name, ScriptedSinkConfig(type="test_scripted", down=True))
    runner = runner_for(sink, clock, max_age_seconds=configured_age)
    limit = configured_age or 3600.0

    async def go() -> float | None:
        await runner.start()
        runner.submit(batch(0))
        await submit_each_minute(runner, clock, 1, 90)  # the backend stays down for 90 minutes
        age = sample("bridge_delivery_oldest_age_seconds", name)
        await runner.stop(grace=0)
        return age

    oldest_age = run(go())
    now = T0 + 5 + 90 * MINUTE
    kept = [m for m in range(91) if T0 + m * MINUTE >= now - limit]
    assert counter(telemetry.DELIVERY_EVICTIONS, name, "too_old") == 91 - len(kept)
    assert oldest_age == now - (T0 + kept[0] * MINUTE)


def test_submit_never_waits_on_a_hung_backend(clock: ManualClock) -> None:
    sink = ScriptedSink("hung")
    sink.hold = asyncio.Event()
    runner = runner_for(sink, clock)

    async def go() -> float:
        await runner.start()
        runner.submit(batch(0))
        await asyncio.sleep(0.01)  # the worker is now stuck in deliver()
        started = time.perf_counter()
        for minute in range(1, 200):
            runner.submit(batch(minute))
        elapsed = time.perf_counter() - started
        sink.hold.set()
        await runner.settle()
        await runner.stop()
        return elapsed

    assert run(go()) < 0.5
    assert len(sink.delivered) == 200


# ---------------------------------------------------------------- shutdown
def test_stop_flushes_within_the_grace_period() -> None:
    sink = ScriptedSink("flush")
    runner = SinkRunner(sink, DeliveryConfig(), sink.context)

    async def go() -> None:
        await runner.start()
        for minute in range(5):
            runner.submit(batch(minute))
        await runner.stop(grace=5)

    run(go())
    assert len(sink.delivered) == 5


def test_without_a_spool_what_is_left_at_shutdown_is_dropped_and_counted(clock: ManualClock) -> None:
    sink = ScriptedSink("no-spool", ScriptedSinkConfig(type="test_scripted", down=True))
    runner = runner_for(sink, clock)

    async def go() -> float:
        await runner.start()
        for minute in range(3):
            runner.submit(batch(minute))
        await runner.settle()
        started = time.perf_counter()
        await runner.stop(grace=30)  # Retry-After 60 s: no attempt can happen within the grace period
        return time.perf_counter() - started

    assert run(go()) < 1
    assert counter(telemetry.DELIVERY_EVICTIONS, "no-spool", "shutdown") == 3


# ---------------------------------------------------------------- spool
def spool_rows(path: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT window_end_ns, body FROM payloads ORDER BY id").fetchall()


def test_the_spool_keeps_unacknowledged_payloads_until_a_restart_sends_exactly_them(
    clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "spool" / "scripted.db"
    first = ScriptedSink("spooled", ScriptedSinkConfig(type="test_scripted", down=True))
    recovered_before = counter(telemetry.DELIVERY_RECOVERED, "spooled")

    async def before_restart() -> None:
        runner = runner_for(first, clock, spool_path=str(path))
        await runner.start()
        for minute in range(4):
            runner.submit(batch(minute))
        await runner.settle()
        first.config.down = False
        first.hold = asyncio.Event()
        await clock.advance(MINUTE)  # window 3 is now being delivered: in flight when the process stops
        await asyncio.sleep(0.01)
        assert sample("bridge_delivery_spool_bytes", "spooled") > 0
        await runner.stop(grace=0.05)

    run(before_restart())
    assert first.delivered == []
    assert [minutes(end) for end, _ in spool_rows(path)] == [0, 1, 2, 3]

    second = ScriptedSink("spooled")

    async def after_restart() -> None:
        runner = runner_for(second, clock, spool_path=str(path))
        await runner.start()
        await runner.settle()
        await runner.stop()

    run(after_restart())
    assert second.delivered_windows == [3, 2, 1, 0]
    expected = {minute: first.prepare(batch(minute))[0] for minute in range(4)}
    assert all(p.body == expected[minutes(p.window_end_ns)].body for p in second.delivered)
    assert all(p.meta == {"window": str(minutes(p.window_end_ns)), "source": "test"} for p in second.delivered)
    assert spool_rows(path) == []
    assert counter(telemetry.DELIVERY_RECOVERED, "spooled") - recovered_before == 4


def test_with_max_in_flight_a_stop_keeps_every_attempt_under_way_in_the_spool(
    clock: ManualClock, tmp_path: Path
) -> None:
    """Three requests under way when the process stops: none acknowledged, all three still spooled, sent once after."""
    path = tmp_path / "spool" / "parallel.db"
    first = ScriptedSink("parallel_spooled")
    first.hold = asyncio.Event()

    async def before_restart() -> None:
        runner = runner_for(first, clock, spool_path=str(path), max_in_flight=3)
        await runner.start()
        for source in ("a", "b", "c", "d"):
            runner.submit(batch(0, source))
        await asyncio.sleep(0.05)
        assert len(first.sending) == 3
        await runner.stop(grace=0.05)

    run(before_restart())
    assert first.delivered == [] and len(spool_rows(path)) == 4
    second = ScriptedSink("parallel_spooled")

    async def after_restart() -> None:
        runner = runner_for(second, clock, spool_path=str(path), max_in_flight=3)
        await runner.start()
        await runner.settle()
        await runner.stop()

    run(after_restart())
    assert sorted(p.body for p in second.delivered) == sorted(first.prepare(batch(0, s))[0].body for s in "abcd")
    assert spool_rows(path) == []


def test_batches_submitted_before_start_are_spooled_at_start(clock: ManualClock, tmp_path: Path) -> None:
    """A reloaded sink's successor takes batches while its predecessor still holds the spool."""
    path = tmp_path / "early.db"
    sink = ScriptedSink("early", ScriptedSinkConfig(type="test_scripted", down=True))

    async def go() -> None:
        runner = runner_for(sink, clock, spool_path=str(path))
        runner.submit(batch(0))
        await runner.start()
        await runner.settle()
        await runner.stop(grace=0)

    run(go())
    assert [minutes(end) for end, _ in spool_rows(path)] == [0]


def test_the_spool_is_a_sqlite_database_in_wal_mode(clock: ManualClock, tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    sink = ScriptedSink("wal", ScriptedSinkConfig(type="test_scripted", down=True))

    async def go() -> None:
        runner = runner_for(sink, clock, spool_path=str(path))
        await runner.start()
        runner.submit(batch(0))
        await runner.settle()
        with sqlite3.connect(path) as reader:  # an operator's shell can read it while the bridge runs
            assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert reader.execute("SELECT count(*) FROM payloads").fetchone() == (1,)
        await runner.stop(grace=0)

    run(go())


def test_a_full_spool_evicts_the_oldest_and_counts_it(clock: ManualClock, tmp_path: Path) -> None:
    path = tmp_path / "small.db"
    sink = ScriptedSink("small-spool", ScriptedSinkConfig(type="test_scripted", down=True))
    sink.body_size = 1000

    async def go() -> None:
        runner = runner_for(sink, clock, spool_path=str(path), spool_max_bytes=3500, max_bytes=1024)
        await runner.start()
        for minute in range(10):
            runner.submit(batch(minute))
        await runner.settle()
        await runner.stop(grace=0)

    run(go())
    assert [minutes(end) for end, _ in spool_rows(path)] == [7, 8, 9]
    assert counter(telemetry.DELIVERY_EVICTIONS, "small-spool", "spool_full") == 7


def test_a_spool_belongs_to_one_sink(clock: ManualClock, tmp_path: Path) -> None:
    """Another sink's spool is left alone; the intruder delivers memory-only (tests/test_hostile_state.py)."""
    path = tmp_path / "owned.db"
    intruder = ScriptedSink("intruder")

    async def go() -> None:
        owner = runner_for(ScriptedSink("owner"), clock, spool_path=str(path))
        await owner.start()
        await owner.stop()
        runner = runner_for(intruder, clock, spool_path=str(path))
        await runner.start()
        assert runner.spool is None
        runner.submit(batch(0))
        await runner.settle()
        await runner.stop()

    run(go())
    assert intruder.delivered_windows == [0]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT sink FROM owner").fetchall() == [("owner",)]


def test_a_file_that_is_not_a_spool_is_moved_aside(clock: ManualClock, tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)

    async def go() -> None:
        runner = runner_for(ScriptedSink("garbage"), clock, spool_path=str(path))
        await runner.start()
        assert runner.spool is not None
        await runner.stop()

    run(go())
    [moved] = tmp_path.glob("garbage.db.damaged-*")
    assert moved.read_bytes() == b"this is not a database" * 100
    assert spool_rows(path) == []


def submit_with_a_full_disk(
    sink: ScriptedSink, clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grace: float
) -> None:
    """One batch through a runner whose spool refuses every insert ("database or disk is full")."""

    def full_disk(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async def go() -> None:
        runner = runner_for(sink, clock, spool_path=str(tmp_path / "full.db"))
        await runner.start()
        assert runner.spool is not None
        monkeypatch.setattr(runner.spool, "_db", FailingInserts(runner.spool._db, full_disk))
        runner.submit(batch(0))
        await runner.settle()
        await runner.stop(grace=grace)

    run(go())


def test_when_the_spool_cannot_write_the_payload_is_still_delivered_from_memory(
    clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sink = ScriptedSink("disk-full")
    submit_with_a_full_disk(sink, clock, tmp_path, monkeypatch, grace=5.0)
    assert sink.delivered_windows == [0]
    assert "could not store a payload (database or disk is full); keeping it in memory only" in caplog.text


def test_a_payload_the_spool_could_not_keep_is_counted_at_shutdown(
    clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = ScriptedSink("disk-full-down", ScriptedSinkConfig(type="test_scripted", down=True))
    submit_with_a_full_disk(sink, clock, tmp_path, monkeypatch, grace=0)
    assert counter(telemetry.DELIVERY_EVICTIONS, "disk-full-down", "spool_error") == 1


class FailingInserts:
    """A sqlite3 connection whose INSERTs fail (a full disk); everything else goes through."""

    def __init__(self, db: Any, fail: Any) -> None:
        self._db = db
        self._fail = fail

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT"):
            self._fail()
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_spool_operations_keep_their_order_across_the_thread(tmp_path: Path) -> None:
    """add, then remove, issued back to back from the loop: the row never outlives its removal."""

    async def go() -> list[tuple[int, bytes]]:
        spool = Spool(str(tmp_path / "order.db"), "order", "test")
        await spool.open()
        for minute in range(50):
            payload = ScriptedSink().prepare(batch(minute))[0]
            entry = Entry(minute, payload.window_end_ns, payload.points, len(payload.body), None)
            spool.add(entry, payload)
            if minute % 2:
                spool.remove([entry])
        await spool.flush()
        await spool.close()
        return spool_rows(tmp_path / "order.db")

    assert [minutes(end) for end, _ in run(go())] == list(range(0, 50, 2))


# ---------------------------------------------------------------- reload
def test_a_reloaded_sink_takes_over_its_predecessors_spool(clock: ManualClock, tmp_path: Path) -> None:
    exposition = tmp_path / "metrics.prom"
    exposition.write_text("m 1\n")

    def config(down: bool) -> Any:
        return parse_config(
            {
                "sources": {"file": {"type": "file", "path": str(exposition)}},
                "sinks": {
                    "reloaded": {
                        "type": "test_scripted",
                        "down": down,
                        "delivery": {"spool_path": str(tmp_path / "reloaded.db")},
                    }
                },
            }
        )

    async def go() -> list[int]:
        pipeline = Pipeline(config(down=True), Context(clock=clock))
        await pipeline.start(schedule=False)
        for minute in range(3):
            pipeline.dispatch(batch(minute))
        await pipeline.settle()
        await pipeline.reload(config(down=False))
        await pipeline.settle()
        sink = pipeline.lanes["reloaded"].sink
        await pipeline.stop()
        assert isinstance(sink, ScriptedSink)
        return sink.delivered_windows

    assert run(go()) == [2, 1, 0]
