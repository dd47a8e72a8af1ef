"""The hand-written gRPC client (bridge/sinks/otlp/unary.py) against servers grpcio's would never be.

tests/test_otlp_wire.py runs every OTLP/gRPC outcome against grpcio's own server. Here a
scripted HTTP/2 server on 127.0.0.1 (h2's server side) answers as broken proxies and hostile
backends do: HTTP errors, resets, missing or odd trailers, oversized and compressed replies,
GOAWAY, a tiny flow-control window. Each case asserts what reached the server or what the
sink made of the answer: the reason and retryability the delivery layer acts on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import struct
from collections.abc import Callable, Coroutine
from typing import Any, Self

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from h2.errors import ErrorCodes
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceResponse,
)
from pydantic import ValidationError

from bridge.model import NS_PER_S, Batch, Kind, Metric, Point
from bridge.sinks.base import DeliveryError, PermanentError, RetryableError
from bridge.sinks.otlp import OTLPSink, OTLPSinkConfig
from bridge.sinks.otlp.unary import MAX_REPLY_BYTES, Proxy, grpc_timeout, proxy_for
from tests.conftest import T0, run
from tests.receivers.otlp import GrpcReceiver
from tests.test_otlp_wire import cerebras_batch, make_sink, self_signed

HOST = "127.0.0.1"
Headers = list[tuple[bytes, bytes]]


class Outbox:
    """One stream's answer, as the script orders it; the server sends it as flow control allows."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.actions: list[tuple[str, Any, bool]] = []

    def headers(self, headers: Headers, *, end: bool = False) -> None:
        self.actions.append(("headers", headers, end))

    def data(self, data: bytes, *, end: bool = False) -> None:
        self.actions.append(("data", data, end))

    def reset(self, code: ErrorCodes) -> None:
        self.actions.append(("reset", code, True))

    def go_away(self, last_stream_id: int) -> None:
        self.actions.append(("goaway", last_stream_id, True))

    def pump(self, connection: h2.connection.H2Connection) -> None:
        """Send what the windows allow now; the rest waits for the client's WINDOW_UPDATE."""
        while self.actions:
            kind, value, end = self.actions[0]
            if kind == "data":
                room = min(connection.local_flow_control_window(self.stream_id), connection.max_outbound_frame_size)
                if room <= 0 and value:
                    return
                connection.send_data(self.stream_id, value[:room], end_stream=end and len(value) <= room)
                if len(value) > room:
                    self.actions[0] = (kind, value[room:], end)
                    continue
            elif kind == "headers":
                connection.send_headers(self.stream_id, value, end_stream=end)
            elif kind == "reset":
                connection.reset_stream(self.stream_id, value)
            else:
                connection.close_connection(ErrorCodes.NO_ERROR, last_stream_id=value)
            self.actions.pop(0)


#: Answers a finished request by filling its outbox.
Script = Callable[[Outbox], None]


class LoopbackServer:
    """An asyncio server on 127.0.0.1; stopping it cancels the tasks it serves connections with."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.spawn(self.serve(reader, writer))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class ScriptedServer(LoopbackServer):
    """HTTP/2 over cleartext on 127.0.0.1; each request, once whole, is answered by `script`."""

    def __init__(self, script: Script, *, initial_window: int | None = None) -> None:
        super().__init__()
        self.script = script
        self.initial_window = initial_window
        self.requests: list[tuple[dict[bytes, bytes], bytes]] = []
        self.connections = 0
        self.frames_received = 0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        connection.initiate_connection()
        if self.initial_window is not None:  # in force once the client acknowledges it, as HTTP/2 says
            connection.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.initial_window})
        headers: dict[int, dict[bytes, bytes]] = {}
        bodies: dict[int, bytearray] = {}
        outboxes: list[Outbox] = []
        try:
            while data := await reader.read(65_536):
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers[event.stream_id] = dict(event.headers)
                        bodies[event.stream_id] = bytearray()
                    elif isinstance(event, h2.events.DataReceived):
                        self.frames_received += 1
                        bodies[event.stream_id] += event.data
                        connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self.requests.append((headers[event.stream_id], bytes(bodies[event.stream_id])))
                        outboxes.append(Outbox(event.stream_id))
                        self.script(outboxes[-1])
                for outbox in outboxes:
                    outbox.pump(connection)
                writer.write(connection.data_to_send())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def grpc_headers(*extra: tuple[bytes, bytes]) -> Headers:
    return [(b":status", b"200"), (b"content-type", b"application/grpc"), *extra]


def framed(message: bytes, *, compressed: bool = False) -> bytes:
    return struct.pack(">BI", compressed, len(message)) + message


def answer_ok(reply: bytes = b"", *, compressed: bool = False) -> Script:
    return answer_ok_raw(framed(gzip.compress(reply) if compressed else reply, compressed=compressed))


def answer_ok_raw(body: bytes) -> Script:
    """grpc-status 0 after `body` as it is (a gzip encoding declared, for compressed messages)."""

    def script(outbox: Outbox) -> None:
        outbox.headers(grpc_headers((b"grpc-encoding", b"gzip")))
        outbox.data(body)
        outbox.headers([(b"grpc-status", b"0")], end=True)

    return script


def answer_headers(headers: Headers, body: bytes = b"") -> Script:
    def script(outbox: Outbox) -> None:
        outbox.headers(headers, end=not body)
        if body:
            outbox.data(body, end=True)

    return script


def in_turn(*scripts: Script) -> Script:
    """Each request answered by the next script."""
    answers = iter(scripts)

    def script(outbox: Outbox) -> None:
        next(answers)(outbox)

    return script


def reset(code: ErrorCodes) -> Script:
    def script(outbox: Outbox) -> None:
        outbox.reset(code)

    return script


def partial(rejected: int, message: str) -> bytes:
    response = ExportMetricsServiceResponse(
        partial_success=ExportMetricsPartialSuccess(rejected_data_points=rejected, error_message=message)
    )
    return response.SerializeToString()


def failure_of(server_script: Script, **sink_options: Any) -> DeliveryError:
    async def go() -> DeliveryError:
        async with ScriptedServer(server_script) as server:
            sink = make_sink("grpc", server.endpoint, **sink_options)
            await sink.start()
            try:
                [payload] = sink.prepare(cerebras_batch(0))
                await sink.deliver(payload)
            except (RetryableError, PermanentError) as error:
                return error
            finally:
                await sink.close()
        raise AssertionError("the scripted answer was taken as a success")

    result: DeliveryError = run(go())
    return result


def status_details(retry_seconds: int) -> bytes:
    status = Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message="from the details")
    status.details.add().Pack(RetryInfo(retry_delay=Duration(seconds=retry_seconds)))
    return status.SerializeToString()


# ---------------------------------------------------------------- what is not a gRPC answer
@pytest.mark.parametrize(
    ("script", "reason", "retryable", "detail"),
    [
        (answer_headers([(b":status", b"503"), (b"content-type", b"text/plain")], b"upstream down"),
         "grpc_unavailable", True, "HTTP status 503: upstream down"),
        (answer_headers([(b":status", b"404")]), "grpc_unimplemented", False, "HTTP status 404"),
        (answer_headers([(b":status", b"401")]), "grpc_unauthenticated", False, "HTTP status 401"),
        (answer_headers([(b":status", b"500")]), "grpc_unknown", False, "HTTP status 500"),
        (answer_headers([(b":status", b"200"), (b"content-type", b"text/html")], b"<html>"),
         "grpc_unknown", False, "not a gRPC answer"),
        (reset(ErrorCodes.REFUSED_STREAM), "grpc_unavailable", True, "REFUSED_STREAM"),
        (reset(ErrorCodes.ENHANCE_YOUR_CALM), "grpc_resource_exhausted", False, "ENHANCE_YOUR_CALM"),
        (reset(ErrorCodes.INTERNAL_ERROR), "grpc_internal", False, "INTERNAL_ERROR"),
        (answer_headers(grpc_headers(), framed(b"")), "grpc_internal", False, "without a grpc-status"),
    ],
    ids=["http-503", "http-404", "http-401", "http-500", "html", "refused", "calm", "reset", "no-status"],
)  # fmt: skip
def test_answers_that_are_not_grpc_get_the_status_grpc_clients_give_them(
    script: Script, reason: str, retryable: bool, detail: str
) -> None:
    error = failure_of(script)
    assert (error.reason, error.retryable) == (reason, retryable)
    assert detail in str(error)


def test_a_trailers_only_status_is_read_with_its_percent_encoded_message_and_unpadded_details() -> None:
    details = base64.b64encode(status_details(7)).rstrip(b"=")
    error = failure_of(
        answer_headers(
            grpc_headers(
                (b"grpc-status", b"14"),
                (b"grpc-message", b"disk 100%25 full"),
                (b"grpc-status-details-bin", details),
            )
        )
    )
    assert (error.reason, error.retryable, error.retry_after) == ("grpc_unavailable", True, 7.0)
    assert "from the details" in str(error)  # the Status's own message wins, as grpcio-status reads it
    plain = failure_of(answer_headers(grpc_headers((b"grpc-status", b"14"), (b"grpc-message", b"disk 100%25 full"))))
    assert "disk 100% full" in str(plain)
    unknown = failure_of(answer_headers(grpc_headers((b"grpc-status", b"99"))))
    assert unknown.reason == "grpc_unknown"


# ---------------------------------------------------------------- replies
def test_a_compressed_reply_is_read_and_an_oversized_one_is_refused() -> None:
    async def go() -> tuple[int, DeliveryError | None]:
        async with ScriptedServer(answer_ok(partial(3, "3 bad points"), compressed=True)) as server:
            sink = make_sink("grpc", server.endpoint)
            await sink.start()
            [payload] = sink.prepare(cerebras_batch(0))
            rejected = await sink.deliver(payload)
            await sink.close()
        huge = b"\0" * (MAX_REPLY_BYTES + 1)
        async with ScriptedServer(answer_ok(huge)) as server:
            sink = make_sink("grpc", server.endpoint)
            await sink.start()
            try:
                await sink.deliver(payload)
            except PermanentError as error:
                return rejected, error
            finally:
                await sink.close()
        return rejected, None

    rejected, error = run(go())
    assert rejected == 3
    assert error is not None and error.reason == "grpc_resource_exhausted"


def test_an_ok_whose_reply_cannot_be_read_counts_as_accepted_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bomb = gzip.compress(b"\0" * (64 * MAX_REPLY_BYTES))  # 256 MiB of zeros in about 250 KiB

    async def go() -> list[int]:
        async with ScriptedServer(answer_ok_raw(framed(bomb, compressed=True))) as server:
            sink = make_sink("grpc", server.endpoint)
            await sink.start()
            [payload] = sink.prepare(cerebras_batch(0))
            outcomes = [await sink.deliver(payload) for _ in range(2)]
            await sink.close()
        return outcomes

    assert run(go()) == [0, 0]
    assert caplog.text.count("answered OK with a reply message too large or undecodable") == 1


# ---------------------------------------------------------------- the connection
def test_the_request_carries_grpc_headers_the_deadline_and_metadata_but_not_reserved_names() -> None:
    async def go() -> tuple[dict[bytes, bytes], bytes, bytes]:
        async with ScriptedServer(answer_ok()) as server:
            headers = {"X-Scope-OrgID": "tenant-1", "content-type": "text/plain", "te": "gzip"}
            sink = make_sink("grpc", server.endpoint, headers=headers, timeout_seconds=2.5)
            await sink.start()
            [payload] = sink.prepare(cerebras_batch(0))
            await sink.deliver(payload)
            await sink.close()
        [(request_headers, body)] = server.requests
        return request_headers, body, payload.body

    headers, body, sent = run(go())
    assert headers[b":method"] == b"POST"
    assert headers[b":path"] == b"/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
    assert (headers[b"content-type"], headers[b"te"]) == (b"application/grpc", b"trailers")
    assert headers[b"grpc-timeout"] == b"2500m"
    assert headers[b"grpc-encoding"] == b"gzip"
    assert headers[b"x-scope-orgid"] == b"tenant-1"
    assert headers[b"user-agent"].startswith(b"metrics-bridge/")
    compressed, length = struct.unpack_from(">BI", body)
    assert (compressed, length) == (1, len(body) - 5)
    assert gzip.decompress(body[5:]) == sent


def test_grpc_timeout_has_at_most_eight_digits_and_never_shortens_the_deadline() -> None:
    assert [grpc_timeout(s) for s in (0.0001, 2.5, 99_999.999, 99_999.9999, 1e12)] == [
        "1m",
        "2500m",
        "99999999m",
        "100000S",
        "99999999S",
    ]


def test_a_request_larger_than_the_window_waits_for_window_updates() -> None:
    """A 1 KiB stream window: the client sends what the server lets it, frame by frame, and nothing is lost."""
    batch = wide_batch(2_000)

    async def go() -> tuple[ScriptedServer, bytes]:
        async with ScriptedServer(answer_ok(), initial_window=1024) as server:
            sink = make_sink("grpc", server.endpoint, compression="none")
            await sink.start()
            [payload] = sink.prepare(batch)
            await sink.deliver(payload)
            await sink.close()
        return server, payload.body

    server, sent = run(go())
    [(_, body)] = server.requests
    assert len(sent) > 100_000
    assert body == framed(sent)
    # before the client has the server's SETTINGS, HTTP/2's default 64 KiB window; after, 1 KiB at a time
    assert server.frames_received >= (len(body) - 65_535) // 1024


def test_concurrent_calls_share_one_connection_against_grpcio() -> None:
    async def go() -> tuple[int, set[str]]:
        async with GrpcReceiver() as receiver:
            sink = make_sink("grpc", receiver.endpoint)
            await sink.start()
            payloads = [payload for index in range(8) for payload in sink.prepare(cerebras_batch(index))]
            await asyncio.gather(*(sink.deliver(payload) for payload in payloads))
            await sink.close()
        return len(receiver.accepted), {received.peer for received in receiver.received}

    accepted, peers = run(go())
    assert accepted == 8
    assert len(peers) == 1


def test_a_goaway_fails_the_calls_it_did_not_take_and_the_next_call_opens_a_new_connection() -> None:
    script = in_turn(_go_away, answer_ok(partial(1, "one")))

    async def go() -> tuple[DeliveryError | None, int, int]:
        async with ScriptedServer(script) as server:
            sink = make_sink("grpc", server.endpoint)
            await sink.start()
            [payload] = sink.prepare(cerebras_batch(0))
            error = None
            try:
                await sink.deliver(payload)
            except RetryableError as caught:
                error = caught
            rejected = await sink.deliver(payload)
            await sink.close()
        return error, rejected, server.connections

    error, rejected, connections = run(go())
    assert error is not None and error.reason == "grpc_unavailable" and "GOAWAY" in str(error)
    assert (rejected, connections) == (1, 2)


def _go_away(outbox: Outbox) -> None:
    outbox.go_away(last_stream_id=0)  # no stream was taken


def test_a_server_that_speaks_http1_is_unavailable_not_a_crash() -> None:
    async def answer_http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def go() -> DeliveryError:
        server = await asyncio.start_server(answer_http1, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        sink = make_sink("grpc", f"http://{HOST}:{port}", timeout_seconds=5)
        await sink.start()
        try:
            [payload] = sink.prepare(cerebras_batch(0))
            with pytest.raises(RetryableError) as caught:
                await sink.deliver(payload)
            return caught.value
        finally:
            await sink.close()
            server.close()
            await server.wait_closed()

    error = run(go())
    assert error.reason == "grpc_unavailable"


def wide_batch(series: int) -> Batch:
    """One gauge with many series: a request of about 60 bytes a point."""
    start = int(T0) * NS_PER_S
    end = start + 60 * NS_PER_S
    points = [Point((("endpoint", f"ep-{index:05d}"),), float(index), start, end) for index in range(series)]
    return Batch("wide", (("bridge.source", "wide"),), start, end, [Metric("wide_gauge", Kind.GAUGE, points)])


def test_closing_the_sink_ends_a_call_still_waiting_for_its_answer() -> None:
    async def go() -> DeliveryError:
        async with ScriptedServer(lambda outbox: None) as server:  # takes the request, never answers
            sink = make_sink("grpc", server.endpoint, timeout_seconds=60)
            await sink.start()
            [payload] = sink.prepare(cerebras_batch(0))
            waiting = asyncio.create_task(sink.deliver(payload))
            while not server.requests:
                await asyncio.sleep(0.01)
            await sink.close()
            with pytest.raises(RetryableError) as caught:
                await waiting
            return caught.value

    error = run(go())
    assert error.reason == "grpc_unavailable" and "closed" in str(error)  # not the 60 s deadline


# ---------------------------------------------------------------- through an HTTP proxy
class ConnectProxy(LoopbackServer):
    """An HTTP proxy on 127.0.0.1 that tunnels with CONNECT (or refuses with `refuse`), recording each request."""

    def __init__(self, refuse: bytes | None = None) -> None:
        super().__init__()
        self.refuse = refuse
        self.requests: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://user:p%40ss-{id(self)}@{HOST}:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        if self.refuse is not None:
            writer.write(self.refuse)
            writer.close()
            return
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            self.spawn(self._pipe(source, sink))

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65_536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_https_proxy_tunnels_the_connection_with_connect_and_its_credentials(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tls: bool
) -> None:
    files: tuple[str, str] | None = request.getfixturevalue(self_signed.__name__) if tls else None  # test_otlp_wire's

    async def go() -> tuple[ConnectProxy, GrpcReceiver]:
        async with ConnectProxy() as proxy, GrpcReceiver(tls=files) as receiver:
            monkeypatch.setenv("https_proxy", proxy.url)
            options = {"certificate": files[0]} if files else {}
            sink = make_sink("grpc", receiver.endpoint, **options)
            await sink.start()
            [payload] = sink.prepare(cerebras_batch(0))
            await sink.deliver(payload)
            await sink.close()
        return proxy, receiver

    proxy, receiver = run(go())
    assert len(receiver.accepted) == 1
    [request] = proxy.requests
    target = f"{HOST}:{receiver.port}".encode()
    assert request.startswith(b"CONNECT " + target + b" HTTP/1.1\r\n")
    credentials = base64.b64encode(f"user:p@ss-{id(proxy)}".encode())
    assert b"Proxy-Authorization: Basic " + credentials + b"\r\n" in request


def test_no_proxy_exempts_a_host_and_a_refusing_proxy_is_unavailable_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def go() -> tuple[int, int, DeliveryError]:
        refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
        async with ConnectProxy(refuse=refusal) as proxy, GrpcReceiver() as receiver:
            monkeypatch.setenv("https_proxy", proxy.url)
            monkeypatch.setenv("no_proxy", f"example.com,{HOST}")
            await _deliver_once(make_sink("grpc", receiver.endpoint))
            exempt_requests = len(proxy.requests)
            monkeypatch.delenv("no_proxy")
            with pytest.raises(RetryableError) as caught:
                await _deliver_once(make_sink("grpc", receiver.endpoint))
        return exempt_requests, len(receiver.accepted), caught.value

    exempt_requests, accepted, error = run(go())
    assert (exempt_requests, accepted) == (0, 1)
    assert error.reason == "grpc_unavailable"
    assert "407 Proxy Authentication Required" in str(error)
    assert "p@ss" not in str(error) and "user:" not in str(error)


async def _deliver_once(sink: OTLPSink) -> None:
    await sink.start()
    try:
        [payload] = sink.prepare(cerebras_batch(0))
        await sink.deliver(payload)
    finally:
        await sink.close()


@pytest.mark.parametrize(
    ("environ", "host", "expected"),
    [
        ({}, "collector", None),
        ({"https_proxy": "http://proxy:3128"}, "collector", Proxy("proxy", 3128)),
        ({"grpc_proxy": "proxy-a:8080", "https_proxy": "http://proxy-b"}, "collector", Proxy("proxy-a", 8080)),
        ({"HTTPS_PROXY": "http://proxy"}, "collector", Proxy("proxy", 80)),
        ({"https_proxy": "http://u:p@proxy:1"}, "collector", Proxy("proxy", 1, "Basic dTpw")),
        ({"https_proxy": "http://proxy:1", "no_proxy": "*"}, "collector", None),
        ({"https_proxy": "http://proxy:1", "no_proxy": ".example.com"}, "otlp.example.com", None),
        ({"https_proxy": "http://proxy:1", "no_proxy": "example.com:4317"}, "example.com", None),
        ({"https_proxy": "http://proxy:1", "no_proxy": "ample.com"}, "example.com", Proxy("proxy", 1)),
        ({"https_proxy": "http://proxy:1", "NO_PROXY": "10.0.0.0/8"}, "10.1.2.3", None),
        ({"https_proxy": "http://proxy:1", "no_grpc_proxy": "10.0.0.0/8"}, "192.168.0.1", Proxy("proxy", 1)),
    ],
)
def test_the_proxy_is_read_from_the_environment_as_grpcio_and_curl_read_it(
    environ: dict[str, str], host: str, expected: Proxy | None
) -> None:
    assert proxy_for(host, environ) == expected


def test_a_proxy_that_cannot_tunnel_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "https://user:secret@proxy:443")
    with pytest.raises(ValidationError, match="https_proxy: https://proxy is not an http:// proxy") as caught:
        OTLPSinkConfig(type="otlp", protocol="grpc", endpoint="http://collector:4317")
    assert "secret" not in str(caught.value) and "no_grpc_proxy" in str(caught.value)  # and what to do
    OTLPSinkConfig(type="otlp", protocol="http/protobuf", endpoint="http://collector:4318")  # httpx's to read


def test_after_a_call_without_an_answer_the_next_call_dials_a_new_connection() -> None:
    """A connection a middlebox stopped forwarding would otherwise time out every call until TCP gives up."""
    script = in_turn(lambda outbox: None, answer_ok(partial(2, "two")))  # the first request is never answered

    async def go() -> tuple[str, int, int]:
        async with ScriptedServer(script) as server:
            sink = make_sink("grpc", server.endpoint, timeout_seconds=0.5)
            await sink.start()
            [payload] = sink.prepare(cerebras_batch(0))
            with pytest.raises(RetryableError) as caught:
                await sink.deliver(payload)
            rejected = await sink.deliver(payload)
            await sink.close()
        return caught.value.reason, rejected, server.connections

    assert run(go()) == ("grpc_deadline_exceeded", 2, 2)


# ---------------------------------------------------------------- arbitrary answers
_SETTINGS = bytes.fromhex("000000040000000000")  # an empty SETTINGS frame: the server preface


#: Values for gRPC's answer fields: mostly what a server sends, some of what none should.
FIELD_VALUES = {
    ":status": ["200", "200", "503", "abc"],
    "content-type": ["application/grpc", "application/grpc+proto", "text/html"],
    "grpc-status": ["0", "14", "8", "99", "-1", "1e3", "", "x"],
    "grpc-message": ["", "slow down", "%zz", "100%25"],
    "grpc-status-details-bin": ["", "CAg", "!!", "CAgSBHNsb3c"],
    "grpc-encoding": ["gzip", "identity", "br"],
}


def _frame(frame_type: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((frame_type, flags)) + struct.pack(">I", stream) + payload


@st.composite
def _answers(draw: st.DrawFn) -> bytes:
    """An answer on stream 1 shaped as gRPC's (headers, DATA, trailers; or Trailers-Only) with usual and odd values
    in its fields and bodies, and now and then a frame of any type, flags, stream and payload."""
    encoder = hpack.Encoder()  # one per connection, as the client's decoder is

    def block(names: list[str]) -> bytes:
        return encoder.encode([(name, draw(st.sampled_from(FIELD_VALUES[name]))) for name in names])

    extra = draw(st.lists(st.sampled_from(list(FIELD_VALUES)[2:]), max_size=4, unique=True))
    trailers_only = draw(st.booleans())
    frames = [_frame(1, 4 | trailers_only, 1, block([":status", "content-type", *(extra if trailers_only else [])]))]
    if not trailers_only:
        for _ in range(draw(st.integers(0, 2))):
            body = draw(st.sampled_from([framed(b""), framed(b"\x08\x01"), framed(b"\x1f\x8b", compressed=True)]))
            frames.append(_frame(0, 0, 1, draw(st.just(body) | st.binary(max_size=16))))
        frames.append(_frame(1, 4 | 1, 1, block(["grpc-status", *extra])))  # trailers: END_HEADERS, END_STREAM
    if draw(st.integers(0, 9)) == 0:
        odd = _frame(draw(st.integers(0, 10)), draw(st.sampled_from([0, 1, 4, 8, 0xFF])),
                     draw(st.sampled_from([0, 1, 3])), draw(st.binary(max_size=24)))  # fmt: skip
        frames.insert(draw(st.integers(0, len(frames))), odd)
    return b"".join(frames)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=64), _answers(), _answers(), _answers()), st.booleans(), st.booleans())
def test_whatever_a_server_answers_the_call_ends_in_a_delivery_outcome(
    answer: bytes, preface: bool, hang_up: bool
) -> None:
    """Arbitrary bytes where a gRPC server's answer goes: the sink returns or raises its two errors, by the deadline."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65_536)  # the client's preface, settings and (part of) its request
        writer.write((_SETTINGS if preface else b"") + answer)
        await writer.drain()
        if hang_up:
            writer.close()
        else:
            await reader.read()  # until the client goes

    async def go() -> None:
        server = await asyncio.start_server(serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        sink = make_sink("grpc", f"http://{HOST}:{port}", timeout_seconds=0.3, compression="none")
        await sink.start()
        try:
            [payload] = sink.prepare(cerebras_batch(0))
            with contextlib.suppress(RetryableError, PermanentError):
                await asyncio.wait_for(sink.deliver(payload), timeout=5)  # the sink's own deadline is 0.3 s
        finally:
            await sink.close()
            server.close()
            await server.wait_closed()

    run(go())
