"""Wiring and scheduling: sources -> transforms -> fan-out -> one delivery runner per sink.

Each source runs in its own task on its own aligned schedule, so a slow
upstream delays nobody else; each sink has its own runner, so a slow or dead
backend never blocks a scrape or another sink. Transforms are pure and run
once for all sinks, then once per sink for that sink's own list.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from bridge import registry, series, sharding, telemetry
from bridge.config import BridgeConfig, ConfigError
from bridge.context import Context
from bridge.delivery import SinkRunner
from bridge.model import Batch
from bridge.schema import SinkConfig, TransformConfig
from bridge.sinks.base import Payload, Sink
from bridge.sources.base import Source
from bridge.transforms.base import Transform

log = logging.getLogger(__name__)

#: How long stopping waits for cancelled sources, and beyond the grace period for sinks.
STOP_MARGIN_SECONDS = 5.0


def build_transforms(configs: list[TransformConfig], place: str = Transform.place) -> list[Transform]:
    """The transforms of one list; `place` (a sink's name, `*` for the global list) labels what they drop."""
    transforms = [registry.transforms.require(c.type)(c) for c in configs]
    for transform in transforms:
        transform.place = place
    return transforms


def apply_transforms(transforms: list[Transform], batch: Batch) -> Batch:
    for transform in transforms:
        batch = transform.apply(batch)
    return batch


@dataclass
class SinkLane:
    """A sink with its own transforms and delivery runner."""

    config: SinkConfig
    transform_configs: list[TransformConfig]
    transforms: list[Transform]
    runner: SinkRunner

    @property
    def sink(self) -> Sink:
        return self.runner.sink


@dataclass
class SourceTask:
    config: Any
    source: Source
    task: asyncio.Task[None] | None = None
    collecting: bool = False


class Pipeline:
    def __init__(self, config: BridgeConfig, context: Context | None = None) -> None:
        self.config = config
        self.context = context or Context()
        self.context.series = config.series
        series.shared.bound(config.series.max_series, config.series.idle_seconds)
        self.health = self.context.health
        self.transforms = build_transforms(config.transforms)
        self.lanes = {name: self._build_lane(name, sink_config, config) for name, sink_config in config.sinks.items()}
        self.sources = {
            name: SourceTask(
                source_config, registry.sources.require(source_config.type)(name, source_config, self.context)
            )
            for name, source_config in _owned(config).items()
        }
        _report_shard(config, self.sources)
        self._activity = asyncio.Event()
        #: False on a warm standby (bridge/ha.py): sinks run, sources wait for the Lease
        self.sources_running = True

    def _build_lane(self, name: str, sink_config: SinkConfig, config: BridgeConfig) -> SinkLane:
        sink = registry.sinks.require(sink_config.type)(name, sink_config, self.context)
        transform_configs = config.sink_transforms.get(name, [])
        runner = SinkRunner(sink, sink_config.delivery, self.context)
        return SinkLane(sink_config, transform_configs, build_transforms(transform_configs, name), runner)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, *, schedule: bool = True, sources: bool = True) -> None:
        """Start sinks first (so nothing scraped waits for them), then sources and their schedules.

        `sources=False`: a warm standby's start; start_sources() follows when it takes the Lease.
        """
        for name, lane in self.lanes.items():
            await lane.runner.start()
            if self.health is not None:
                self.health.expect_sink(name)
        self.sources_running = sources
        if sources:
            for name, entry in self.sources.items():
                await self._start_source(name, entry, schedule)

    async def start_sources(self) -> None:
        """A standby taking over: start every source and its schedule."""
        if self.sources_running:
            return
        self.sources_running = True
        for name, entry in self.sources.items():
            await self._start_source(name, entry, True)

    async def stop_sources(self) -> None:
        """An active replica that lost its Lease: stop every source; sinks keep flushing what they hold."""
        if not self.sources_running:
            return
        self.sources_running = False
        for name, entry in list(self.sources.items()):
            await _quietly(f"source {name}", self._stop_source(entry))
            if self.health is not None:
                self.health.forget(name)
            try:  # a closed source cannot start again: the next start_sources gets a fresh one
                source = registry.sources.require(entry.config.type)(name, entry.config, self.context)
            except Exception:  # a plug-in that raises now: logged; starting the closed one will be logged too
                log.exception("source %s could not be rebuilt after stopping", name)
                continue
            self.sources[name] = SourceTask(entry.config, source)

    async def _start_source(self, name: str, entry: SourceTask, schedule: bool) -> None:
        await entry.source.start()
        if schedule:
            self._schedule(name, entry)
        elif self.health is not None:
            self.health.expect_source(name, entry.source.interval_seconds)

    async def stop(self, grace: float = 10.0) -> int:
        """Stop scraping, give sinks `grace` seconds to flush, release everything.

        Bounded as a whole (about grace + 2 x STOP_MARGIN_SECONDS): a source or sink that does not
        stop in time is abandoned, logged and counted in the return value, so the caller can exit anyway.
        """
        entries = list(self.sources.values())
        stuck = await _cancel_all([e.task for e in entries if e.task is not None], "source")
        for entry in entries:
            entry.task = None
        # Closing connections cannot hang for good, only take a while (1,000 clients on a busy machine): past
        # the margin they are left to the process exit, not counted as stuck.
        await _bounded(
            asyncio.gather(*(e.source.close() for e in entries), return_exceptions=True),
            STOP_MARGIN_SECONDS,
            "closing source connections",
        )
        stuck += await _bounded(
            asyncio.gather(*(lane.runner.stop(grace) for lane in self.lanes.values()), return_exceptions=True),
            grace + STOP_MARGIN_SECONDS,
            "flushing sinks",
        )
        return stuck

    async def _stop_source(self, entry: SourceTask) -> None:
        if entry.task is not None:
            await _cancel_all([entry.task], "source")
            entry.task = None
        await entry.source.close()

    # -- scheduling -----------------------------------------------------------------------------
    async def _source_loop(self, entry: SourceTask) -> None:
        clock = self.context.clock
        last_due: float | None = None
        while True:
            due = entry.source.next_due(clock.now())
            if due is None:  # a finite source (a `file` read once) is done: not a readiness problem
                if self.health is not None:
                    self.health.forget(entry.source.name)
                return
            if last_due is not None and due <= last_due:  # the source did not move its schedule: never spin
                due = last_due + entry.source.interval_seconds
                log.warning(
                    "source %s did not schedule its next collect; next one at the next interval", entry.source.name
                )
            await clock.sleep_until(due)
            last_due = due
            await self.collect(entry)

    async def collect(self, entry: SourceTask) -> Batch | None:
        """One collect of one source, dispatched to every sink."""
        entry.collecting = True
        name = entry.source.name
        try:
            now = self.context.clock.now()
            try:
                batch = await entry.source.collect(now)
            except Exception:  # a source bug must not stop its schedule
                log.exception("source %s failed unexpectedly", name)
                telemetry.SCRAPES.labels(name, "error").inc()
                batch = None
            self._report_source(entry, now)
            if batch is not None:
                self.dispatch(batch)
            return batch
        finally:
            entry.collecting = False
            self._activity.set()

    def _report_source(self, entry: SourceTask, now: float) -> None:
        if self.health is None:
            return
        source = entry.source
        error = source.last_error
        if error:
            self.health.source_failed(source.name, error)
        elif source.last_success == now:
            self.health.source_succeeded(source.name, now, source.last_window)

    def dispatch(self, batch: Batch) -> None:
        try:
            batch = apply_transforms(self.transforms, batch)
        except Exception:
            log.exception("a transform failed on a batch from %s; batch dropped", batch.source)
            return
        for name, lane in self.lanes.items():
            try:
                lane.runner.submit(apply_transforms(lane.transforms, batch))
            except Exception:
                log.exception(
                    "sink %s: a transform failed on a batch from %s; dropped for this sink", name, batch.source
                )
                telemetry.DROPPED_POINTS.labels(name, "transform_error").inc(batch.point_count())
        series.shared.sweep(batch.window_end_ns)  # series built from points (plug-ins, label edits) age out too

    # -- one-shot and test helpers ------------------------------------------------------------------
    async def collect_all(self) -> list[Batch]:
        """Collect every source once, now (the `once` command)."""
        batches = []
        for entry in self.sources.values():
            batch = await self.collect(entry)
            if batch is not None:
                batches.append(batch)
        return batches

    def prepare_all(self, batches: list[Batch]) -> dict[str, list[Payload]]:
        """What each sink would send for these batches, without sending (`once --dry-run`)."""
        out: dict[str, list[Payload]] = {}
        for name, lane in self.lanes.items():
            payloads: list[Payload] = []
            for batch in batches:
                payloads += lane.sink.prepare(
                    apply_transforms(lane.transforms, apply_transforms(self.transforms, batch))
                )
            out[name] = payloads
        return out

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until no source is collecting and every sink is idle or waiting on a backoff."""

        async def quiet() -> None:
            while True:
                await asyncio.sleep(0)
                while any(e.collecting for e in self.sources.values()):
                    self._activity.clear()
                    await self._activity.wait()
                await asyncio.gather(*(lane.runner.settle() for lane in self.lanes.values()))
                await asyncio.sleep(0)
                if not any(e.collecting for e in self.sources.values()):
                    return

        async with asyncio.timeout(timeout):
            await quiet()

    # -- reload ---------------------------------------------------------------------------------------
    async def reload(self, config: BridgeConfig) -> None:
        """Apply a new, already validated config; unchanged sources and sinks keep their state.

        Everything new is built and started before anything running is touched: when a
        constructor or a start fails (a plug-in that raises, a sink whose backend refuses
        its key), ConfigError names the component and the running pipeline is as it was.
        The one step that cannot wait: a changed sink with a spool, whose predecessor must
        close the spool before the successor opens it. If a successor then fails to start,
        a sink of the previous config takes the spool back.
        """
        old_sources, old_lanes = self.sources, self.lanes
        lanes: dict[str, SinkLane] = {}
        sources: dict[str, SourceTask] = {}
        where = "transforms"
        try:  # build: constructors only, nothing opened yet
            transforms = build_transforms(config.transforms)
            for name, sink_config in config.sinks.items():
                where = f"sinks.{name}"
                lane = old_lanes.get(name)
                if lane is None or lane.config != sink_config:  # an unchanged sink config includes its transforms
                    lane = self._build_lane(name, sink_config, config)
                lanes[name] = lane
            for name, source_config in _owned(config).items():
                where = f"sources.{name}"
                entry = old_sources.get(name)
                if entry is None or entry.config != source_config:
                    entry = SourceTask(
                        source_config, registry.sources.require(source_config.type)(name, source_config, self.context)
                    )
                sources[name] = entry
        except Exception as exc:
            raise _refused(where, "cannot be built", exc) from exc
        new_lanes = {name: lane for name, lane in lanes.items() if old_lanes.get(name) is not lane}
        handovers = [name for name, lane in new_lanes.items() if _shares_spool(old_lanes.get(name), lane)]
        await self._start_new(
            {name: lane for name, lane in new_lanes.items() if name not in handovers},
            {name: entry for name, entry in sources.items() if old_sources.get(name) is not entry}
            if self.sources_running
            else {},  # a standby's sources start when it takes the Lease
        )
        await self._hand_over(handovers, new_lanes, old_lanes, sources)

        # Nothing can fail from here on: swap, schedule the new sources, retire what the config dropped.
        self.config, self.transforms = config, transforms
        self.lanes, self.sources = lanes, sources
        _report_shard(config, sources)
        for name, entry in old_sources.items():
            if sources.get(name) is not entry:
                await _quietly(f"source {name}", self._stop_source(entry))
                if self.health is not None and name not in sources:
                    self.health.forget(name)
        for name, entry in sources.items():
            if old_sources.get(name) is not entry and self.sources_running:
                self._schedule(name, entry)
        retired = [
            (name, lane) for name, lane in old_lanes.items() if lanes.get(name) is not lane and name not in handovers
        ]
        await asyncio.gather(*(_quietly(f"sink {name}", lane.runner.stop(grace=5.0)) for name, lane in retired))
        if self.health is not None:
            for name in new_lanes:
                self.health.expect_sink(name)
            for name in old_lanes.keys() - lanes.keys():
                self.health.forget(name)
        log.info("config reloaded: %d sources, %d sinks", len(self.sources), len(self.lanes))

    async def _start_new(self, lanes: dict[str, SinkLane], sources: dict[str, SourceTask]) -> None:
        """Start a reload's new sinks and sources; on a failure, close what started and raise ConfigError."""
        started_lanes: list[SinkLane] = []
        started_sources: list[Source] = []
        failed_lane: SinkLane | None = None
        where = ""
        try:
            for name, lane in lanes.items():
                where, failed_lane = f"sinks.{name}", lane
                await lane.runner.start()
                started_lanes.append(lane)
            failed_lane = None
            for name, entry in sources.items():
                where = f"sources.{name}"
                started_sources.append(entry.source)  # before start: a failed start may have opened something
                await entry.source.start()
        except Exception as exc:
            if failed_lane is not None:  # its runner is not running, but its sink's start may have opened something
                await _quietly(where, failed_lane.sink.close())
            for lane in started_lanes:
                await _quietly(f"sink {lane.sink.name}", lane.runner.stop(grace=0))
            for source in started_sources:
                await _quietly(f"source {source.name}", source.close())
            raise _refused(where, "cannot start", exc) from exc

    async def _hand_over(
        self,
        names: list[str],
        new_lanes: dict[str, SinkLane],
        old_lanes: dict[str, SinkLane],
        new_sources: dict[str, SourceTask],
    ) -> None:
        """Changed sinks with a spool: the predecessor flushes and closes it, then the successor opens it.

        Batches dispatched meanwhile wait in the successor. If a successor fails to start, every
        sink handed over so far gets a fresh sink of its previous config (which recovers the spool),
        the reload's other new components are closed, and ConfigError says why.
        """
        for index, name in enumerate(names):
            self.lanes = {**self.lanes, name: new_lanes[name]}
            await _quietly(f"sink {name}", old_lanes[name].runner.stop(grace=5.0))
            try:
                await new_lanes[name].runner.start()
            except Exception as exc:
                error = _refused(f"sinks.{name}", "cannot start", exc)
                await _quietly(f"sink {name}", new_lanes[name].sink.close())
                for back in names[: index + 1]:
                    await self._restore_lane(back, old_lanes[back])
                for other, lane in new_lanes.items():
                    if other not in names:
                        await _quietly(f"sink {other}", lane.runner.stop(grace=0))
                for other, entry in new_sources.items():
                    if self.sources.get(other) is not entry:
                        await _quietly(f"source {other}", entry.source.close())
                raise error from exc

    async def _restore_lane(self, name: str, previous: SinkLane) -> None:
        """Put a sink back on its previous config after a failed hand-over: a new sink and runner, the same spool."""
        await _quietly(f"sink {name}", self.lanes[name].runner.stop(grace=5.0))
        try:
            restored = self._build_lane(name, previous.config, self.config)
            self.lanes = {**self.lanes, name: restored}
            await restored.runner.start()
        except Exception as exc:  # noqa: BLE001  # logged; the reload is refused either way
            log.error("sink %s: cannot start again with its previous config either: %s", name, _reason(exc))

    def _schedule(self, name: str, entry: SourceTask) -> None:
        """Run a started source on its schedule, watched by /readyz."""
        if self.health is not None:
            self.health.expect_source(name, entry.source.interval_seconds)
        entry.task = asyncio.create_task(self._source_loop(entry), name=f"source:{name}")


def _owned(config: BridgeConfig) -> dict[str, Any]:
    """The sources of this replica's shard: the others are never constructed, so they cost nothing here."""
    return {name: config.sources[name] for name in sharding.owned(config.sources, config.sharding)}


def _report_shard(config: BridgeConfig, sources: dict[str, SourceTask]) -> None:
    """Self-metrics of what this replica runs, replaced as a whole (a reload may move sources or the shard)."""
    telemetry.SHARD_SOURCES.clear()
    telemetry.SHARD_SOURCES.labels(f"{config.sharding.index}/{config.sharding.count}").set(len(sources))
    telemetry.SOURCE_OWNED.clear()
    for name in sources:
        telemetry.SOURCE_OWNED.labels(name).set(1)


def _shares_spool(old: SinkLane | None, new: SinkLane) -> bool:
    """A changed sink whose predecessor holds a spool: both must never have it open at once."""
    return old is not None and old.config.delivery.spool_path is not None and new.config.delivery.spool_path is not None


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _refused(where: str, what: str, exc: Exception) -> ConfigError:
    """A build or start failure, as the config problem it is: one line for the log, the traceback at debug."""
    log.debug("reload: %s %s", where, what, exc_info=exc)
    return ConfigError([f"{where}: {what}: {_reason(exc)}"])


async def _quietly(what: str, closing: Any) -> None:
    """Await a stop or close that must not interrupt the reload: a failure is logged, nothing more."""
    try:
        await closing
    except Exception as exc:  # noqa: BLE001  # what is being stopped is no longer used: a line in the log is enough
        log.warning("reload: %s did not stop cleanly: %s", what, _reason(exc))


async def _cancel_all(tasks: list[asyncio.Task[None]], what: str) -> int:
    """Cancel tasks and wait for them, at most STOP_MARGIN_SECONDS; the number that did not end."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=STOP_MARGIN_SECONDS)
    if pending:
        log.error(
            "%d %s task(s) ignored cancellation for %.0f s and were abandoned: %s",
            len(pending),
            what,
            STOP_MARGIN_SECONDS,
            ", ".join(sorted(t.get_name() for t in pending)[:5]),
        )
    return len(pending)


async def _bounded(step: Any, seconds: float, what: str) -> int:
    """Await one stop step for at most `seconds`; 1 if it had to be abandoned, else 0."""
    try:
        async with asyncio.timeout(seconds):
            await step
    except TimeoutError:
        log.error("stopping: %s took longer than %.0f s; abandoned", what, seconds)
        return 1
    return 0
