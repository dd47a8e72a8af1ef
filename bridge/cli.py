"""The `metrics-bridge` command: run | validate | once | check | demo | dashboards."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge import __version__, secrets, sharding
from bridge.config import BridgeConfig, ConfigError, load_config
from bridge.context import Context, WindowLedger
from bridge.telemetry import setup_logging

if TYPE_CHECKING:
    from bridge.ha import LeaseClient, Standby
    from bridge.model import Batch
    from bridge.pipeline import Pipeline

log = logging.getLogger("bridge")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=None, help="overrides telemetry.log_level"
    )
    parser.add_argument(
        "--log-format", choices=["console", "json"], default=None, help="overrides telemetry.log_format"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics-bridge",
        description="Pull Prometheus-format metrics (the Cerebras Metrics API first) and push them to OTLP and "
        "Datadog.",
    )
    parser.add_argument("--version", action="version", version=f"metrics-bridge {__version__}")
    _common(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the pipeline (the embedded demo config without -c)")
    run.add_argument("-c", "--config", help="YAML config file")
    run.add_argument("--grace", type=float, default=10.0, help="seconds to flush sinks on SIGTERM (default 10)")
    demo = commands.add_parser("demo", help="run the embedded demo: the simulator to the console")
    demo.add_argument("--grace", type=float, default=2.0, help=argparse.SUPPRESS)
    validate = commands.add_parser("validate", help="check a config file without touching the network")
    validate.add_argument("-c", "--config", required=True)
    once = commands.add_parser("once", help="collect every source once and send (or print) the result")
    once.add_argument("-c", "--config", help="YAML config file (embedded demo if omitted)")
    once.add_argument("--dry-run", action="store_true", help="print what each sink would send; send nothing")
    once.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for delivery (default 30)")
    check = commands.add_parser("check", help="one real request per source and sink: ok or failing, and why")
    check.add_argument("-c", "--config", required=True)
    check.add_argument("--json", action="store_true", help="one JSON object per component, one per line")
    dashboards = commands.add_parser("dashboards", help="the Cerebras dashboards and alerts (dashboards/)")
    actions = dashboards.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="print a backend's files")
    export.add_argument("target", choices=["grafana", "prometheus-rules", "datadog"])
    apply = actions.add_parser("apply", help="create or update them in the backend (DD_API_KEY, DD_APP_KEY, DD_SITE)")
    apply.add_argument("target", choices=["datadog"])
    for sub in (run, demo, validate, once, check, dashboards):
        _common(sub)
    return parser


def _setup_logging(args: argparse.Namespace, config: BridgeConfig | None) -> None:
    """Flag, then the config's telemetry keys, then METRICS_BRIDGE_LOG_FORMAT (the image sets json), then console."""
    level = args.log_level or (config.telemetry.log_level if config else "info")
    configured = config.telemetry.log_format if config and "log_format" in config.telemetry.model_fields_set else None
    fmt = args.log_format or configured or os.environ.get("METRICS_BRIDGE_LOG_FORMAT") or "console"
    setup_logging(level, fmt)


def _report_config_error(error: ConfigError) -> int:
    print("invalid configuration:", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # a ConfigError is main's to report
    print(
        f"{args.config}: ok ({len(config.sources)} source(s): {', '.join(config.sources)}; "
        f"{len(config.sinks)} sink(s): {', '.join(config.sinks)})"
    )
    shard = config.sharding
    if shard.count > 1:  # config or environment: the replica this would be under `run`
        owned = sharding.owned(config.sources, shard)
        share = f"{len(owned)} of {len(config.sources)} source(s)"
        print(f"shard {shard.index}/{shard.count}: runs {share}: {', '.join(owned)}")
    return 0


async def _check(config: BridgeConfig, as_json: bool) -> int:
    """Exit 0 when every source and sink answered and accepted its credentials, else 1."""
    from bridge.check import check

    outcomes = await check(config)
    for outcome in outcomes:
        print(json.dumps(outcome.as_dict()) if as_json else outcome.line())
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def cmd_dashboards(args: argparse.Namespace) -> int:
    from bridge import dashboards

    if args.action == "export":
        sys.stdout.write(dashboards.export(args.target))
        return 0
    from bridge.dashboards.apply import apply_datadog

    for line in apply_datadog():
        print(line)
    return 0


async def _once(config: BridgeConfig, dry_run: bool, timeout: float) -> int:
    from bridge.pipeline import Pipeline

    pipeline = Pipeline(config, Context(windows=WindowLedger(None if dry_run else config.state_path)))
    if dry_run:
        for entry in pipeline.sources.values():
            await entry.source.start()
        try:
            batches = [
                b
                for b in [
                    await entry.source.collect(pipeline.context.clock.now()) for entry in pipeline.sources.values()
                ]
                if b is not None
            ]
        finally:
            for entry in pipeline.sources.values():
                await entry.source.close()
        for name, payloads in pipeline.prepare_all(batches).items():
            sink = pipeline.lanes[name].sink
            print(f"=== sink {name} ({sink.type_name}): {len(payloads)} payload(s)")
            for payload in payloads:
                print(sink.describe(payload))
            summary = sink.summary(payloads)
            if summary:
                print(summary)
        _print_cardinality(pipeline, batches)
        return 0 if batches else 3
    await pipeline.start(schedule=False)
    try:
        batches = await pipeline.collect_all()
        await pipeline.settle(timeout)
    finally:
        await pipeline.stop(grace=timeout)
    return 0 if batches else 3


def _print_cardinality(pipeline: Pipeline, batches: list[Batch]) -> None:
    """Series per family as the sources made them, then what each `limit` transform cut from them."""
    from bridge.transforms.limit import Limit

    families: Counter[str] = Counter()
    for batch in batches:
        for metric in batch.metrics:
            families[metric.name] += len(metric)
    print(f"=== series per family ({sum(families.values())} series, before transforms)")
    for family, count in sorted(families.items(), key=lambda item: (-item[1], item[0])):
        print(f"{count:>8}  {family}")
    limits = [*pipeline.transforms, *(t for lane in pipeline.lanes.values() for t in lane.transforms)]
    for limit in (t for t in limits if isinstance(t, Limit)):
        where = "transforms" if limit.place == "*" else f"sinks.{limit.place}.transforms"
        cut = ", ".join(f"{family} ({count} series dropped)" for family, count in sorted(limit.cut.items()))
        print(f"=== limit in {where}: {'cuts ' + cut if cut else 'cuts nothing'}")


def _a_few(names: Sequence[str], noun: str, shown: int = 3) -> str:
    """`1000 sources (s0000, s0001, s0002, ... 997 more)`: the start-up line stays short however big the config."""
    more = f", ... {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} {noun}{'' if len(names) == 1 else 's'} ({', '.join(names[:shown])}{more})"


async def _run(config: BridgeConfig, config_path: str | None, grace: float) -> int:
    from bridge.health import HealthServer, HealthState
    from bridge.pipeline import Pipeline

    lease_client = None
    if config.ha.enabled:  # a wrong setup stops here, before anything starts
        from bridge.ha import LeaseClient

        lease_client = await LeaseClient.from_config(config.ha)
    context = Context(windows=WindowLedger(config.state_path))
    context.health = HealthState(context.clock)
    health_server = HealthServer(config.telemetry.listen, context.health) if config.telemetry.listen else None
    pipeline = Pipeline(config, context)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    reloading = asyncio.Lock()  # one reload at a time, and none while the pipeline starts
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        """Validate and build the new config, then swap; on any failure the running pipeline is kept."""
        async with reloading:
            if stop.is_set():
                return
            try:
                await pipeline.reload(load_config(config_path))
            except ConfigError as error:
                log.error("reload refused, keeping the running config: %s", "; ".join(error.problems))
            except Exception:  # a bug: logged here, never left as an unretrieved task exception
                log.exception("reload failed")

    def on_sighup() -> None:
        task = asyncio.create_task(reload(), name="reload")
        reloads.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    if health_server is not None:
        await health_server.start()
    async with reloading:
        await pipeline.start(sources=not config.ha.enabled)
    standby = _start_standby(config, lease_client, context, pipeline, reloading) if lease_client else None
    shard = config.sharding
    log.info(
        "metrics-bridge %s running %s: %s -> %s%s",
        __version__,
        config.path,
        _a_few(list(pipeline.sources), "source"),
        _a_few(list(config.sinks), "sink"),
        f" (shard {shard.index}/{shard.count} of {len(config.sources)} sources)" if shard.count > 1 else "",
    )
    await stop.wait()
    if reloads:  # a reload under way gets the grace period to finish, then is cancelled
        _, unfinished = await asyncio.wait(reloads, timeout=grace)
        for task in unfinished:
            task.cancel()
    if standby is not None:
        await standby.stop()
    log.info("stopping: flushing sinks for up to %.0f s", grace)
    stuck = await pipeline.stop(grace)
    if health_server is not None:
        await health_server.stop()
    if stuck:  # asyncio.run would wait on them forever while cleaning up: leave now
        log.error("stopped with %d component(s) still busy; exiting anyway", stuck)
        logging.shutdown()
        os._exit(1)
    return 0


class _StandbyTask:
    """The warm standby's loop (bridge/ha.py) and its Lease client, for _run to stop."""

    def __init__(self, standby: Standby, client: LeaseClient) -> None:
        self.standby = standby
        self.client = client
        self.task = asyncio.create_task(standby.run(), name="ha")

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        if self.standby.active:  # hand over at the standby's next poll instead of after the lease duration
            from bridge.ha import LeaseError

            try:
                await asyncio.wait_for(self.standby.elector.release(), 5.0)
            except (LeaseError, TimeoutError) as exc:  # the Lease then simply expires
                log.warning("ha: Lease not released (%s); it expires on its own", exc)
        await self.client.close()


def _start_standby(
    config: BridgeConfig, client: LeaseClient, context: Context, pipeline: Pipeline, reloading: asyncio.Lock
) -> _StandbyTask:
    from bridge import ha

    assert config.ha.identity is not None
    elector = ha.LeaseElector(client, config.ha.identity, config.ha.lease_duration_seconds, context.clock)

    async def activate() -> None:
        async with reloading:
            await pipeline.start_sources()

    async def deactivate() -> None:
        async with reloading:
            await pipeline.stop_sources()

    return _StandbyTask(ha.Standby(config.ha, elector, context.windows, activate, deactivate), client)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    config_path = getattr(args, "config", None)
    _setup_logging(args, None)  # redacting before loading: a library may log while the config is read
    try:
        if command == "validate":
            return cmd_validate(args)
        if command == "dashboards":
            return cmd_dashboards(args)
        config = load_config(config_path)
        _setup_logging(args, config)
        if command == "once":
            return asyncio.run(_once(config, args.dry_run, args.timeout))
        if command == "check":
            return asyncio.run(_check(config, args.json))
        return asyncio.run(_run(config, config_path, getattr(args, "grace", 10.0)))
    except ConfigError as error:
        return _report_config_error(error)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a raw traceback (which could carry a secret) for the user
        log.debug("unexpected error", exc_info=True)
        print(f"metrics-bridge: error: {secrets.redact(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
