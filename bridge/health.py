"""Readiness bookkeeping and the one small HTTP port for /metrics, /healthz and /readyz.

Kubernetes (and people) need one answer to "is the bridge doing its job?":
every source scraped successfully within its last two intervals, no sink
whose last outcome was a permanent failure (bad key, rejected payload), no
sink running memory-only because its spool is unusable, and no source whose
windows are all dropped as already forwarded (a window history ahead of the
clock would do that silently). A single failed scrape is not enough to go
unready: the next one may succeed, and flapping readiness would only add noise.

The server is a minimal HTTP/1.1 responder on asyncio: it shares the
pipeline's event loop, needs no thread, and stops with the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder

from bridge import secrets
from bridge.clock import Clock
from bridge.telemetry import REGISTRY

log = logging.getLogger(__name__)

_GRACE_INTERVALS = 2
#: A source is muted when this many successful scrapes in a row found their window already forwarded while no
#: source forwarded any. One is normal (a second scrape in a minute); a second source on one organization
#: always finds duplicates, but the first one's forwards keep resetting its count.
MUTED_AFTER_DUPLICATES = 3
_REQUEST_TIMEOUT = 10.0  # seconds to receive a request head (also the keep-alive idle limit): no client pins a task
_MAX_HEAD = 16 * 1024


@dataclass
class _SourceHealth:
    interval: float
    since: float  # when it was expected: the grace period runs from here
    last_success: float | None = None
    last_error: str | None = None
    duplicates_in_a_row: int = 0
    forwards_seen: int = 0  # windows forwarded by any source, as of this source's last success


class HealthState:
    """What /readyz reports, fed by the pipeline as scrapes and deliveries finish."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sources: dict[str, _SourceHealth] = {}
        self._sink_failures: dict[str, str | None] = {}  # sink -> permanent failure reason, None if last was ok
        self._sink_spools: dict[str, tuple[str, bool]] = {}  # sink -> (spool problem at start, still durable)
        self._was_ready: bool | None = None
        self._forwards = 0  # windows forwarded by every source together

    def expect_source(self, name: str, interval: float) -> None:
        """Start watching a source; it has two intervals from now to succeed once.

        Calling it again (a config reload) updates the interval and keeps the history.
        """
        current = self._sources.get(name)
        if current is None:
            self._sources[name] = _SourceHealth(interval=interval, since=self._clock.now())
        else:
            current.interval = interval

    def expect_sink(self, name: str) -> None:
        self._sink_failures.setdefault(name, None)

    def forget(self, name: str) -> None:
        """Stop watching a source or sink: removed by a reload, or a finite source that is done."""
        self._sources.pop(name, None)
        self._sink_failures.pop(name, None)
        self._sink_spools.pop(name, None)

    def source_succeeded(self, name: str, now: float, window: str | None = None) -> None:
        """A successful scrape; `window` is what became of its window ("forwarded", "duplicate"; None: unwindowed).

        A run of duplicates while no source forwarded anything means the window history is
        ahead of the clock: every window is being dropped as already sent.
        """
        source = self._sources[name]
        source.last_success = now
        source.last_error = None
        if window == "forwarded":
            self._forwards += 1
        if self._forwards > source.forwards_seen:
            source.duplicates_in_a_row = 0
        elif window == "duplicate":
            source.duplicates_in_a_row += 1
        source.forwards_seen = self._forwards

    def source_failed(self, name: str, reason: str) -> None:
        """Remember why, for the /readyz text; readiness changes only when successes stop for too long."""
        self._sources[name].last_error = reason

    def sink_succeeded(self, name: str) -> None:
        self._sink_failures[name] = None

    def sink_failed_permanently(self, name: str, reason: str) -> None:
        self._sink_failures[name] = reason

    def sink_spool(self, name: str, problem: str | None, *, durable: bool) -> None:
        """What went wrong with a sink's spool at start (None: nothing).

        Memory-only (not durable) makes the bridge unready, so operators notice while it keeps
        forwarding; a damaged file moved aside for a fresh spool is only a note on /readyz.
        """
        if problem is None:
            self._sink_spools.pop(name, None)
        else:
            self._sink_spools[name] = (problem, durable)

    def notes(self) -> list[str]:
        """Things an operator should know that do not make the bridge unready."""
        return [
            secrets.redact(f"sink {name}: {problem}")
            for name, (problem, durable) in sorted(self._sink_spools.items())
            if durable
        ]

    def ready(self) -> tuple[bool, list[str]]:
        """(ready, reasons): each reason names one source or sink that keeps the bridge unready."""
        now = self._clock.now()
        reasons: list[str] = []
        for name, source in sorted(self._sources.items()):
            deadline = _GRACE_INTERVALS * source.interval
            if source.last_success is None:
                if now - source.since > deadline:
                    reasons.append(
                        f"source {name}: no successful scrape since start ({_age(now - source.since)} ago)"
                        + _because(source.last_error)
                    )
            elif now - source.last_success > deadline:
                reasons.append(
                    f"source {name}: last successful scrape {_age(now - source.last_success)} ago"
                    + _because(source.last_error)
                )
            if source.duplicates_in_a_row >= MUTED_AFTER_DUPLICATES:
                reasons.append(
                    f"source {name}: its last {source.duplicates_in_a_row} windows were all dropped as "
                    "already forwarded, and no source forwarded one meanwhile (is the window history "
                    "in state_path ahead of the clock?)"
                )
        for name, failure in sorted(self._sink_failures.items()):
            if failure is not None:
                reasons.append(f"sink {name}: failing permanently: {failure}")
        for name, (problem, durable) in sorted(self._sink_spools.items()):
            if not durable:
                reasons.append(f"sink {name}: {problem}")
        reasons = [secrets.redact(r) for r in reasons]
        ready = not reasons
        if ready != self._was_ready:
            if ready:
                log.info("ready")
            else:
                log.warning("not ready: %s", "; ".join(reasons))
            self._was_ready = ready
        return ready, reasons


def _age(seconds: float) -> str:
    return f"{seconds:.0f}s"


def _because(error: str | None) -> str:
    return f" (last error: {error})" if error else ""


def parse_listen(listen: str) -> tuple[str | None, int]:
    """'host:port', '[v6]:port' or ':port' (all interfaces) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {listen!r} is not host:port")
    host = host.strip("[]")
    return host or None, int(port)


class HealthServer:
    """GET /metrics, /healthz, /readyz on one port; every other path is a 404."""

    def __init__(self, listen: str, state: HealthState) -> None:
        self._host, self._port = parse_listen(listen)
        self._state = state
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def port(self) -> int:
        """The bound port (the real one when listen asked for port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("health server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=_MAX_HEAD)
        log.info("health server listening on %s:%d", self._host or "*", self.port)

    async def stop(self) -> None:
        """Close the listener and every open connection (Python 3.11's wait_closed does not wait for them).

        Closing a connection's transport wakes its handler with EOF, so handlers end normally.
        """
        if self._server is None:
            return
        self._server.close()
        for writer in self._connections.values():
            writer.close()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while await self._one_request(reader, writer):
                pass
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away or misbehaved: nothing to answer
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True if the connection may serve another (HTTP/1.1 keep-alive)."""
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return False  # clean close between requests
            raise
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await self._respond(writer, 400, b"bad request\n", keep_alive=False)
            return False
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):  # any body stays unread, so the connection cannot be reused
            await self._respond(writer, 405, b"method not allowed\n", keep_alive=False, extra={"Allow": "GET, HEAD"})
            return False
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            await self._respond(writer, 400, b"a GET with a body is not supported\n", keep_alive=False)
            return False
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        status, body, content_type = self._route(target.split("?", 1)[0], headers.get("accept", ""))
        await self._respond(writer, status, body, keep_alive, content_type=content_type, head_only=method == "HEAD")
        return keep_alive

    def _route(self, path: str, accept: str) -> tuple[int, bytes, str]:
        text = "text/plain; charset=utf-8"
        if path == "/metrics":
            encoder, content_type = choose_encoder(accept)  # OpenMetrics when the scraper asks for it
            # redacted too: a label value must never be the way a secret leaves the process
            return 200, secrets.redact(encoder(REGISTRY).decode()).encode(), content_type
        if path == "/healthz":
            return 200, b"ok\n", text
        if path == "/readyz":
            ready, reasons = self._state.ready()
            lines = (["ready"] if ready else reasons) + self._state.notes()
            return 200 if ready else 503, "".join(f"{line}\n" for line in lines).encode(), text
        return 404, b"not found: try /metrics, /healthz or /readyz\n", text

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        keep_alive: bool,
        *,
        content_type: str = "text/plain; charset=utf-8",
        head_only: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            503: "Service Unavailable",
        }[status]
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "Connection": "keep-alive" if keep_alive else "close",
            **(extra or {}),
        }
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode("latin-1") + (b"" if head_only else body))
        await writer.drain()
