"""One attempt to send one encoded request, and what its outcome means.

Both transports send the same ExportMetricsServiceRequest bytes and turn every
failure into a RetryableError or a PermanentError by the OTLP spec's rules, so
the delivery layer above is the only retry loop (the SDK exporters' own
blocking retry loops are not used). Retryable: gRPC CANCELLED,
DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and
RESOURCE_EXHAUSTED when the server sends RetryInfo; HTTP 429, 502, 503, 504;
timeouts and connection errors. Everything else is permanent. The server's
requested delay (RetryInfo, Retry-After) becomes `retry_after`, never more
than MAX_SERVER_DELAY. A success is the partial success the server reports:
(rejected points, message), read by bridge/sinks/otlp/replies.py.

`timeout_seconds` bounds a whole attempt: gRPC's per-call deadline, and a
total deadline around the HTTP exchange (httpx's own timeouts are per read).
Only as much of an answer is read as the protocol needs.

gRPC is spoken by bridge/sinks/otlp/unary.py on h2, not grpcio (14.4 MB
resident once a channel exists); h2 is imported when a GrpcTransport is built,
not with this module.
"""

from __future__ import annotations

import abc
import gzip
import importlib
import logging
import os
from typing import TYPE_CHECKING, ClassVar

import httpx

from bridge.clock import Clock
from bridge.http import (
    MAX_SERVER_DELAY,
    USER_AGENT,
    ExchangeError,
    Reply,
    excerpt,
    post_bounded,
    retry_after,
    tls_context,
)
from bridge.sinks.base import DeliveryError, PermanentError, RetryableError
from bridge.sinks.otlp.config import Connection
from bridge.sinks.otlp.replies import WireError, partial_success, read_status

if TYPE_CHECKING:
    from bridge.sinks.otlp.unary import CallError, Channel

log = logging.getLogger(__name__)

RETRYABLE_GRPC_CODES = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})
#: Bytes of a 2xx answer read for its partial success: a rejected-points count and a message fit many times over.
PARTIAL_SUCCESS_LIMIT = 64 * 1024
EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
_DETAIL_LIMIT = 300

#: What a server that took the request reports: the points it rejected (as sent, possibly nonsense) and why.
PartialSuccess = tuple[int, str]
_NO_REJECTIONS: PartialSuccess = (0, "")


def failure(reason: str, detail: str, *, retryable: bool, retry_after: float | None = None) -> DeliveryError:
    error_type = RetryableError if retryable else PermanentError
    return error_type(reason, excerpt(detail, _DETAIL_LIMIT), retry_after=retry_after)


class Transport(abc.ABC):
    #: How a successful answer whose partial success cannot be read is described, once, in the log.
    UNREAD_ANSWER: ClassVar[str]

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._reported_unread = False  # an unreadable successful answer is logged once

    @abc.abstractmethod
    async def start(self) -> None:
        """Make the client (inside the running event loop)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def send(self, body: bytes) -> PartialSuccess:
        """Send a serialized ExportMetricsServiceRequest once; raise RetryableError or PermanentError."""

    def _read_success(self, reply: bytes | None) -> PartialSuccess:
        """The partial success of an accepted request; none (logged once) if its answer cannot be read."""
        if reply is not None:
            try:
                return partial_success(reply)
            except WireError:  # a proxy's non-protobuf answer: accepted, no partial-success details
                pass
        if not self._reported_unread:
            self._reported_unread = True
            log.warning(
                "%s %s; its requests count as accepted, without partial-success details",
                self.connection.url,
                self.UNREAD_ANSWER,
            )
        return _NO_REJECTIONS


class GrpcTransport(Transport):
    """The MetricsService Export call on a unary.Channel (gRPC on h2: see bridge/sinks/otlp/unary.py)."""

    UNREAD_ANSWER = "answered OK with a reply message too large or undecodable"
    _channel: Channel | None = None

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        importlib.import_module("bridge.sinks.otlp.unary")  # h2 with the sink: a broken install fails its build

    async def start(self) -> None:
        from bridge.sinks.otlp.unary import Channel, address, proxy_for  # h2 only for a gRPC sink

        connection = self.connection
        tls = None
        if not connection.plaintext:
            tls = tls_context(connection.certificate, connection.client_certificate, connection.client_key, alpn="h2")
        host, port = address(connection.url)
        proxy = proxy_for(host, os.environ)
        self._channel = Channel(host, port, tls, user_agent=USER_AGENT, proxy=proxy)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def send(self, body: bytes) -> PartialSuccess:
        from bridge.sinks.otlp.unary import CallError  # loaded by __init__: a lookup

        if self._channel is None:
            raise RuntimeError("transport not started")
        try:
            reply = await self._channel.call(
                EXPORT_METHOD,
                body,
                metadata=self.connection.headers,
                timeout=self.connection.timeout_seconds,
                gzip=self.connection.gzip,
            )
        except CallError as error:
            raise self._failure(error) from None
        return self._read_success(reply)

    @staticmethod
    def _failure(error: CallError) -> DeliveryError:
        message, delay = error.message, None
        if error.details is not None:  # grpc-status-details-bin: a google.rpc.Status
            message, delay = read_status(error.details, message)
        retryable = error.code in RETRYABLE_GRPC_CODES or (error.code == "RESOURCE_EXHAUSTED" and delay is not None)
        return failure(f"grpc_{error.code.lower()}", message, retryable=retryable, retry_after=delay)


class HttpTransport(Transport):
    """OTLP/HTTP with binary protobuf bodies, through httpx."""

    UNREAD_ANSWER = f"answered 2xx with a body over {PARTIAL_SUCCESS_LIMIT // 1024} KiB or undecodable"
    _client: httpx.AsyncClient | None = None

    def __init__(self, connection: Connection, clock: Clock) -> None:
        super().__init__(connection)
        self.clock = clock  # for Retry-After as an HTTP date

    async def start(self) -> None:
        connection = self.connection
        self._client = httpx.AsyncClient(
            verify=tls_context(connection.certificate, connection.client_certificate, connection.client_key),
            timeout=connection.timeout_seconds,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, body: bytes) -> PartialSuccess:
        if self._client is None:
            raise RuntimeError("transport not started")
        headers = {"content-type": "application/x-protobuf", "user-agent": USER_AGENT, **self.connection.headers}
        if self.connection.gzip:
            body = gzip.compress(body, compresslevel=6)
            headers["content-encoding"] = "gzip"
        try:
            reply = await post_bounded(
                self._client,
                self.connection.url,
                body,
                headers=headers,
                deadline=self.connection.timeout_seconds,
                success_limit=PARTIAL_SUCCESS_LIMIT,
            )
        except ExchangeError as error:
            raise failure(error.reason, error.detail, retryable=error.retryable) from None
        if not reply.is_success:
            raise self._failure(reply)
        return self._read_success(reply.body if reply.complete else None)

    def _failure(self, reply: Reply) -> DeliveryError:
        message, delay = reply.text, None
        if reply.headers.get("content-type", "").startswith("application/x-protobuf"):
            message, delay = read_status(reply.body, message)
        header_delay = retry_after(reply.headers, self.clock.now(), ceiling=MAX_SERVER_DELAY)
        if header_delay is not None:
            delay = header_delay
        retryable = reply.status_code in RETRYABLE_HTTP_STATUSES
        return failure(f"http_{reply.status_code}", message, retryable=retryable, retry_after=delay)


def open_transport(connection: Connection, clock: Clock) -> Transport:
    return GrpcTransport(connection) if connection.protocol == "grpc" else HttpTransport(connection, clock)
