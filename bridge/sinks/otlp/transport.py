"""One attempt to send one encoded request, and what its outcome means.

Both transports send the same ExportMetricsServiceRequest bytes and turn every
failure into a RetryableError or a PermanentError by the OTLP spec's rules, so
the delivery layer above is the only retry loop (the SDK exporters' own
blocking retry loops are not used). Retryable: gRPC CANCELLED,
DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and
RESOURCE_EXHAUSTED when the server sends RetryInfo; HTTP 429, 502, 503, 504;
timeouts and connection errors. Everything else is permanent. The server's
requested delay (RetryInfo, Retry-After) becomes `retry_after`, never more
than MAX_SERVER_DELAY.

`timeout_seconds` bounds a whole attempt: gRPC's per-call deadline, and a
total deadline around the HTTP exchange (httpx's own timeouts are per read).
Only as much of an HTTP answer is read as the protocol needs.

grpcio (about 20 MB resident) is imported when a GrpcTransport is built, not
with this module: an HTTP-only or non-OTLP bridge never loads it.
"""

from __future__ import annotations

import abc
import gzip
import importlib
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from bridge.clock import Clock
from bridge.http import (
    MAX_SERVER_DELAY,
    USER_AGENT,
    ExchangeError,
    Reply,
    clamp_delay,
    excerpt,
    post_bounded,
    retry_after,
    tls_context,
)
from bridge.sinks.base import DeliveryError, PermanentError, RetryableError
from bridge.sinks.otlp.config import Connection

if TYPE_CHECKING:
    import grpc
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub

log = logging.getLogger(__name__)

#: Names of the grpc.StatusCode members a retry may cure (names: grpc is not imported here).
RETRYABLE_GRPC_CODES = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})
STATUS_DETAILS_KEY = "grpc-status-details-bin"  # google.rpc.Status, as grpcio-status reads it
#: Bytes of a 2xx answer read for its partial success: a rejected-points count and a message fit many times over.
PARTIAL_SUCCESS_LIMIT = 64 * 1024
_STUB_MODULE = "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc"  # imports grpc
_DETAIL_LIMIT = 300


def failure(reason: str, detail: str, *, retryable: bool, retry_after: float | None = None) -> DeliveryError:
    error_type = RetryableError if retryable else PermanentError
    return error_type(reason, excerpt(detail, _DETAIL_LIMIT), retry_after=retry_after)


def read_status(raw: bytes, message: str) -> tuple[str, float | None]:
    """(message, requested delay in seconds) from a serialized google.rpc.Status, as gRPC and HTTP servers send it.

    `message` and no delay when it does not decode. RetryInfo's Duration is read
    field by field: ToTimedelta overflows on a delay of 1e14 s, which a server may send.
    """
    try:
        status = Status.FromString(raw)
        delay = None
        for detail in status.details:
            info = RetryInfo()
            if detail.Unpack(info):  # False (and info untouched) when the detail is another type
                requested = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
                delay = clamp_delay(requested, MAX_SERVER_DELAY)
    except DecodeError:
        return message, None
    return status.message, delay


def grpc_target(url: str) -> str:
    """host:port from `scheme://host:port/path` or `host:port`: gRPC ignores scheme and path."""
    return urlsplit(url).netloc if "://" in url else url.split("/", 1)[0]


def _read_file(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


class Transport(abc.ABC):
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the channel or client (inside the running event loop)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def send(self, body: bytes) -> ExportMetricsServiceResponse:
        """Send a serialized ExportMetricsServiceRequest once; raise RetryableError or PermanentError."""


class GrpcTransport(Transport):
    """The generated MetricsService stub on a grpc.aio channel."""

    _channel: grpc.aio.Channel | None = None
    _stub: MetricsServiceStub

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        importlib.import_module(_STUB_MODULE)  # with the sink: a broken grpcio fails its build (or a reload)

    async def start(self) -> None:
        import grpc
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub

        target = grpc_target(self.connection.url)
        options = [("grpc.primary_user_agent", USER_AGENT)]
        if self.connection.plaintext:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_file(self.connection.certificate),
                private_key=_read_file(self.connection.client_key),
                certificate_chain=_read_file(self.connection.client_certificate),
            )
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = MetricsServiceStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def send(self, body: bytes) -> ExportMetricsServiceResponse:
        import grpc

        if self._channel is None:
            raise RuntimeError("transport not started")
        try:
            response: ExportMetricsServiceResponse = await self._stub.Export(  # the generated stub is untyped
                ExportMetricsServiceRequest.FromString(body),
                timeout=self.connection.timeout_seconds,
                metadata=tuple(self.connection.headers.items()),
                compression=grpc.Compression.Gzip if self.connection.gzip else grpc.Compression.NoCompression,
            )
        except grpc.aio.AioRpcError as error:
            raise self._failure(error) from None
        return response

    @staticmethod
    def _failure(error: grpc.aio.AioRpcError) -> DeliveryError:
        code = error.code()
        message, delay = error.details() or "", None
        for key, value in error.trailing_metadata() or ():
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                message, delay = read_status(value, message)
        retryable = code.name in RETRYABLE_GRPC_CODES or (code.name == "RESOURCE_EXHAUSTED" and delay is not None)
        return failure(f"grpc_{code.name.lower()}", message, retryable=retryable, retry_after=delay)


class HttpTransport(Transport):
    """OTLP/HTTP with binary protobuf bodies, through httpx."""

    _client: httpx.AsyncClient | None = None

    def __init__(self, connection: Connection, clock: Clock) -> None:
        super().__init__(connection)
        self.clock = clock  # for Retry-After as an HTTP date
        self._reported_unread = False  # an unreadable 2xx answer is logged once

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

    async def send(self, body: bytes) -> ExportMetricsServiceResponse:
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
        if not reply.complete:
            self._report_unread()
            return ExportMetricsServiceResponse()
        try:
            return ExportMetricsServiceResponse.FromString(reply.body)
        except DecodeError:  # a proxy's non-protobuf 2xx body: accepted, no partial-success details
            return ExportMetricsServiceResponse()

    def _report_unread(self) -> None:
        if not self._reported_unread:
            self._reported_unread = True
            log.warning(
                "%s answered 2xx with a body over %d KiB or undecodable; its requests count as accepted, "
                "without partial-success details",
                self.connection.url,
                PARTIAL_SUCCESS_LIMIT // 1024,
            )

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
