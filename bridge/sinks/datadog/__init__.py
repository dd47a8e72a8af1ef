"""The `datadog` sink: v2 series (and service checks) with the right types, windows, limits and costs.

Split as Vector's datadog metrics sink: config (where and how), normalize
(what each metric means on Datadog's side, per-series state), encode (pure
JSON and compression under the intake's size limits), transport (httpx and
the meaning of each HTTP answer), control (datadog-api-client for the key
check). `prepare` fixes each payload's bytes once, so a retry re-sends the
same timestamps and values and Datadog's last-value-per-timestamp storage
never double counts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime

from bridge import gcpause, registry, telemetry
from bridge.context import Context
from bridge.model import Batch
from bridge.sinks.base import Payload, PermanentError, RetryableError, Sink
from bridge.sinks.datadog import encode
from bridge.sinks.datadog.config import DatadogSinkConfig
from bridge.sinks.datadog.control import validate_api_key
from bridge.sinks.datadog.normalize import MAX_PAST_SECONDS, Normalizer
from bridge.sinks.datadog.transport import PayloadTooLarge, Transport

log = logging.getLogger(__name__)

__all__ = ["DatadogSink", "DatadogSinkConfig"]


@registry.sinks.register("datadog")
class DatadogSink(Sink):
    Config = DatadogSinkConfig
    #: Datadog refuses points older than an hour; ours are stamped at their window start, a window before its end.
    default_max_age_seconds = MAX_PAST_SECONDS - 60

    def __init__(self, name: str, config: DatadogSinkConfig, context: Context) -> None:
        super().__init__(name, config, context)
        self.normalizer = Normalizer(config, context.clock)
        if config.max_series is not None:
            log.warning("sink %s: max_series is no longer used; the series table's bound applies (series:)", name)
        self.transport = Transport(config.base_url, config.resolved_api_key, config.timeout_seconds, context.clock)

    async def start(self) -> None:
        """Open the client; with `validate_api_key`, a key Datadog rejects stops the start-up."""
        await self.transport.start()
        if not self.config.validate_api_key:
            return
        try:
            await validate_api_key(self.config.base_url, self.config.resolved_api_key, self.config.timeout_seconds)
        except RetryableError as exc:  # Datadog unreachable right now: delivery will retry anyway
            log.warning("sink %s: could not validate the Datadog API key (%s); starting anyway", self.name, exc)
        except PermanentError as exc:
            raise PermanentError(exc.reason, f"sink {self.name}: {exc.detail} at {self.config.base_url}") from None
        else:
            log.info("sink %s: Datadog API key is valid for %s", self.name, self.config.base_url)

    async def close(self) -> None:
        await self.transport.close()

    @gcpause.paused
    def prepare(self, batch: Batch) -> list[Payload]:
        normalized = self.normalizer.normalize(batch)
        packed = encode.pack_samples(normalized.samples, self.config.compression, self.config.compression_level)
        if packed.oversized:
            normalized.dropped["too_large"] += packed.oversized
        for reason, count in normalized.dropped.items():
            telemetry.DROPPED_POINTS.labels(self.name, reason).inc(count)

        series_meta = {"path": encode.SERIES_PATH, "codec": self.config.compression}
        payloads = [
            Payload(body.body, normalized.window_end_ns, body.series, dict(series_meta)) for body in packed.bodies
        ]
        if normalized.checks:
            body = encode.service_checks_body(normalized.checks)
            meta = {"path": encode.CHECK_RUN_PATH, "codec": "none"}
            payloads.append(Payload(body, normalized.window_end_ns, len(normalized.checks), meta))
        return payloads

    async def deliver(self, payload: Payload) -> None:
        await self._post(payload.meta["path"], payload.body, payload.meta["codec"])

    async def _post(self, path: str, body: bytes, codec: str) -> None:
        """POST one body; after a 413, halve a series body and send both halves (recursively)."""
        try:
            await self.transport.post(path, body, encode.CONTENT_ENCODING[codec])
        except PayloadTooLarge:
            if path != encode.SERIES_PATH:
                raise
            halves = encode.split_series_body(body, codec, self.config.compression_level)
            if halves is None:
                raise
            telemetry.DATADOG_SPLITS.labels(self.name).inc()
            for half in halves:
                await self._post(path, half.body, codec)

    def describe(self, payload: Payload) -> str:
        """The request line, then the exact JSON body (decompressed)."""
        codec = payload.meta["codec"]
        path = payload.meta["path"]
        what = "series" if path == encode.SERIES_PATH else "service checks"
        header = (
            f"POST {self.config.base_url}{path} ({payload.points} {what}, "
            f"{len(payload.body)} bytes, Content-Encoding: {encode.CONTENT_ENCODING[codec] or 'identity'})"
        )
        return f"{header}\n{encode.decompress(payload.body, codec).decode()}"

    def summary(self, payloads: list[Payload]) -> str:
        """Distinct custom metrics (name + tag set [+ host]) per window: the number Datadog bills."""
        per_window: defaultdict[int, set[tuple[str, frozenset[str]]]] = defaultdict(set)
        checks = 0
        for payload in payloads:
            decoded = encode.decode_body(payload.body, payload.meta["codec"])
            if payload.meta["path"] != encode.SERIES_PATH:
                checks += len(decoded)
                continue
            for series in decoded["series"]:
                identity = frozenset(series.get("tags", ())) | {
                    f"host:{r['name']}" for r in series.get("resources", ()) if r.get("type") == "host"
                }
                for point in series["points"]:
                    per_window[point["timestamp"]].add((series["metric"], identity))
        windows = ", ".join(
            f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%dT%H:%M:%SZ}: {len(metrics)}"
            for ts, metrics in sorted(per_window.items())
        )
        busiest = max((len(metrics) for metrics in per_window.values()), default=0)
        return (
            f"{self.name}: {busiest} distinct custom metrics (name + tag set) per window"
            f" [{windows or 'no series'}]; {checks} service checks"
        )
