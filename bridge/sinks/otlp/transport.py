"""One attempt to send one encoded request, and what its outcome means.

Both transports send the same ExportMetricsServiceRequest bytes and turn every
failure into a RetryableError or a PermanentError by the OTLP spec's rules, so
the delivery layer above is the only retry loop (the SDK exporters' own
blocking retry loops are not used). Retryable: gRPC CANCELLED,
DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and
RESOURCE_EXHAUSTED when the server sends RetryInfo; HTTP 429, 502, 503, 504;
timeouts and connection errors. Everything else is permanent. The server's
requested delay (RetryInfo, Retry-After) becomes `retry_after`.
"""

from __future__ import annotations

import abc
import gzip
import ssl
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import grpc
import httpx
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import MetricsServiceStub

from bridge import __version__
from bridge.sinks.base import DeliveryError, PermanentError, RetryableError
from bridge.sinks.otlp.config import Connection

USER_AGENT = f"metrics-bridge/{__version__}"
RETRYABLE_GRPC_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})
STATUS_DETAILS_KEY = "grpc-status-details-bin"  # google.rpc.Status, as grpcio-status reads it
_DETAIL_LIMIT = 300


def failure(reason: str, detail: str, *, retryable: bool, retry_after: float | None = None) -> DeliveryError:
    error_type = RetryableError if retryable else PermanentError
    return error_type(reason, detail[:_DETAIL_LIMIT], retry_after=retry_after)


def read_status(status: Status) -> tuple[str, float | None]:
    """(message, requested retry delay in seconds) from a google.rpc.Status, as both gRPC and HTTP servers send it."""
    retry_after = None
    for detail in status.details:
        if detail.Is(RetryInfo.DESCRIPTOR):
            info = RetryInfo()
            detail.Unpack(info)
            retry_after = info.retry_delay.ToTimedelta().total_seconds()
    return status.message, retry_after


def parse_retry_after(header: str | None, now: float) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None when absent or unreadable."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - now)
    except (TypeError, ValueError):
        return None


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

    async def start(self) -> None:
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
        if self._channel is None:
            raise RuntimeError("transport not started")
        try:
            return await self._stub.Export(
                ExportMetricsServiceRequest.FromString(body),
                timeout=self.connection.timeout_seconds,
                metadata=tuple(self.connection.headers.items()),
                compression=grpc.Compression.Gzip if self.connection.gzip else grpc.Compression.NoCompression,
            )
        except grpc.aio.AioRpcError as error:
            raise self._failure(error) from None

    @staticmethod
    def _failure(error: grpc.aio.AioRpcError) -> DeliveryError:
        code = error.code()
        message, retry_after = error.details() or "", None
        for key, value in error.trailing_metadata() or ():
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                message, retry_after = read_status(Status.FromString(value))
        retryable = code in RETRYABLE_GRPC_CODES or (
            code is grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is not None
        )
        return failure(f"grpc_{code.name.lower()}", message, retryable=retryable, retry_after=retry_after)


class HttpTransport(Transport):
    """OTLP/HTTP with binary protobuf bodies, through httpx."""

    _client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(verify=self._tls_context(), timeout=self.connection.timeout_seconds)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.connection.certificate)
        if self.connection.client_certificate:
            context.load_cert_chain(self.connection.client_certificate, self.connection.client_key)
        return context

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
            response = await self._client.post(self.connection.url, content=body, headers=headers)
        except httpx.TimeoutException as error:
            raise failure("timeout", type(error).__name__, retryable=True) from None
        except httpx.TransportError as error:
            raise failure("connection_error", str(error) or type(error).__name__, retryable=True) from None
        if response.is_success:
            try:
                return ExportMetricsServiceResponse.FromString(response.content)
            except DecodeError:  # a proxy's non-protobuf 2xx body: accepted, no partial-success details
                return ExportMetricsServiceResponse()
        raise self._failure(response)

    @staticmethod
    def _failure(response: httpx.Response) -> DeliveryError:
        message, retry_after = response.text, None
        if response.headers.get("content-type", "").startswith("application/x-protobuf"):
            try:
                message, retry_after = read_status(Status.FromString(response.content))
            except DecodeError:
                pass
        header_delay = parse_retry_after(response.headers.get("retry-after"), time.time())
        if header_delay is not None:
            retry_after = header_delay
        retryable = response.status_code in RETRYABLE_HTTP_STATUSES
        return failure(f"http_{response.status_code}", message, retryable=retryable, retry_after=retry_after)


def open_transport(connection: Connection) -> Transport:
    return GrpcTransport(connection) if connection.protocol == "grpc" else HttpTransport(connection)
