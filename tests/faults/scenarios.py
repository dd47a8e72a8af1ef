"""The five fault scenarios of issue 5. Each one runs the bridge against real receivers behind fault
fronts, asserts exact totals against the simulator, and returns its figures for docs/reliability.md.

Scenarios 1, 3, 4 and 5 run the bridge in-process on a ManualClock (simulated
hours in seconds). Scenario 2 runs `metrics-bridge run` as a real
subprocess in real time, because a SIGKILL is only real in another process.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from bridge import telemetry
from bridge.clock import ManualClock, SystemClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.health import HealthState
from bridge.pipeline import Pipeline
from bridge.simulator import DEFAULT_ENDPOINTS, CerebrasSimulator, EndpointProfile
from bridge.sinks.datadog import DatadogSink
from tests.faults.backends import (
    Arrivals,
    Backend,
    DatadogBackend,
    OtlpBackend,
)
from tests.faults.exporter import SERIAL_METRIC, SerialExporter
from tests.faults.proxy import (
    HttpFaultProxy,
    bad_gzip,
    hang,
    huge_body,
    junk_lines,
    lose_answer,
    refuse,
    reset,
    reset_mid_body,
    stall_body,
    status,
)
from tests.receivers.otlp import HttpReceiver

T0 = 1_800_000_000.0  # a minute boundary; every simulated run starts 5 s after it, at the first scrape
MINUTE = 60.0
ORGANIZATION = "org_faults"
CEREBRAS_KEY = "fault-suite-cerebras-key"
SEED = 11
REAL_TIME_LIMIT = 20.0  # seconds any single wait in a scenario may take before it fails
#: Simulated time moves in steps this long, each one's work finished before the next: a ManualClock wakes
#: sleepers but does not wait for their I/O, and a scrape retry in flight must not see the clock jump ahead.
STEP = 5.0


@dataclass
class SinkFigures:
    sink: str
    scraped: int  # windows (scenario 2: scrapes) the bridge took from its source
    delivered: int  # distinct windows the receiver holds
    duplicated: int  # deliveries beyond the first; every copy identical (asserted)
    evicted: dict[str, int]  # windows given up on purpose, counted by reason
    queued: int  # windows still waiting (in memory or in the spool) when the scenario ended
    peak_queue: int  # most payloads waiting at once
    peak_queue_bytes: int

    @property
    def lost(self) -> int:
        """Windows neither delivered, nor counted as evicted, nor still queued: the number that must be 0."""
        return self.scraped - self.delivered - sum(self.evicted.values()) - self.queued


@dataclass
class Figures:
    number: int
    title: str
    setup: str
    sinks: list[SinkFigures]
    peak_memory_bytes: int | None  # None: not measured (in-process scenarios trace memory on request only)
    memory_measure: str
    wall_seconds: float = 0.0
    facts: list[str] = field(default_factory=list)  # further asserted outcomes, one line each


def value(metric: Any, **labels: str) -> float:
    """A self-metric's current value (collecting one metric, not the whole registry: this runs every step)."""
    for family in metric.collect():
        for s in family.samples:
            if s.labels == labels and not s.name.endswith("_created"):
                return float(s.value)
    return 0.0


def evictions(sink: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in telemetry.DELIVERY_EVICTIONS.collect():
        for s in family.samples:
            if s.name.endswith("_total") and s.labels["sink"] == sink:
                out[s.labels["reason"]] = s.value
    return out


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = REAL_TIME_LIMIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.005)


def assert_totals(name: str, arrivals: Arrivals, expected: dict[Any, float]) -> None:
    wrong = {
        key: (arrivals.totals.get(key), value) for key, value in expected.items() if arrivals.totals.get(key) != value
    }
    extra = set(arrivals.totals) - set(expected)
    assert not wrong and not extra, f"{name}: totals differ from the simulator's: {wrong} extra {extra}"


def assert_newest_first(name: str, arrivals: Arrivals, start: float, end: float) -> None:
    """Windows scraped while the backend was down arrive newest first (the backfill runs backwards)."""
    backlog = [w for w in arrivals.order if start <= w < end]
    assert backlog == sorted(backlog, reverse=True), f"{name}: backlog arrived in order {backlog}"


# ---------------------------------------------------------------- in-process bridge on a ManualClock
class SimulatedBridge:
    """The Cerebras simulator behind a fault front -> the bridge's pipeline -> fault fronts -> receivers."""

    def __init__(
        self,
        clock: ManualClock,
        backends: Sequence[Backend],
        *,
        delivery: dict[str, dict[str, Any]] | None = None,
        endpoints: Sequence[EndpointProfile] = DEFAULT_ENDPOINTS,
        source_timeout: float = 15.0,
        trace_memory: bool = False,
    ) -> None:
        self.clock = clock
        self.backends = list(backends)
        self.delivery = delivery or {}
        self.simulator = CerebrasSimulator(
            organization_id=ORGANIZATION, api_key=CEREBRAS_KEY, clock=clock, seed=SEED, endpoints=endpoints
        )
        self.source_timeout = source_timeout
        self.health = HealthState(clock)
        self.peak_queue: dict[str, tuple[int, int]] = {b.name: (0, 0) for b in backends}  # (payloads, bytes)
        self._evictions_before = {b.name: evictions(b.name) for b in backends}
        self.trace_memory = trace_memory  # tracemalloc slows Python down about threefold

    async def __aenter__(self) -> Self:
        if self.trace_memory:
            tracemalloc.start()
        self.simulator.start()
        base = self.simulator.url.rsplit("/", 1)[0]
        self.source_front = HttpFaultProxy(base, self.clock)
        self.source_front.start()
        for backend in self.backends:
            await backend.start()
        config = {
            "sources": {
                "cerebras": {
                    "type": "cerebras",
                    "organization_id": ORGANIZATION,
                    "api_key": CEREBRAS_KEY,
                    "base_url": self.source_front.url + urlsplit(base).path,
                    "timeout_seconds": self.source_timeout,
                }
            },
            "sinks": {b.name: {**b.sink_config(), "delivery": self.delivery.get(b.name, {})} for b in self.backends},
        }
        self.pipeline = Pipeline(parse_config(config), Context(clock=self.clock, health=self.health))
        await self.pipeline.start()
        for lane in self.pipeline.lanes.values():
            lane.runner.rng.seed(SEED)
        return self  # the first scrape runs at the caller's first await: faults scripted before it apply to it

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.pipeline.stop(grace=1.0)
        finally:
            for backend in self.backends:
                await backend.stop()
            self.source_front.stop()
            self.simulator.stop()
            if self.trace_memory:
                tracemalloc.stop()

    @property
    def peak_memory(self) -> int | None:
        return tracemalloc.get_traced_memory()[1] if self.trace_memory else None

    def queued(self, name: str) -> int:
        return int(value(telemetry.QUEUE_DEPTH, sink=name))

    def served_window_ends(self) -> set[int]:
        return {int(start + MINUTE) for start in self.simulator.served_windows}

    async def settle(self, waiting_on: Sequence[Backend] | None = None) -> None:
        """Pipeline.settle(); with `waiting_on`, the source and only those sinks (another may be stuck on purpose)."""
        if waiting_on is None:
            await self.pipeline.settle()
        else:
            await asyncio.sleep(0)
            while any(entry.collecting for entry in self.pipeline.sources.values()):
                await asyncio.sleep(0.001)
            for backend in waiting_on:
                await self.pipeline.lanes[backend.name].runner.settle()
        for name, (payloads, size) in self.peak_queue.items():
            queued_bytes = int(value(telemetry.QUEUE_BYTES, sink=name))
            self.peak_queue[name] = (max(payloads, self.queued(name)), max(size, queued_bytes))

    async def minutes(self, count: int, waiting_on: Sequence[Backend] | None = None) -> None:
        """Let `count` simulated minutes pass, in steps whose scrapes and deliveries finish before the next."""
        await self.settle(waiting_on)
        for _ in range(round(count * MINUTE / STEP)):
            await self.clock.advance(STEP)
            await self.settle(waiting_on)

    async def drain(self) -> None:
        """Let simulated time run in small steps until every sink has delivered everything it holds.

        Real pauses between steps give a gRPC channel its (real-time) reconnect.
        """
        deadline = time.monotonic() + REAL_TIME_LIMIT
        while any(self.queued(b.name) for b in self.backends):
            assert time.monotonic() < deadline, (
                f"sinks did not drain: {[(b.name, self.queued(b.name)) for b in self.backends]}"
            )
            await self.clock.advance(STEP)
            await self.settle()
            await asyncio.sleep(0.01)

    def figures(self, backend: Backend, arrivals: Arrivals) -> SinkFigures:
        before = self._evictions_before[backend.name]
        evicted = {reason: int(count - before.get(reason, 0)) for reason, count in evictions(backend.name).items()}
        return SinkFigures(
            backend.name,
            len(self.simulator.served_windows),
            len(arrivals.windows),
            arrivals.duplicated,
            {reason: n for reason, n in evicted.items() if n},
            self.queued(backend.name),
            *self.peak_queue[backend.name],
        )

    def check_every_window_once(self, backend: Backend) -> SinkFigures:
        """Every window the simulator served arrived exactly once, and the count totals are the simulator's."""
        arrivals = backend.arrivals()
        served = self.served_window_ends()
        assert arrivals.windows == served, (
            f"{backend.name}: missing {sorted(served - arrivals.windows)}, "
            f"unexpected {sorted(arrivals.windows - served)}"
        )
        assert arrivals.duplicated == 0, f"{backend.name}: {arrivals.duplicated} duplicate deliveries"
        assert_totals(backend.name, arrivals, self.simulator.count_totals())
        figures = self.figures(backend, arrivals)
        assert figures.lost == 0 and figures.queued == 0 and not figures.evicted, figures
        return figures


def spooled(name: str, workdir: Path) -> dict[str, Any]:
    return {"spool_path": str(workdir / "spool" / f"{name}.db")}


# ---------------------------------------------------------------- 1. backend down for 30 minutes
async def backend_outage(workdir: Path, trace_memory: bool = False) -> Figures:
    clock = ManualClock(T0 + 5)
    datadog = DatadogBackend("s1-datadog", clock)
    otlp_http = OtlpBackend("s1-otlp-http", "http/protobuf", clock, "cumulative")
    otlp_grpc = OtlpBackend("s1-otlp-grpc", "grpc", clock, "delta")
    backends = [datadog, otlp_http, otlp_grpc]
    down, up = T0 + 10 * MINUTE, T0 + 40 * MINUTE
    delivery = {datadog.name: spooled(datadog.name, workdir), otlp_grpc.name: spooled(otlp_grpc.name, workdir)}
    async with SimulatedBridge(clock, backends, delivery=delivery, trace_memory=trace_memory) as bridge:
        datadog.proxy.during(down, down + 10 * MINUTE, status(503, retry_after=30))
        datadog.proxy.during(down + 10 * MINUTE, down + 20 * MINUTE, status(429, retry_after=120))
        datadog.proxy.during(down + 20 * MINUTE, up, reset_mid_body())
        otlp_http.proxy.during(down, down + 20 * MINUTE, refuse())
        otlp_http.proxy.during(down + 20 * MINUTE, up, status(503))
        otlp_grpc.proxy.during(down, up, refuse())
        await bridge.minutes(60)
        await bridge.drain()
        figures = [bridge.check_every_window_once(b) for b in backends]
        for backend in backends:
            assert_newest_first(backend.name, backend.arrivals(), down, up)
        retries = {b.name: int(value(telemetry.DELIVERY_RETRIES, sink=b.name)) for b in backends}
        return Figures(
            1,
            "Backend down for 30 minutes, then back",
            "Cerebras simulator, 60 simulated minutes and the drain. Three sinks, each behind its own fault front, "
            "down from minute 10 to 40: Datadog (spool) answers 503 + Retry-After 30 s, then 429 + Retry-After "
            "120 s, then resets mid-answer; OTLP/HTTP cumulative (memory queue) refuses connections, then "
            "answers 503; OTLP/gRPC delta (spool) refuses connections.",
            figures,
            bridge.peak_memory,
            "traced Python heap of the whole process",
            facts=[
                "every window arrived exactly once at all three receivers; count totals equal the simulator's",
                "windows scraped during the outage arrived newest first",
                "failed attempts, each followed by a backoff (one request per backoff, however many payloads "
                "wait): " + ", ".join(f"{name} {n}" for name, n in retries.items()),
            ],
        )


# ---------------------------------------------------------------- 2. SIGKILL mid-delivery, restart on the spool
def serials_in(requests: Sequence[ExportMetricsServiceRequest]) -> list[int]:
    return [
        int(point.as_double)
        for request in requests
        for resource_metrics in request.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == SERIAL_METRIC
        for point in metric.gauge.data_points
    ]


def spooled_serials(path: Path) -> set[int]:
    """What the spool holds, read the way an operator would: a read-only connection beside the bridge."""
    if not path.exists():
        return set()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        bodies = [row[0] for row in db.execute("SELECT body FROM payloads")]
    return set(serials_in([ExportMetricsServiceRequest.FromString(body) for body in bodies]))


def spooled_bytes(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT coalesce(sum(size), 0) FROM payloads").fetchone()[0])


def rss_high_water(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def start_bridge(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "run", "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )


async def sigkill_mid_delivery(workdir: Path, trace_memory: bool = False) -> Figures:
    """Memory is the bridge process's own RSS high-water mark; `trace_memory` does not apply."""
    clock = SystemClock()
    spool = workdir / "spool" / "otlp.db"
    log = workdir / "bridge.log"
    receiver = HttpReceiver()
    receiver.start()
    proxy = HttpFaultProxy(receiver.endpoint, clock)
    proxy.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with SerialExporter() as exporter:
            config = workdir / "bridge.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "sources": {
                            "serial": {
                                "type": "prometheus",
                                "url": exporter.url,
                                "interval_seconds": 0.2,
                                "offset_seconds": 0,
                            }
                        },
                        "sinks": {
                            "otlp": {
                                "type": "otlp",
                                "protocol": "http/protobuf",
                                "endpoint": proxy.url,
                                "temporality": "delta",
                                "timeout_seconds": 30,
                                "delivery": {
                                    "spool_path": str(spool),
                                    "retry_initial_seconds": 0.05,
                                    "retry_max_seconds": 0.2,
                                },
                            }
                        },
                    }
                )
            )

            def received() -> set[int]:
                return set(serials_in(receiver.accepted))

            processes.append(start_bridge(config, log))
            await wait_until(lambda: len(received()) >= 3, "the first deliveries")
            proxy.during(clock.now(), math.inf, lose_answer())  # the receiver takes each request; no answer returns
            mark = len(exporter.served)
            await wait_until(lambda: len(exporter.served) >= mark + 5, "scrapes while the backend never answers")
            exporter.pause()
            last = exporter.served[-1]
            await wait_until(lambda: last in spooled_serials(spool), "the last scrape in the spool")
            assert proxy.hung == 1, "the bridge should be waiting on exactly one unanswered delivery"
            requests_before_kill = len(receiver.accepted)
            # acknowledged: what the receiver took and whose answer reached the bridge (the front records both)
            answered = [exchange.status for exchange in proxy.exchanges if exchange.status is not None]
            assert all(code == 200 for code in answered) and requests_before_kill == len(answered) + 1
            unacknowledged = set(exporter.served) - set(serials_in(receiver.accepted[: len(answered)]))
            unacknowledged_bytes = spooled_bytes(spool)
            first_rss = rss_high_water(processes[0].pid)
            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait()

            proxy.heal()
            proxy.release()
            exporter.resume()
            processes.append(start_bridge(config, log))
            await wait_until(lambda: len(exporter.served) >= last + 6, "scrapes after the restart")
            exporter.pause()
            await wait_until(lambda: set(exporter.served) <= received(), "every scrape delivered")
            second_rss = rss_high_water(processes[1].pid)
            processes[1].send_signal(signal.SIGTERM)
            exit_code = processes[1].wait(timeout=15)

        assert exit_code == 0, f"SIGTERM should exit 0, got {exit_code}:\n{log.read_text()[-3000:]}"
        resent = [s for s in serials_in(receiver.accepted[requests_before_kill:]) if s <= last]
        assert sorted(resent) == sorted(unacknowledged), (
            f"after the restart exactly the unacknowledged payloads must be sent: {sorted(resent)} vs "
            f"{sorted(unacknowledged)}"
        )
        arrivals = Arrivals()
        for request in receiver.accepted:
            arrivals.add(serials_in([request]), request.SerializeToString(deterministic=True))
        assert arrivals.windows == set(exporter.served), "every scrape the exporter answered must arrive"
        assert not arrivals.differing_copies(), "a re-sent payload must carry identical points"
        assert arrivals.duplicated == 1, "only the delivery in flight at the kill may arrive twice"
        assert spooled_serials(spool) == set(), "a clean stop with an empty queue leaves an empty spool"
        figures = SinkFigures(
            "otlp (http, spool)",
            len(exporter.served),
            len(arrivals.windows),
            arrivals.duplicated,
            {},
            0,
            len(unacknowledged),
            unacknowledged_bytes,
        )
        assert figures.lost == 0
        return Figures(
            2,
            "SIGKILL mid-delivery, restart on the same spool",
            "`metrics-bridge run` as a real subprocess (real time): a Prometheus exporter scraped every 0.2 s -> "
            "OTLP/HTTP sink with a spool -> fault front -> OTLP receiver. After 3 deliveries the front forwards "
            "each request to the receiver but never answers; 5 more scrapes pile up in the spool; SIGKILL while "
            "a delivery is in flight; the front heals; a new process starts on the same spool, then gets SIGTERM.",
            [figures],
            max(first_rss, second_rss),
            "RSS high-water mark of the bridge process",
            facts=[
                f"the restarted process re-sent exactly the {len(unacknowledged)} unacknowledged payloads",
                "the one duplicate is the delivery in flight at the kill, byte-identical",
                "SIGTERM: exit code 0, spool empty",
            ],
        )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        proxy.stop()
        receiver.stop()


# ---------------------------------------------------------------- 3. backend down for good
#: more endpoints than the demo so that payloads are large and the caps, not the baseline, dominate memory
MANY_ENDPOINTS = tuple(EndpointProfile(f"acme-model-{i:02d}", rpm=100.0 + 10 * i, failure_rate=0.01) for i in range(12))


def _traced_bytes() -> int:
    """Live traced bytes, leaving out the interpreter's own tables.

    pathlib interns every path part it parses (sys.intern), and the interned-string
    table grows in one-off steps of megabytes whenever it resizes, whatever ran before
    in the process: that is not memory the bridge holds. Cyclic garbage is collected
    first so only live objects count.
    """
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, pathlib.__file__)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def backend_down_for_good(workdir: Path, trace_memory: bool = True) -> Figures:
    """Always traces memory: bounded memory is what this scenario asserts."""
    clock = ManualClock(T0 + 5)
    otlp_http = OtlpBackend("s3-otlp-http", "http/protobuf", clock, "cumulative")
    otlp_grpc = OtlpBackend("s3-otlp-grpc", "grpc", clock, "delta")
    datadog = DatadogBackend("s3-datadog", clock)
    backends = [otlp_http, otlp_grpc, datadog]
    spool_cap = 2 * 1024 * 1024
    delivery = {
        otlp_http.name: {"max_batches": 30},
        otlp_grpc.name: {**spooled(otlp_grpc.name, workdir), "spool_max_bytes": spool_cap},
    }  # Datadog: the defaults
    hours = 2
    async with SimulatedBridge(
        clock, backends, delivery=delivery, endpoints=MANY_ENDPOINTS, trace_memory=True
    ) as bridge:
        otlp_http.proxy.during(T0, math.inf, status(503))
        otlp_grpc.proxy.during(T0, math.inf, refuse())
        datadog.proxy.during(T0, math.inf, reset())
        await bridge.minutes(60)
        after_first_hour = _traced_bytes()
        await bridge.minutes((hours - 1) * 60)
        growth = _traced_bytes() - after_first_hour
        spool_payload_bytes = int(value(telemetry.QUEUE_BYTES, sink=otlp_grpc.name))
        spool_file_bytes = int(value(telemetry.DELIVERY_SPOOL_BYTES, sink=otlp_grpc.name))
        figures = [bridge.figures(b, b.arrivals()) for b in backends]
        scraped = len(bridge.simulator.served_windows)
        for f in figures:
            assert f.delivered == 0 and f.lost == 0, f
        by_name = {f.sink: f for f in figures}
        assert by_name[otlp_http.name].queued == 30 and by_name[otlp_http.name].evicted == {"queue_full": scraped - 30}
        assert spool_payload_bytes <= spool_cap
        assert set(by_name[otlp_grpc.name].evicted) == {"spool_full"}
        youngest_kept = clock.now() - DatadogSink.default_max_age_seconds
        assert by_name[datadog.name].queued == sum(1 for end in bridge.served_window_ends() if end >= youngest_kept)
        assert set(by_name[datadog.name].evicted) == {"too_old"}
        assert by_name[otlp_http.name].peak_queue == 30 and by_name[datadog.name].peak_queue <= 60
        in_memory = [by_name[otlp_http.name], by_name[datadog.name]]
        produced_since_hour_1 = sum((hours - 1) * 60 * f.peak_queue_bytes // f.peak_queue for f in in_memory)
        assert growth < min(512 * 1024, produced_since_hour_1 // 3), (
            f"traced memory grew by {growth} bytes from hour 1 to hour {hours} "
            f"(the memory queues received {produced_since_hour_1} bytes meanwhile)"
        )
        return Figures(
            3,
            "Backend down for good",
            f"{hours} simulated hours, a simulator with {len(MANY_ENDPOINTS)} endpoints (larger payloads), every "
            "backend down from the start: OTLP/HTTP answers 503 (memory queue, max_batches 30), OTLP/gRPC refuses "
            f"connections (spool capped at {spool_cap // 1024} KiB), Datadog resets every connection (memory "
            "queue, 1 h age limit).",
            figures,
            bridge.peak_memory,
            "traced Python heap of the whole process",
            facts=[
                (
                    f"traced memory from hour 1 to hour {hours}: {growth / 1024:+.0f} KiB, while the two memory "
                    f"queues were handed {produced_since_hour_1 / 1024:.0f} KiB of new payloads"
                ),
                (
                    f"spool: {spool_payload_bytes} payload bytes at the end (cap {spool_cap}), "
                    f"{spool_file_bytes / 1024:.0f} KiB on disk with the WAL"
                ),
                "every window is accounted for: evicted (counted by reason) or still queued",
            ],
        )


# ---------------------------------------------------------------- 4. source faults
#: minute of the run -> what the source's fault front does to every scrape in that minute
SOURCE_FAULTS: list[tuple[int, int, str, Any]] = [
    (3, 6, "401 (wrong key)", status(401)),
    (6, 7, "403", status(403)),
    (7, 8, "404", status(404)),
    (8, 10, "429 + Retry-After 90 s", status(429, retry_after=90)),
    (10, 11, "500", status(500)),
    (11, 12, "503 + Retry-After 5 s", status(503, retry_after=5)),
    (12, 13, "slow body (stalls 1 s; source timeout 0.3 s)", stall_body(1.0)),
    (13, 14, "100 MB body", huge_body(100 * 1024 * 1024)),
    (14, 15, "bad gzip", bad_gzip()),
    (15, 16, "reset mid-body", reset_mid_body()),
    (16, 18, "malformed lines appended to a real exposition", junk_lines()),
]


def max_requests_per_rolling_minute(times: Sequence[float]) -> int:
    ordered = sorted(times)
    return max((sum(1 for u in ordered[i:] if u < t + MINUTE) for i, t in enumerate(ordered)), default=0)


async def source_faults(workdir: Path, trace_memory: bool = False) -> Figures:
    clock = ManualClock(T0 + 5)
    sink = DatadogBackend("s4-datadog", clock)
    gaps_before = value(telemetry.GAPS, source="cerebras")
    parse_errors_before = value(telemetry.PARSE_ERRORS, source="cerebras")
    async with SimulatedBridge(clock, [sink], source_timeout=0.3, trace_memory=trace_memory) as bridge:
        for first, last, _, fault in SOURCE_FAULTS:
            bridge.source_front.during(T0 + first * MINUTE, T0 + last * MINUTE, fault)
        readiness = []
        for _ in range(30):
            await bridge.minutes(1)
            readiness.append(bridge.health.ready()[0])
        source_task = bridge.pipeline.sources["cerebras"].task
        assert source_task is not None and not source_task.done(), "the source's schedule must survive every fault"
        figures = bridge.check_every_window_once(sink)
        served = sorted(bridge.simulator.served_windows)
        never_served = round((served[-1] - served[0]) / MINUTE) + 1 - len(served)
        gaps = value(telemetry.GAPS, source="cerebras") - gaps_before
        assert gaps == never_served, f"gaps counted {gaps}, windows never fetched {never_served}"
        requests = [e.at for e in bridge.source_front.exchanges]
        busiest = max_requests_per_rolling_minute(requests)
        assert busiest <= 6, f"{busiest} requests in one minute to one organization"
        assert not all(readiness) and readiness[-1], f"readiness should drop during the faults and recover: {readiness}"
        parse_errors = value(telemetry.PARSE_ERRORS, source="cerebras") - parse_errors_before
        assert parse_errors > 0
        return Figures(
            4,
            "Source faults",
            "30 simulated minutes; a fault front between the bridge and the Cerebras simulator answers: "
            + "; ".join(
                f"minute {a}-{b - 1}: {label}" if b - a > 1 else f"minute {a}: {label}"
                for a, b, label, _ in SOURCE_FAULTS
            )
            + ". Sink: Datadog, healthy.",
            [figures],
            bridge.peak_memory,
            "traced Python heap of the whole process",
            facts=[
                f"no crash: the source's schedule ran through every fault ({len(requests)} requests)",
                f"at most {busiest} requests in any rolling minute to the organization (limit 6)",
                (
                    f"{int(gaps)} windows never fetched, all counted in bridge_gaps_total; "
                    f"{int(parse_errors)} malformed lines skipped and counted, the valid ones forwarded"
                ),
                (
                    f"/readyz was unready for {readiness.count(False)} of the 30 minutes (no successful scrape "
                    "within two intervals) and ready again at the end"
                ),
            ],
        )


# ---------------------------------------------------------------- 5. one sink down, one up
async def one_sink_down(workdir: Path, trace_memory: bool = False) -> Figures:
    clock = ManualClock(T0 + 5)
    healthy = OtlpBackend("s5-otlp-grpc", "grpc", clock, "cumulative")
    failing = DatadogBackend("s5-datadog", clock)
    hang_from, hang_until = T0 + 30 * MINUTE, T0 + 50 * MINUTE
    async with SimulatedBridge(clock, [healthy, failing], trace_memory=trace_memory) as bridge:
        failing.proxy.during(T0 + 10 * MINUTE, hang_from, status(503))
        failing.proxy.during(hang_from, hang_until, hang())
        await bridge.minutes(30)
        await bridge.minutes(20, waiting_on=[healthy])  # the failing sink is stuck in a request: not waited for
        assert failing.proxy.hung == 1, "the failing sink should be stuck in an unanswered request"
        failing.proxy.release()
        await bridge.minutes(10)
        await bridge.drain()
        figures = [bridge.check_every_window_once(b) for b in (healthy, failing)]
        assert figures[0].peak_queue == 0, "the healthy sink must never have a window waiting after a 5 s step"
        return Figures(
            5,
            "One sink down, one up",
            "60 simulated minutes; OTLP/gRPC (cumulative) healthy; Datadog behind a fault front: 503 from minute "
            "10, then from minute 30 to 50 every request hangs unanswered (the sink's 30 s timeout never fires "
            f"within the phase). Simulated time moves in {STEP:g} s steps; after each one the healthy sink must "
            "have nothing left to send.",
            figures,
            bridge.peak_memory,
            "traced Python heap of the whole process",
            facts=[
                (
                    f"the healthy sink delivered every window within the {STEP:g} s step it was scraped in "
                    "(its queue was empty after every step), also while the other sink was stuck in a request"
                ),
                "the failing sink caught up after the outage: every window exactly once",
            ],
        )


SCENARIOS = [backend_outage, sigkill_mid_delivery, backend_down_for_good, source_faults, one_sink_down]


async def run_scenario(scenario: Callable[..., Any], workdir: Path, *, trace_memory: bool = False) -> Figures:
    started = time.perf_counter()
    figures: Figures = await scenario(workdir, trace_memory=trace_memory)
    figures.wall_seconds = time.perf_counter() - started
    return figures
