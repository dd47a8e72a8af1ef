"""A hostile backend never takes a sink down: trickled answers, endless bodies, absurd delays, nonsense counts.

Each test runs the real sink and SinkRunner against a real receiver on
127.0.0.1 that misbehaves on purpose (tests/receivers/hostile.py; Retry-After
and RetryInfo values no sane server sends; a negative partial success), and
asserts what the bridge counts and schedules: a failure within the sink's
timeout and a retry, a bounded read, a retry no later than retry_max_seconds,
a delivery counted as a delivery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from bridge import telemetry
from bridge.clock import ManualClock
from bridge.context import Context
from bridge.delivery import SinkRunner
from bridge.http import ERROR_BODY_LIMIT, MAX_SERVER_DELAY
from bridge.model import Batch
from bridge.schema import DeliveryConfig
from bridge.sinks.base import RetryableError, Sink
from bridge.sinks.datadog import DatadogSink, DatadogSinkConfig
from bridge.sinks.otlp import OTLPSink, OTLPSinkConfig
from tests.conftest import T0, run
from tests.datadog_support import API_KEY, cerebras_batch
from tests.receivers.datadog_intake import DatadogIntake
from tests.receivers.hostile import Manner, endless, trickle
from tests.receivers.otlp import (
    Answer,
    GrpcReceiver,
    HttpReceiver,
    partial_success,
    stall,
)

MiB = 2**20
TIMEOUT = 1.0  # the sinks' timeout_seconds: what a trickled answer may cost
RETRY_MAX = 60.0
YEAR_2100 = "Fri, 01 Jan 2100 00:00:00 GMT"
HOSTILE_END_SECONDS = 30.0  # every hostile answer stops by itself after this long at most


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_* variables of the machine must not change the OTLP sinks' settings."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)


def sample(metric: str, **labels: str) -> float:
    return telemetry.REGISTRY.get_sample_value(metric, labels) or 0.0


def failures(sink: str, reason: str) -> float:
    return sample("bridge_send_failures_total", sink=sink, reason=reason)


def delivered(sink: str) -> float:
    return sample("bridge_payloads_out_total", sink=sink)


def batch(minute: int = 0) -> Batch:
    return cerebras_batch(T0 + 60 * minute)


# ---------------------------------------------------------------- one backend, three kinds
@dataclass
class Backend:
    """A real sink and the real receiver it sends to, scripted in one vocabulary for all three kinds."""

    kind: str  # otlp-http, otlp-grpc, datadog
    sink: Sink
    receiver: HttpReceiver | GrpcReceiver | None = None
    intake: DatadogIntake | None = None
    hostile_answers: int = 0

    def answer_next(
        self, *, status: int = 200, manner: Manner | None = None, retry_after: float | str | None = None
    ) -> None:
        """The next request gets `status` (with Retry-After / RetryInfo), sent `manner`'s way."""
        self.hostile_answers += manner is not None
        if self.intake is not None:
            if status != 200:
                self.intake.fail_next(status, retry_after=retry_after)
            if manner is not None:
                self.intake.send_next(manner)
            return
        assert self.receiver is not None and not isinstance(retry_after, str)
        if status == 200:  # a 2xx with a body (a warning), so a body-only trickle has bytes to trickle
            answer = Answer(message="accepted, slowly")
        else:
            answer = Answer(grpc.StatusCode.UNAVAILABLE, status, retry_after, "backend unavailable")
        self.receiver.script(dataclasses.replace(answer, manner=manner))

    @property
    def hostile_sent(self) -> list[int]:
        return self.intake.hostile_sent if self.intake is not None else self.receiver.hostile_sent  # type: ignore[union-attr]

    async def hostile_answers_ended(self) -> list[int]:
        """Wait (bounded) until every hostile answer stopped; the bytes each sent."""
        give_up = time.monotonic() + HOSTILE_END_SECONDS + 5
        while len(self.hostile_sent) < self.hostile_answers and time.monotonic() < give_up:
            await asyncio.sleep(0.05)
        return self.hostile_sent


@asynccontextmanager
async def backend(kind: str, clock: ManualClock, name: str, **config: Any) -> AsyncIterator[Backend]:
    context = Context(clock=clock)
    if kind == "datadog":
        with DatadogIntake({API_KEY}, clock=clock) as intake:
            dd_config = DatadogSinkConfig.model_validate(
                {"type": "datadog", "url": intake.url, "api_key": API_KEY, "service_checks": False, **config}
            )
            yield Backend(kind, DatadogSink(name, dd_config, context), intake=intake)
        return
    receiver = GrpcReceiver() if kind == "otlp-grpc" else HttpReceiver()
    async with receiver:
        otlp_config = OTLPSinkConfig.model_validate(
            {
                "type": "otlp",
                "protocol": "grpc" if kind == "otlp-grpc" else "http/protobuf",
                "endpoint": receiver.endpoint,
                **config,
            }
        )
        yield Backend(kind, OTLPSink(name, otlp_config, context), receiver=receiver)


def runner_for(target: Backend, clock: ManualClock, **delivery: Any) -> SinkRunner:
    settings = {"retry_initial_seconds": 1.0, "retry_max_seconds": RETRY_MAX, **delivery}
    runner = SinkRunner(target.sink, DeliveryConfig(**settings), Context(clock=clock))
    runner.rng.seed(1)
    return runner


# ---------------------------------------------------------------- 9. a trickled answer
@pytest.mark.parametrize(
    ("kind", "manner", "reason"),
    [
        ("otlp-http", trickle(0.2), "timeout"),
        ("otlp-http", trickle(0.2, head=False), "timeout"),
        ("datadog", trickle(0.2), "timeout"),
        ("datadog", trickle(0.2, head=False), "timeout"),
        ("otlp-grpc", None, "grpc_deadline_exceeded"),  # gRPC: a server that never finishes its answer
    ],
    ids=["otlp-http-head", "otlp-http-body", "datadog-head", "datadog-body", "otlp-grpc-stalled"],
)
def test_a_trickled_answer_fails_at_the_sink_timeout_and_is_retried(
    kind: str, manner: Manner | None, reason: str, record_property: Any
) -> None:
    name = f"trickle-{kind}-{'stall' if manner is None else manner.head}"

    async def go() -> float:
        clock = ManualClock(T0 + 65)
        async with backend(kind, clock, name, timeout_seconds=TIMEOUT) as target:
            if target.receiver is not None and manner is None:
                target.receiver.script(stall(HOSTILE_END_SECONDS))
            else:
                target.answer_next(manner=manner)
            runner = runner_for(target, clock)
            await runner.start()
            started = time.monotonic()
            runner.submit(batch())
            await runner.settle()  # the attempt gave up: the sink waits on its backoff
            gave_up_after = time.monotonic() - started
            assert (failures(name, reason), sample("bridge_delivery_retries_total", sink=name)) == (1, 1)
            assert delivered(name) == 0
            await clock.advance(RETRY_MAX)
            await runner.settle()
            assert delivered(name) == 1, "the retry, answered normally, delivered the payload"
            await runner.stop(grace=1)
            await target.hostile_answers_ended()
        return gave_up_after

    gave_up_after = run(go())
    record_property("hostile", f"gave up after {gave_up_after:.2f} s (timeout_seconds {TIMEOUT:g}), retried, delivered")


async def refusal(target: Any) -> RetryableError:
    """Deliver one batch straight through the sink (no runner): the retryable error it must end in."""
    await target.sink.start()
    try:
        with pytest.raises(RetryableError) as caught:
            for payload in target.sink.prepare(batch()):
                await target.sink.deliver(payload)
    finally:
        await target.sink.close()
    return caught.value


# ---------------------------------------------------------------- 10. an endless body
@pytest.mark.parametrize("kind", ["otlp-http", "datadog"])
def test_an_endless_2xx_body_is_read_only_as_far_as_needed_and_the_payload_counts_as_delivered(
    kind: str, caplog: pytest.LogCaptureFixture, record_property: Any
) -> None:
    name = f"endless-{kind}"
    max_bytes = 256 * MiB  # what the server would send a client that kept reading

    async def go() -> tuple[int, list[int]]:
        clock = ManualClock(T0 + 65)
        async with backend(kind, clock, name) as target:
            runner = runner_for(target, clock)
            await runner.start()
            tracemalloc.start()
            try:
                for minute in range(2):
                    target.answer_next(manner=endless(seconds=HOSTILE_END_SECONDS, max_bytes=max_bytes))
                    runner.submit(batch(minute))
                    await runner.settle()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            await runner.stop(grace=1)
            return peak, await target.hostile_answers_ended()

    peak, sent = run(go())
    assert delivered(name) == 2 and failures(name, "timeout") == failures(name, "connection_error") == 0
    assert peak < 50 * MiB
    assert len(sent) == 2 and all(s < max_bytes for s in sent), "the client hung up long before the body ended"
    record_property(
        "hostile",
        f"traced peak {peak / MiB:.2f} MiB; the server got {[s // 1024 for s in sent]} KiB "
        "out before the bridge hung up; both payloads delivered",
    )
    if kind == "otlp-http":
        assert caplog.text.count("with a body over 64 KiB or undecodable") == 1, "logged once, not per request"


@pytest.mark.parametrize("kind", ["otlp-http", "datadog"])
def test_an_endless_error_body_is_cut_at_the_error_limit(kind: str) -> None:
    max_bytes = 64 * MiB

    async def go() -> tuple[RetryableError, list[int]]:
        async with backend(kind, ManualClock(T0 + 65), f"endless-error-{kind}") as target:
            target.answer_next(status=503, manner=endless(seconds=HOSTILE_END_SECONDS, max_bytes=max_bytes))
            return await refusal(target), await target.hostile_answers_ended()

    error, sent = run(go())
    assert error.reason == "http_503" and error.retryable
    assert "filler of an answer that never ends" in error.detail and len(error.detail) <= ERROR_BODY_LIMIT
    assert len(sent) == 1 and sent[0] < max_bytes, "the client hung up long before the body ended"


# ---------------------------------------------------------------- 11. absurd server delays
ABSURD_DELAYS = [
    ("otlp-grpc", 1e9),  # RetryInfo: 31 years
    ("otlp-grpc", 1e14),  # RetryInfo beyond what ToTimedelta can hold
    ("otlp-http", 1e14),  # Retry-After and a RetryInfo in the google.rpc.Status body
    ("datadog", YEAR_2100),
    ("datadog", "1000000000"),
]


@pytest.mark.parametrize(("kind", "delay"), ABSURD_DELAYS)
def test_a_transport_never_passes_on_an_absurd_delay(kind: str, delay: float | str) -> None:
    async def go() -> RetryableError:
        async with backend(kind, ManualClock(T0 + 65), f"absurd-{kind}") as target:
            target.answer_next(status=503, retry_after=delay)
            return await refusal(target)

    error = run(go())
    assert error.reason in ("grpc_unavailable", "http_503")
    assert error.retry_after == MAX_SERVER_DELAY


@pytest.mark.parametrize(("kind", "delay"), ABSURD_DELAYS)
def test_an_absurd_server_delay_is_capped_at_retry_max_seconds(kind: str, delay: float | str) -> None:
    name = f"capped-{kind}-{delay}"

    async def go() -> None:
        clock = ManualClock(T0 + 65)
        async with backend(kind, clock, name) as target:
            target.answer_next(status=503, retry_after=delay)
            runner = runner_for(target, clock)
            await runner.start()
            runner.submit(batch())
            await runner.settle()
            assert failures(name, "grpc_unavailable" if kind == "otlp-grpc" else "http_503") == 1
            assert failures(name, "OverflowError") == 0
            await clock.advance(RETRY_MAX - 0.1)
            await runner.settle()
            assert delivered(name) == 0, "the server's delay is still a floor, up to the cap"
            await clock.advance(0.1)
            await runner.settle()
            assert delivered(name) == 1, f"retried {RETRY_MAX:g} s later, not in {delay}"
            await runner.stop(grace=1)

    run(go())


def test_the_cap_is_the_age_limit_when_that_is_shorter() -> None:
    """Sleeping past max_age_seconds would only let the whole queue expire: the sink wakes at the age limit."""
    name = "capped-by-age"

    async def go() -> None:
        clock = ManualClock(T0 + 65)
        async with backend("datadog", clock, name) as target:
            target.answer_next(status=503, retry_after=YEAR_2100)
            runner = runner_for(target, clock, retry_max_seconds=3600, max_age_seconds=120)
            await runner.start()
            runner.submit(batch(0))
            await runner.settle()
            await clock.advance(119.9)
            runner.submit(batch(1))  # the first window has expired meanwhile; this one is fresh
            await runner.settle()
            assert delivered(name) == 0
            await clock.advance(0.1)
            await runner.settle()
            assert delivered(name) == 1
            assert sample("bridge_delivery_evicted_payloads_total", sink=name, reason="too_old") == 1
            await runner.stop(grace=1)

    run(go())


# ---------------------------------------------------------------- 12. a negative partial success
@pytest.mark.parametrize("kind", ["otlp-grpc", "otlp-http"])
def test_a_negative_partial_success_counts_as_delivered(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    name = f"negative-{kind}"

    async def go() -> int:
        clock = ManualClock(T0 + 65)
        async with backend(kind, clock, name) as target:
            assert target.receiver is not None
            target.receiver.script(*[partial_success(-5, "odd count")] * 2)
            runner = runner_for(target, clock)
            await runner.start()
            for minute in range(2):
                runner.submit(batch(minute))
                await runner.settle()
            await runner.stop(grace=1)
        return batch().point_count()

    points = run(go())
    assert delivered(name) == 2
    assert sample("bridge_points_out_total", sink=name) == 2 * points, "neither more nor fewer than were sent"
    assert sample("bridge_dropped_points_total", sink=name, reason="partial_success") == 0
    assert sample("bridge_dropped_points_total", sink=name, reason="sink_error") == 0
    assert caplog.text.count("reporting -5 rejected points, counted as 0: odd count") == 1, "logged once"
