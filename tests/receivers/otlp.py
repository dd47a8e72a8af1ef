"""OTLP metrics receivers: a grpc.aio MetricsService server and a plain HTTP server, both on 127.0.0.1.

Both decode every request, record it, and answer from a shared script: queue
Answers with `receiver.script(unavailable(retry_after=2), accept())`; each
request consumes one, and once the script is empty every request is accepted.
An Answer is protocol-neutral and each receiver renders it its own way (gRPC
status code + RetryInfo in grpc-status-details-bin; HTTP status + Retry-After +
a google.rpc.Status body), so one fault test can run against both. An
Answer with a `manner` (tests/receivers/hostile.py: trickled, endless) goes
out that way over HTTP; gRPC sends it normally.

    async with GrpcReceiver() as receiver:        # or HttpReceiver(); an ephemeral port
        ...                                        # send to receiver.endpoint (HttpReceiver: .url too)
    receiver.metrics("requests_count_total")       # decoded Metric messages of accepted requests
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc import (
    MetricsServiceServicer,
    add_MetricsServiceServicer_to_server,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, ResourceMetrics

from bridge.serverthread import ServerThread
from tests.receivers import hostile
from tests.servers import serve_tls

HOST = "127.0.0.1"
METRICS_PATH = "/v1/metrics"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


# ---------------------------------------------------------------- answers
@dataclass(frozen=True)
class Answer:
    """What the receiver does with one request, in both protocols' terms."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.OK
    http_status: int = 200
    retry_after: float | None = None  # gRPC: RetryInfo detail; HTTP: Retry-After header (whole seconds)
    message: str = ""
    rejected_points: int = 0  # non-zero: partial success (negative: a backend bug)
    delay_seconds: float = 0.0  # answer this late (drives client timeouts)
    manner: hostile.Manner | None = None  # HTTP: send the answer this hostile way

    @property
    def accepted(self) -> bool:
        return self.grpc_code is grpc.StatusCode.OK


def accept() -> Answer:
    return Answer()


def unavailable(retry_after: float | None = None) -> Answer:
    return Answer(grpc.StatusCode.UNAVAILABLE, 503, retry_after, "backend unavailable")


def throttled(retry_after: float | None = None) -> Answer:
    return Answer(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, retry_after, "rate limited")


def bad_request(message: str = "invalid metric data") -> Answer:
    return Answer(grpc.StatusCode.INVALID_ARGUMENT, 400, None, message)


def partial_success(rejected_points: int, message: str = "some points were rejected") -> Answer:
    """A 2xx with rejected points (a backend bug may even report a negative count)."""
    return Answer(rejected_points=rejected_points, message=message)


def stall(seconds: float) -> Answer:
    return Answer(delay_seconds=seconds)


def rpc_status(answer: Answer) -> Status:
    """The google.rpc.Status both protocols carry for a failure (RetryInfo when a retry delay is set)."""
    status = Status(code=answer.grpc_code.value[0], message=answer.message)
    if answer.retry_after is not None:
        seconds = int(answer.retry_after)  # set field by field: any int64, as a hostile server may send
        delay = Duration(seconds=seconds, nanos=round((answer.retry_after - seconds) * 1e9))
        status.details.add().Pack(RetryInfo(retry_delay=delay))
    return status


# ---------------------------------------------------------------- recording
@dataclass
class Received:
    request: ExportMetricsServiceRequest
    headers: dict[str, str]  # HTTP headers or gRPC metadata, names lower-cased
    compressed: bool  # gzip on the wire (HTTP; gRPC hides it, see GrpcReceiver)
    path: str  # HTTP path or gRPC method
    answer: Answer
    peer: str = ""  # gRPC: the client's address and port (one per connection)


class _Recorder:
    """The script and the record, shared by both receivers (HTTP answers from server threads)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.hostile_sent: list[int] = []  # per hostile answer: bytes that went out before it stopped
        self._script: collections.deque[Answer] = collections.deque()
        self._lock = threading.Lock()

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self._script.extend(answers)

    def _answer(self, received: Received) -> Answer:
        with self._lock:
            if received.answer.accepted and self._script:
                received.answer = self._script.popleft()
            self.received.append(received)
            return received.answer

    @property
    def accepted(self) -> list[ExportMetricsServiceRequest]:
        return [r.request for r in self.received if r.answer.accepted]

    def resource_metrics(self) -> Iterator[ResourceMetrics]:
        for request in self.accepted:
            yield from request.resource_metrics

    def metrics(self, name: str | None = None) -> list[Metric]:
        """Every Metric message in accepted requests, in arrival order (optionally one name)."""
        return [
            metric
            for resource_metrics in self.resource_metrics()
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
            if name is None or metric.name == name
        ]


# ---------------------------------------------------------------- gRPC
class _Servicer(MetricsServiceServicer):
    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder

    async def Export(
        self, request: ExportMetricsServiceRequest, context: grpc.aio.ServicerContext
    ) -> ExportMetricsServiceResponse:
        metadata = {key.lower(): value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        received = Received(request, metadata, False, "Export", Answer(), peer=context.peer())
        answer = self.recorder._answer(received)
        if answer.delay_seconds:
            await asyncio.sleep(answer.delay_seconds)
        if not answer.accepted:
            trailing = ((STATUS_DETAILS_KEY, rpc_status(answer).SerializeToString()),)
            await context.abort(answer.grpc_code, answer.message, trailing_metadata=trailing)
        return _response(answer)


class GrpcReceiver(_Recorder):
    """A grpc.aio server with the generated MetricsServiceServicer; TLS when given (cert file, key file) in PEM.

    gRPC hides the message encoding from servicers, so `compressed` is always False
    here; `accept_gzip=False` makes the server refuse gzip messages (UNIMPLEMENTED)
    instead, which is how a test proves the client compresses.
    """

    def __init__(self, tls: tuple[str, str] | None = None, accept_gzip: bool = True) -> None:
        super().__init__()
        self.tls = tls
        self.accept_gzip = accept_gzip
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    async def start(self) -> None:
        identity_only = [("grpc.compression_enabled_algorithms_bitset", 1)]
        self._server = grpc.aio.server(options=None if self.accept_gzip else identity_only)
        add_MetricsServiceServicer_to_server(_Servicer(self), self._server)
        if self.tls:
            cert, key = (Path(file).read_bytes() for file in self.tls)  # small local PEM files
            credentials = grpc.ssl_server_credentials([(key, cert)])
            self.port = self._server.add_secure_port(f"{HOST}:0", credentials)
        else:
            self.port = self._server.add_insecure_port(f"{HOST}:0")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


# ---------------------------------------------------------------- HTTP
class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: HttpReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {key.lower(): value for key, value in self.headers.items()}
        compressed = headers.get("content-encoding") == "gzip"
        receiver = self.server.receiver
        try:
            request = ExportMetricsServiceRequest.FromString(gzip.decompress(body) if compressed else body)
            answer = Answer()
        except (DecodeError, OSError, EOFError, zlib.error):  # undecodable (bad gzip, bad protobuf): a real 400
            request = ExportMetricsServiceRequest()
            answer = bad_request("cannot decode the request body")
        if self.path != receiver.path:
            answer = Answer(grpc.StatusCode.NOT_FOUND, 404, None, f"no route for {self.path}")
        answer = receiver._answer(Received(request, headers, compressed, self.path, answer))
        if answer.delay_seconds:
            threading.Event().wait(answer.delay_seconds)
        self._reply(answer)

    def _reply(self, answer: Answer) -> None:
        headers = {"Content-Type": "application/x-protobuf"}
        if answer.accepted:
            status, body = 200, _response(answer).SerializeToString()
        else:
            status, body = answer.http_status, rpc_status(answer).SerializeToString()
            if answer.retry_after is not None:
                headers["Retry-After"] = str(round(answer.retry_after))
        if answer.manner is not None:
            self.server.receiver.hostile_sent.append(hostile.send(self, status, headers, body, answer.manner))
            return
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests send many requests."""


class HttpReceiver(_Recorder, ServerThread):
    """OTLP/HTTP (binary protobuf) on a ThreadingHTTPServer; usable with `with` and `async with`."""

    thread_name = "otlp-http-receiver"

    def __init__(self, path: str = METRICS_PATH, tls: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.path = path
        self.tls = tls  # (cert file, key file) in PEM

    def _make_server(self) -> _HttpServer:
        server = _HttpServer((HOST, 0), _Handler)
        server.receiver = self
        serve_tls(server, self.tls)
        return server

    @property
    def endpoint(self) -> str:
        """The base URL (what OTEL_EXPORTER_OTLP_ENDPOINT would hold)."""
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return self.endpoint + self.path

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()


def _response(answer: Answer) -> ExportMetricsServiceResponse:
    if not answer.rejected_points and not answer.message:
        return ExportMetricsServiceResponse()
    return ExportMetricsServiceResponse(
        partial_success=ExportMetricsPartialSuccess(
            rejected_data_points=answer.rejected_points, error_message=answer.message
        )
    )
