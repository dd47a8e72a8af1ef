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

from bridge import registry, telemetry
from bridge.config import BridgeConfig, SinkConfig, TransformConfig
from bridge.context import Context
from bridge.delivery import SinkRunner
from bridge.model import Batch
from bridge.sinks.base import Payload, Sink
from bridge.sources.base import Source
from bridge.transforms.base import Transform

log = logging.getLogger(__name__)


def build_transforms(configs: list[TransformConfig]) -> list[Transform]:
    return [registry.transforms.get(c.type)(c) for c in configs]


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
        self.health = self.context.health
        self.transforms = build_transforms(config.transforms)
        self.lanes = {name: self._build_lane(name, sink_config, config) for name, sink_config in config.sinks.items()}
        self.sources = {
            name: SourceTask(source_config, registry.sources.get(source_config.type)(name, source_config, self.context))
            for name, source_config in config.sources.items()
        }
        self._activity = asyncio.Event()

    def _build_lane(self, name: str, sink_config: SinkConfig, config: BridgeConfig) -> SinkLane:
        sink = registry.sinks.get(sink_config.type)(name, sink_config, self.context)
        transform_configs = config.sink_transforms.get(name, [])
        runner = SinkRunner(sink, sink_config.delivery, self.context)
        return SinkLane(sink_config, transform_configs, build_transforms(transform_configs), runner)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, *, schedule: bool = True) -> None:
        """Start sinks first (so nothing scraped waits for them), then sources and their schedules."""
        for name, lane in self.lanes.items():
            await lane.runner.start()
            if self.health is not None:
                self.health.expect_sink(name)
        for name, entry in self.sources.items():
            await self._start_source(name, entry, schedule)

    async def _start_source(self, name: str, entry: SourceTask, schedule: bool) -> None:
        await entry.source.start()
        if self.health is not None:
            self.health.expect_source(name, getattr(entry.source.config, "interval_seconds", 60.0))
        if schedule:
            entry.task = asyncio.create_task(self._source_loop(entry), name=f"source:{name}")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop scraping, give sinks `grace` seconds to flush, release everything."""
        for entry in self.sources.values():
            await self._stop_source(entry)
        await asyncio.gather(*(lane.runner.stop(grace) for lane in self.lanes.values()))

    async def _stop_source(self, entry: SourceTask) -> None:
        if entry.task is not None:
            entry.task.cancel()
            await asyncio.gather(entry.task, return_exceptions=True)
            entry.task = None
        await entry.source.close()

    # -- scheduling -----------------------------------------------------------------------------
    async def _source_loop(self, entry: SourceTask) -> None:
        clock = self.context.clock
        while True:
            due = entry.source.next_due(clock.now())
            if due is None:  # a finite source (a `file` read once) is done: not a readiness problem
                if self.health is not None:
                    self.health.forget(entry.source.name)
                return
            await clock.sleep_until(due)
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
        error = getattr(source, "last_error", None)
        if error:
            self.health.source_failed(source.name, error)
        elif getattr(source, "last_success", None) == now:
            self.health.source_succeeded(source.name, now)

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
                log.exception("sink %s: a transform failed on a batch from %s; dropped for this sink", name, batch.source)
                telemetry.DROPPED_POINTS.labels(name, "transform_error").inc(batch.point_count())

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
                payloads += lane.sink.prepare(apply_transforms(lane.transforms, apply_transforms(self.transforms, batch)))
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

        await asyncio.wait_for(quiet(), timeout)

    # -- reload ---------------------------------------------------------------------------------------
    async def reload(self, config: BridgeConfig) -> None:
        """Apply a new, already validated config; unchanged sources and sinks keep their state."""
        old_sources, old_lanes = self.sources, self.lanes
        self.config = config
        self.transforms = build_transforms(config.transforms)
        new_lanes: dict[str, SinkLane] = {}
        for name, sink_config in config.sinks.items():
            lane = old_lanes.get(name)
            if lane is not None and lane.config == sink_config:
                lane.transform_configs = config.sink_transforms.get(name, [])
                lane.transforms = build_transforms(lane.transform_configs)
                new_lanes[name] = lane
            else:
                new_lanes[name] = self._build_lane(name, sink_config, config)
        # Batches go to the new lanes from here on (a runner not started yet holds them). A replaced
        # runner stops first, flushing and leaving the rest in its spool, so its successor recovers them.
        self.lanes = new_lanes
        for name, lane in old_lanes.items():
            if new_lanes.get(name) is not lane:
                await lane.runner.stop(grace=5.0)
                if self.health is not None and name not in new_lanes:
                    self.health.forget(name)
        for name, lane in new_lanes.items():
            if old_lanes.get(name) is not lane:
                await lane.runner.start()
                if self.health is not None:
                    self.health.expect_sink(name)
        new_sources: dict[str, SourceTask] = {}
        for name, source_config in config.sources.items():
            entry = old_sources.get(name)
            if entry is not None and entry.config == source_config:
                new_sources[name] = entry
                continue
            entry = SourceTask(source_config, registry.sources.get(source_config.type)(name, source_config, self.context))
            await self._start_source(name, entry, schedule=True)
            new_sources[name] = entry
        for name, entry in old_sources.items():
            if new_sources.get(name) is not entry:
                await self._stop_source(entry)
                if self.health is not None and name not in new_sources:
                    self.health.forget(name)
        self.sources = new_sources
        log.info("config reloaded: %d sources, %d sinks", len(self.sources), len(self.lanes))
