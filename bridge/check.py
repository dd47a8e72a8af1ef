"""`metrics-bridge check`: prove a config works before it is deployed, and say what to fix.

Each source makes one real request (from its own request budget, as a scrape
would); each sink makes one harmless authenticated call through its own transport
(Datadog: API-key validation; OTLP: an empty export; remote write: an empty write
request; jsonl: the file is writable). One outcome per component, with advice
in words; every text goes through the secret redactor.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from bridge import registry, secrets
from bridge.config import BridgeConfig
from bridge.context import Context, WindowLedger
from bridge.model import NS_PER_S
from bridge.sinks.base import DeliveryError, Payload, Sink
from bridge.sources.base import Source
from bridge.sources.prometheus import ScrapeSource
from bridge.sources.scrape import ScrapeError

#: Past this, a component that has not answered is reported as a timeout (its own timeout usually comes first).
CHECK_DEADLINE_SECONDS = 60.0
_UNKNOWN_CA = ("CERTIFICATE_VERIFY_FAILED", "unable to get local issuer certificate", "self-signed", "self signed")


@dataclass
class Outcome:
    component: str  # "source cb", "sink out"
    ok: bool
    latency_seconds: float
    detail: str  # what was found: status, families, window age; or the failure
    advice: str = ""  # what to do about a failure, in words

    def line(self) -> str:
        state = "ok" if self.ok else "failing"
        advice = f"; {self.advice}" if self.advice else ""
        return f"{self.component}: {state} ({self.latency_seconds * 1000:.0f} ms) {self.detail}{advice}"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def advise(reason: str, detail: str, address: str, role: str, credentials: str) -> str:
    """Advice for a failed exchange (TLS, refused, timeout, rejected credentials, not found); "" when none fits."""
    text = f"{reason} {detail}"
    if any(marker.lower() in text.lower() for marker in _UNKNOWN_CA):
        return "TLS: certificate signed by an unknown authority: set tls.ca_file"
    if "refused" in text.lower():
        return f"connection refused: is the {role} listening on {address}?"
    if reason in ("timeout", "grpc_deadline_exceeded"):
        return f"no answer in time: is {address} reachable, and is timeout_seconds long enough?"
    if reason in ("http_401", "http_403", "grpc_unauthenticated", "grpc_permission_denied"):
        return f"the credentials were rejected: check {credentials}"
    if reason == "http_404":
        return f"not found: check the URL of the {role}"
    return ""


def _address(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"//{url}")
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    return f"{parts.hostname}:{port}"


async def check_source(source: Source, now: float) -> Outcome:
    component = f"source {source.name}"
    if not isinstance(source, ScrapeSource):
        return Outcome(component, True, 0.0, "not checked: a plug-in source")
    started = time.monotonic()
    try:
        await source.start()
        async with asyncio.timeout(CHECK_DEADLINE_SECONDS):
            batch, window = await source.probe(now)
    except ScrapeError as error:
        explained = source.explain(error) if source.preset and error.status in source.preset.explanations else ""
        advice = explained or advise(error.outcome, str(error), _address(source.url), "endpoint", "auth")
        return Outcome(component, False, time.monotonic() - started, str(error), advice)
    except TimeoutError:
        advice = advise("timeout", "", _address(source.url), "endpoint", "")
        return Outcome(component, False, time.monotonic() - started, "timeout", advice)
    finally:
        await source.close()
    families = len({m.name for m in batch.metrics})
    series = batch.point_count()
    found = f"body parsed: {series} series in {families} families"
    if source.config.windowed:
        found += f"; window ended {now - window.end_ns / NS_PER_S:.0f} s ago"
    return Outcome(component, True, time.monotonic() - started, found)


async def _datadog(sink: Sink) -> str:
    from bridge.sinks.datadog.control import validate_api_key

    config = sink.config
    await validate_api_key(config.base_url, config.resolved_api_key, config.timeout_seconds)
    return f"API key valid at {config.base_url}"


async def _empty_request(sink: Sink, body: bytes) -> str:
    await sink.start()
    try:
        await sink.deliver(Payload(body, 0, 0))
    finally:
        await sink.close()
    connection = sink.connection  # type: ignore[attr-defined]  # OTLP and remote-write sinks have one
    return f"an empty request accepted by {connection.url}"


async def _otlp(sink: Sink) -> str:
    return await _empty_request(sink, b"")  # an ExportMetricsServiceRequest with no resource metrics


async def _remote_write(sink: Sink) -> str:
    from bridge.sinks.remote_write import compress

    return await _empty_request(sink, compress(b""))  # a WriteRequest with no series


def _writable(path: str) -> None:
    """The file, or the directory it would be created in, is writable by this process (nothing is created)."""
    existing = os.path.exists(path)
    if not os.access(path if existing else os.path.dirname(os.path.abspath(path)), os.W_OK):
        raise DeliveryError("not_writable", f"{path} is not writable" if existing else f"cannot create {path}")


async def _jsonl(sink: Sink) -> str:
    await asyncio.to_thread(_writable, sink.config.path)
    return f"{sink.config.path} is writable"


async def _console(sink: Sink) -> str:
    return "writes to standard output"


_PROBES: dict[str, Callable[[Sink], Awaitable[str]]] = {
    "bridge.sinks.datadog": _datadog,
    "bridge.sinks.otlp": _otlp,
    "bridge.sinks.remote_write": _remote_write,
    "bridge.sinks.jsonl": _jsonl,
    "bridge.sinks.console": _console,
}
_ROLES = {"bridge.sinks.otlp": "collector", "bridge.sinks.remote_write": "receiver", "bridge.sinks.datadog": "API"}
_CREDENTIALS = {
    "bridge.sinks.datadog": "DD_API_KEY or api_key",
    "bridge.sinks.otlp": "the sink's headers (or the Grafana Cloud instance id and token)",
    "bridge.sinks.remote_write": "the sink's auth",
}


async def check_sink(sink: Sink) -> Outcome:
    component = f"sink {sink.name}"
    module = registry.BUILTIN_SINKS.get(sink.type_name, "")
    probe = _PROBES.get(module)
    if probe is None:
        return Outcome(component, True, 0.0, "not checked: a plug-in sink")
    started = time.monotonic()
    connection = getattr(sink, "connection", None)
    address = _address(connection.url if connection is not None else getattr(sink.config, "base_url", ""))
    role = _ROLES.get(module, "server")
    try:
        async with asyncio.timeout(CHECK_DEADLINE_SECONDS):
            found = await probe(sink)
    except DeliveryError as error:
        advice = advise(error.reason, error.detail, address, role, _CREDENTIALS.get(module, ""))
        return Outcome(component, False, time.monotonic() - started, str(error), advice)
    except TimeoutError:
        advice = advise("timeout", "", address, role, "")
        return Outcome(component, False, time.monotonic() - started, "timeout", advice)
    return Outcome(component, True, time.monotonic() - started, found)


async def check(config: BridgeConfig) -> list[Outcome]:
    """Every source, then every sink; never raises for a component that fails."""
    context = Context(windows=WindowLedger(None))
    context.series = config.series
    now = context.clock.now()
    outcomes = []
    for name, source_config in config.sources.items():
        source = registry.sources.require(source_config.type)(name, source_config, context)
        outcomes.append(await check_source(source, now))
    for name, sink_config in config.sinks.items():
        sink = registry.sinks.require(sink_config.type)(name, sink_config, context)
        outcomes.append(await check_sink(sink))
    for outcome in outcomes:
        outcome.detail, outcome.advice = secrets.redact(outcome.detail), secrets.redact(outcome.advice)
    return outcomes
