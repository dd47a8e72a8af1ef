"""One runner per sink: the scrape hands it a batch and never waits on the backend.

submit() normalises and encodes at once (sink.prepare: stateful, in window
order) and queues the payloads; a worker task delivers them one at a time,
retrying retryable failures with capped exponential backoff and full jitter
until they succeed, turn out permanent, or age past the sink's limit.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque

from bridge import telemetry
from bridge.config import DeliveryConfig
from bridge.context import Context
from bridge.model import NS_PER_S, Batch
from bridge.sinks.base import DeliveryError, Payload, Sink

log = logging.getLogger(__name__)


class SinkRunner:
    def __init__(self, sink: Sink, config: DeliveryConfig, context: Context) -> None:
        self.sink = sink
        self.config = config
        self.clock = context.clock
        self.max_age = config.max_age_seconds or sink.default_max_age_seconds
        self._queue: deque[Payload] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._last_failure_reason: str | None = None

    async def start(self) -> None:
        await self.sink.start()
        self._task = asyncio.create_task(self._work(), name=f"sink:{self.sink.name}")

    def submit(self, batch: Batch) -> None:
        try:
            payloads = self.sink.prepare(batch)
        except Exception:
            log.exception("sink %s could not encode a batch from %s; dropped", self.sink.name, batch.source)
            telemetry.DROPPED_POINTS.labels(self.sink.name, "encode_error").inc(batch.point_count())
            return
        for payload in payloads:
            self._enqueue(payload)

    def _enqueue(self, payload: Payload) -> None:
        self._queue.append(payload)
        self._queued_bytes += len(payload.body)
        while len(self._queue) > self.config.max_batches or self._queued_bytes > self.config.max_bytes:
            self._drop(self._queue.popleft(), "queue_full")
        self._update_gauges()
        self._idle.clear()
        self._wakeup.set()

    def _drop(self, payload: Payload, reason: str) -> None:
        self._queued_bytes -= len(payload.body)
        telemetry.DROPPED_POINTS.labels(self.sink.name, reason).inc(payload.points)

    def _update_gauges(self) -> None:
        telemetry.QUEUE_DEPTH.labels(self.sink.name).set(len(self._queue))
        telemetry.QUEUE_BYTES.labels(self.sink.name).set(self._queued_bytes)

    def _too_old(self, payload: Payload) -> bool:
        return self.max_age is not None and payload.window_end_ns / NS_PER_S < self.clock.now() - self.max_age

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            payload = self._queue[0]
            if self._too_old(payload):
                self._queue.popleft()
                self._drop(payload, "too_old")
                self._update_gauges()
                continue
            delay = await self._attempt(payload)
            if delay is None:
                if self._queue and self._queue[0] is payload:
                    self._queue.popleft()
                    self._queued_bytes -= len(payload.body)
                self._update_gauges()
                continue
            self._idle.set()  # waiting on backoff counts as settled
            await self.clock.sleep_until(self.clock.now() + delay)

    async def _attempt(self, payload: Payload) -> float | None:
        """Deliver once. None when the payload is finished (sent or dropped), else the retry delay."""
        try:
            await self.sink.deliver(payload)
        except DeliveryError as exc:
            telemetry.SEND_FAILURES.labels(self.sink.name, exc.reason).inc()
            if exc.reason != self._last_failure_reason:  # one log line per state change
                log.warning("sink %s: %s%s", self.sink.name, exc, "" if exc.retryable else "; dropped")
                self._last_failure_reason = exc.reason
            if not exc.retryable:
                telemetry.DROPPED_POINTS.labels(self.sink.name, exc.reason).inc(payload.points)
                return None
            payload.meta["attempts"] = str(int(payload.meta.get("attempts", "0")) + 1)
            return self._backoff(int(payload.meta["attempts"]), exc.retry_after)
        except Exception as exc:  # a sink bug must not kill the worker
            log.exception("sink %s failed unexpectedly; payload dropped", self.sink.name)
            telemetry.SEND_FAILURES.labels(self.sink.name, type(exc).__name__).inc()
            telemetry.DROPPED_POINTS.labels(self.sink.name, "sink_error").inc(payload.points)
            return None
        if self._last_failure_reason is not None:
            log.info("sink %s: delivering again", self.sink.name)
            self._last_failure_reason = None
        telemetry.POINTS_OUT.labels(self.sink.name).inc(payload.points)
        telemetry.PAYLOADS_OUT.labels(self.sink.name).inc()
        telemetry.LAST_SEND_SUCCESS.labels(self.sink.name).set(self.clock.now())
        return None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cap = min(self.config.retry_max_seconds, self.config.retry_initial_seconds * 2 ** (attempt - 1))
        delay = random.uniform(0, cap)
        return max(delay, retry_after or 0.0)

    async def settle(self) -> None:
        """Return once nothing is being delivered: queue empty, or waiting on a backoff."""
        while True:
            await self._idle.wait()
            await asyncio.sleep(0)
            if self._idle.is_set():
                return

    async def stop(self, grace: float = 5.0) -> None:
        """Give queued payloads up to `grace` seconds to go out, then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._drain(), timeout=grace)
        except asyncio.TimeoutError:
            log.warning("sink %s: %d payloads undelivered at shutdown", self.sink.name, len(self._queue))
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        await self.sink.close()

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(0.01)
