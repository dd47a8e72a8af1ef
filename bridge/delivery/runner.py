"""One runner per sink: the scrape hands it a batch and never waits on the backend.

submit() normalises and encodes at once (sink.prepare: stateful, in window
order), queues the payloads and returns. A worker task delivers them, one at
a time, or up to `max_in_flight` at once but never two of one source (a
backend's round trip would otherwise bound a sink fed by thousands of sources):

- newest window first, so live data is never stuck behind an outage's
  backlog; then older windows while they are inside the sink's age limit
  (`drain_order: oldest_first` for backends that refuse out-of-order samples);
- a retryable failure puts the whole sink in backoff (exponential, full
  jitter, capped, Retry-After as a floor): a down backend is down for every
  payload, so it is asked once per backoff, not once per queued payload;
- a permanent failure drops the payload, counted by reason;
- the queue is bounded by payloads and bytes: when full, the oldest window is
  evicted and counted.

With `spool_path`, a payload's bytes live in a SQLite spool (bridge/delivery/
spool.py) until the backend acknowledged it, and memory holds only an index:
a restart, even after a SIGKILL, resumes with exactly the unacknowledged
payloads. A spool that cannot be used at all (unwritable, damaged and not
movable, another sink's) does not stop the bridge: that sink runs memory-only,
and /readyz says so until it is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
from typing import TYPE_CHECKING, Any

from bridge import telemetry
from bridge.context import Context
from bridge.delivery.backoff import retry_delay
from bridge.delivery.pending import Entry, PendingQueue
from bridge.model import NS_PER_S, Batch
from bridge.schema import DeliveryConfig
from bridge.sinks.base import DeliveryError, Payload, Sink

if TYPE_CHECKING:
    from bridge.delivery.spool import Spool, StoredPayload

log = logging.getLogger(__name__)

_FLUSH_POLL_SECONDS = 0.01


class SinkRunner:
    def __init__(self, sink: Sink, config: DeliveryConfig, context: Context) -> None:
        self.sink = sink
        self.config = config
        self.clock = context.clock
        self.health = context.health
        self.max_age = config.max_age_seconds or sink.default_max_age_seconds
        self.rng = random.Random()  # the backoff's jitter; tests seed it for repeatable runs
        sink_type = getattr(sink, "type_name", type(sink).__name__)
        self.spool: Spool | None = None
        if config.spool_path:
            from bridge.delivery.spool import Spool  # sqlite3 only for a sink with a spool

            self.spool = Spool(config.spool_path, sink.name, sink_type)
        self._pending = PendingQueue()
        self._seq = itertools.count()
        self._in_flight: set[Entry] = set()  # being delivered: up to max_in_flight, never two of one source
        self._failures = 0  # consecutive retryable failures: the backoff's exponent
        self._retry_at: float | None = None  # while backing off: when the next attempt is due (clock time)
        self._last_failure_reason: str | None = None
        self._reported_evictions: set[str] = set()  # log each eviction reason once per bad spell
        self._wakeup = asyncio.Event()  # set by submit for a worker waiting on an empty queue
        self._idle = asyncio.Event()  # set while the worker waits for work or on a backoff
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._spool_open = False

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def _byte_cap(self) -> int:
        """A spool holds its bytes on disk; without one (or memory-only after a spool failure) they are in memory."""
        return self.config.spool_max_bytes if self.spool else self.config.max_bytes

    @property
    def _full_reason(self) -> str:
        return "spool_full" if self.spool else "queue_full"

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover the spool (if any), open the sink, start delivering.

        Payloads submitted before start (a reloaded sink's successor) are kept
        in memory until here, then spooled like any other.
        """
        if self.spool is not None:
            await self._open_spool()
        try:
            await self.sink.start()
        except BaseException:
            if self.spool is not None:
                await self.spool.close()
            raise
        self._task = asyncio.create_task(self._work(), name=f"sink:{self.name}")
        telemetry.DELIVERY_OLDEST_AGE.labels(self.name).set_function(self._oldest_age)
        if self.spool is not None:
            telemetry.DELIVERY_SPOOL_BYTES.labels(self.name).set_function(self.spool.disk_bytes)
        self._publish()

    async def _open_spool(self) -> None:
        """Recover the spool; when no spool can be used, run memory-only rather than stop every other sink."""
        from bridge.delivery.spool import SpoolError

        assert self.spool is not None
        try:
            stored = await self.spool.open()
        except SpoolError as exc:
            await self.spool.close()
            self.spool = None
            log.error(
                "sink %s: %s; running memory-only: queued payloads do not survive a restart until this is "
                "fixed and the bridge restarted",
                self.name,
                exc,
            )
            self._report_spool(f"spool unusable ({exc}), running memory-only", durable=False)
            return
        self._recover(stored)
        self._spool_open = True
        self._report_spool(self.spool.damage, durable=True)

    def _report_spool(self, problem: str | None, *, durable: bool) -> None:
        if self.health is not None:
            self.health.sink_spool(self.name, problem, durable=durable)

    def _recover(self, stored: list[StoredPayload]) -> None:
        assert self.spool is not None
        submitted_early = list(self._pending)
        for row in stored:
            self._pending.add(Entry(next(self._seq), row.window_end_ns, row.points, row.size, None, row.row_id))
        for entry in submitted_early:
            self._spool_entry(entry)
        if stored:
            telemetry.DELIVERY_RECOVERED.labels(self.name).inc(len(stored))
            log.info("sink %s: %d unacknowledged payload(s) recovered from %s", self.name, len(stored), self.spool.path)
        self._evict_over_caps()  # the caps may have shrunk, and time has passed, since they were stored
        self._expire()

    async def stop(self, grace: float = 5.0) -> None:
        """Deliver for up to `grace` seconds, then stop: the rest stays in the spool, or is dropped and counted."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):  # not wait_for: on 3.11 it can swallow the stop's own cancellation
                await self._flush(grace)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)  # an attempt in flight stays unacknowledged
        self._task = None
        if self.spool is None:
            self._discard(list(self._pending), "shutdown", evicted=True)  # no spool_path: nowhere to keep them
        else:
            await self.spool.flush()
            self._discard([e for e in self._pending if e.payload is not None], "spool_error", evicted=True)
            if self._pending:
                log.info(
                    "sink %s: %d undelivered payload(s) kept in %s for the next start",
                    self.name,
                    len(self._pending),
                    self.spool.path,
                )
            await self.spool.close()
            self._spool_open = False
            telemetry.DELIVERY_SPOOL_BYTES.remove(self.name)
        telemetry.DELIVERY_OLDEST_AGE.remove(self.name)
        self._publish()
        await self.sink.close()

    async def _flush(self, grace: float) -> None:
        """Until nothing is pending, or the next retry is due after the grace period anyway."""
        deadline = self.clock.now() + grace
        while self._pending and not (self._retry_at is not None and self._retry_at > deadline):  # noqa: ASYNC110  # polled: two conditions, changed in many places
            await asyncio.sleep(_FLUSH_POLL_SECONDS)

    async def settle(self) -> None:
        """Return once nothing is being delivered (queue empty, or waiting on a backoff) and the spool is written."""
        while True:
            await self._idle.wait()
            await asyncio.sleep(0)
            if self._idle.is_set():
                break
        if self.spool is not None and self._spool_open:
            await self.spool.flush()

    # -- the scrape side: never waits ------------------------------------------------------------------
    def submit(self, batch: Batch) -> None:
        try:
            payloads = self.sink.prepare(batch)
        except Exception:
            log.exception("sink %s could not encode a batch from %s; dropped", self.name, batch.source)
            telemetry.DROPPED_POINTS.labels(self.name, "encode_error").inc(batch.point_count())
            return
        for payload in payloads:
            self._enqueue(payload, batch.source)
        self._expire()
        self._publish()
        if payloads and self._task is not None and self._retry_at is None:
            self._idle.clear()
            self._wakeup.set()

    def _enqueue(self, payload: Payload, source: str) -> None:
        entry = Entry(next(self._seq), payload.window_end_ns, payload.points, len(payload.body), payload, source=source)
        if entry.size > self._byte_cap:  # would evict everything else and then itself
            self._count_dropped([entry], "larger_than_queue", evicted=True)
            return
        self._pending.add(entry)
        if self._spool_open:
            self._spool_entry(entry)
        self._evict_over_caps()

    def _spool_entry(self, entry: Entry) -> None:
        """Hand the bytes to the spool: from here on they live only on disk (or in the entry again if writing fails)."""
        assert self.spool is not None and entry.payload is not None
        payload, entry.payload = entry.payload, None  # before the spool's thread may put it back
        self.spool.add(entry, payload)

    # -- bookkeeping ----------------------------------------------------------------------------------
    def _evict_over_caps(self) -> None:
        victims = []
        while len(self._pending) > self.config.max_batches or self._pending.bytes > self._byte_cap:
            victim = self._pending.oldest(skip=self._in_flight)
            if victim is None:
                break
            self._pending.remove(victim)
            victims.append(victim)
        self._discard(victims, self._full_reason, evicted=True)

    def _expire(self) -> None:
        if self.max_age is None:
            return
        cutoff_ns = int((self.clock.now() - self.max_age) * NS_PER_S)
        expired = [e for e in self._pending.ending_before(cutoff_ns) if e not in self._in_flight]
        self._discard(expired, "too_old", evicted=True)

    def _forget(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._pending.remove(entry)
        if self.spool is not None:
            self.spool.remove(entries)

    def _discard(self, entries: list[Entry], reason: str, *, evicted: bool) -> None:
        """Give up on queued payloads."""
        if entries:
            self._forget(entries)
            self._count_dropped(entries, reason, evicted=evicted)

    def _count_dropped(self, entries: list[Entry], reason: str, *, evicted: bool) -> None:
        """Points by reason; evictions (the delivery layer's own decisions) also in payloads."""
        telemetry.DROPPED_POINTS.labels(self.name, reason).inc(sum(e.points for e in entries))
        if evicted:
            telemetry.DELIVERY_EVICTIONS.labels(self.name, reason).inc(len(entries))
            if reason not in self._reported_evictions:
                self._reported_evictions.add(reason)
                log.warning(
                    "sink %s: %d undelivered payload(s) evicted (%s); all such evictions are counted in "
                    "bridge_delivery_evicted_payloads_total",
                    self.name,
                    len(entries),
                    reason,
                )

    def _publish(self) -> None:
        telemetry.QUEUE_DEPTH.labels(self.name).set(len(self._pending))
        telemetry.QUEUE_BYTES.labels(self.name).set(self._pending.bytes)

    def _oldest_age(self) -> float:
        oldest = self._pending.oldest()
        return 0.0 if oldest is None else max(0.0, self.clock.now() - oldest.window_end_ns / NS_PER_S)

    # -- the worker -----------------------------------------------------------------------------------
    async def _work(self) -> None:
        newest_first = self.config.drain_order == "newest_first"
        sending: dict[asyncio.Task[float | None], Entry] = {}
        try:
            while True:
                self._expire()
                while self._retry_at is None and len(sending) < self.config.max_in_flight:
                    busy_sources = {e.source for e in self._in_flight}
                    entry = self._pending.next_to_send(newest_first, self._in_flight, busy_sources)
                    if entry is None:
                        break
                    self._in_flight.add(entry)
                    sending[asyncio.create_task(self._attempt(entry), name=f"sink:{self.name}:send")] = entry
                if not sending:
                    if self._retry_at is not None:  # every attempt is back, and one asked for a backoff
                        self._idle.set()
                        try:
                            await self.clock.sleep_until(self._retry_at)
                        finally:
                            self._retry_at = None
                        continue
                    self._publish()
                    self._wakeup.clear()
                    self._idle.set()
                    await self._wakeup.wait()
                    continue
                self._idle.clear()
                await self._wait_for_a_send(sending)
        finally:  # stop(): an attempt in flight stays unacknowledged (in the spool, or dropped and counted)
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)

    async def _wait_for_a_send(self, sending: dict[asyncio.Task[float | None], Entry]) -> None:
        """Until an attempt is back (a backoff it asks for stops new sends), or new work could start beside them."""
        waiters: set[asyncio.Future[Any]] = set(sending)
        wakeup = None
        if self._retry_at is None and len(sending) < self.config.max_in_flight:
            self._wakeup.clear()
            wakeup = asyncio.ensure_future(self._wakeup.wait())
            waiters.add(wakeup)
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if wakeup is not None:
                wakeup.cancel()
        for task in [t for t in sending if t in done]:
            self._in_flight.discard(sending.pop(task))
            delay = task.result()
            self._publish()
            if delay is not None:
                self._retry_at = self.clock.now() + delay

    async def _attempt(self, entry: Entry) -> float | None:
        """Deliver once. None when the payload is finished (sent or dropped), else the backoff delay."""
        try:
            payload = entry.payload
            if payload is None:
                assert self.spool is not None
                payload = await self.spool.load(entry)
            if payload is None:  # unreadable: the spool logged that once and counts each
                self._reported_evictions.add("spool_error")
                self._discard([entry], "spool_error", evicted=True)
                return None
            rejected = await self.sink.deliver(payload) or 0
        except DeliveryError as exc:
            return self._failed(entry, exc)
        except Exception as exc:  # a sink bug must not kill the worker
            log.exception("sink %s failed unexpectedly; payload dropped", self.name)
            telemetry.SEND_FAILURES.labels(self.name, type(exc).__name__).inc()
            self._discard([entry], "sink_error", evicted=False)
            return None
        self._delivered(entry, rejected)
        return None

    def _failed(self, entry: Entry, exc: DeliveryError) -> float | None:
        telemetry.SEND_FAILURES.labels(self.name, exc.reason).inc()
        if exc.reason != self._last_failure_reason:  # one log line per state change
            log.warning(
                "sink %s: %s; %s",
                self.name,
                exc,
                f"retrying ({len(self._pending)} queued)" if exc.retryable else "payload dropped",
            )
            self._last_failure_reason = exc.reason
        if not exc.retryable:
            self._failures = 0
            self._discard([entry], exc.reason, evicted=False)
            if self.health is not None:
                self.health.sink_failed_permanently(self.name, exc.reason)
            return None
        self._failures += 1
        telemetry.DELIVERY_RETRIES.labels(self.name).inc()
        # a server's delay is capped too: waiting past the age limit would only expire the whole queue
        cap = min(self.config.retry_max_seconds, self.max_age or math.inf)
        return retry_delay(self._failures, self.config.retry_initial_seconds, cap, exc.retry_after, self.rng)

    def _delivered(self, entry: Entry, rejected: int) -> None:
        """Acknowledged; `rejected` points of it were refused in a partial success (the sink counted them)."""
        self._forget([entry])
        if self._last_failure_reason is not None:
            log.info("sink %s: delivering again (%d queued)", self.name, len(self._pending))
            self._last_failure_reason = None
        self._failures = 0
        self._reported_evictions.clear()
        if self.health is not None:
            self.health.sink_succeeded(self.name)
        telemetry.POINTS_OUT.labels(self.name).inc(max(0, entry.points - rejected))
        telemetry.PAYLOADS_OUT.labels(self.name).inc()
        telemetry.LAST_SEND_SUCCESS.labels(self.name).set(self.clock.now())
