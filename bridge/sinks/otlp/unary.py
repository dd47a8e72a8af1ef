"""One unary gRPC call over HTTP/2, the only kind of call OTLP/gRPC makes, on h2's protocol state machine.

Why not grpcio: once a channel exists, grpcio holds 14.4 MB resident (its C core,
its threads and their arenas) against 1.3 MB for h2, and an idle bridge with three
sinks has 50 MB in all (bench/RESULTS.md). The gRPC side of a unary call is small
(grpc/grpc doc/PROTOCOL-HTTP2.md): a POST on one HTTP/2 stream carrying a
length-prefixed message, answered by headers, the reply message and trailers with
`grpc-status`. h2 does the HTTP/2 part (framing, HPACK, flow control, settings,
pings); this module does the rest: one connection per channel, opened at the first
call and again after it breaks, every call on its own stream. The tests run it
against grpcio's own server (tests/receivers/otlp.py).

Every failure is a CallError with a gRPC status name: the server's status, the
HTTP status or stream reset of a server that is not answering in gRPC (mapped as
gRPC's clients map them), UNAVAILABLE for a connection that cannot be made or
breaks, DEADLINE_EXCEEDED when the deadline passes first.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import math
import ssl
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from bridge import secrets

#: Status names by code (grpc/grpc doc/statuscodes.md), as grpc.StatusCode names them.
STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
#: The status of an answer that is not gRPC, by its HTTP status (doc/http-grpc-status-mapping.md); others UNKNOWN.
HTTP_STATUSES = {
    400: "INTERNAL",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "UNIMPLEMENTED",
    429: "UNAVAILABLE",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}
#: The status of a stream the server reset before any gRPC status (PROTOCOL-HTTP2.md, "Errors"); others INTERNAL.
RESET_STATUSES: dict[int, str] = {
    ErrorCodes.REFUSED_STREAM: "UNAVAILABLE",
    ErrorCodes.CANCEL: "CANCELLED",
    ErrorCodes.ENHANCE_YOUR_CALM: "RESOURCE_EXHAUSTED",
    ErrorCodes.INADEQUATE_SECURITY: "PERMISSION_DENIED",
}
#: The largest reply kept, compressed or not: grpcio's default limit on a received message.
MAX_REPLY_BYTES = 4 * 1024 * 1024
#: Request headers the call itself sets; metadata of the same name is left out.
RESERVED_HEADERS = frozenset(
    {"content-type", "te", "user-agent", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "host"}
)
_MESSAGE_PREFIX = struct.Struct(">BI")  # compressed flag, length
_READ_SIZE = 65_536
#: Where an HTTP CONNECT proxy is named, first found first (grpcio reads the first three), and where it is not.
PROXY_VARIABLES = ("grpc_proxy", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")
NO_PROXY_VARIABLES = ("no_grpc_proxy", "no_proxy", "NO_PROXY")


class CallError(Exception):
    """A call that did not end OK: `code` is a STATUS_NAMES name, `details` the grpc-status-details-bin bytes."""

    def __init__(self, code: str, message: str, details: bytes | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy that tunnels the connection with CONNECT, as grpcio uses https_proxy."""

    host: str
    port: int
    authorization: str | None = None  # Proxy-Authorization, from the URL's user:password

    def __repr__(self) -> str:  # never the credentials
        return f"Proxy({self.host}:{self.port})"


def proxy_for(host: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy the environment names for `host`, unless a no-proxy entry covers it (`*`, the name, a parent
    domain, an address or a CIDR block)."""
    variable = next((name for name in PROXY_VARIABLES if environ.get(name, "").strip()), None)
    if variable is None:
        return None
    url = environ[variable].strip()
    exempt = next((environ[name] for name in NO_PROXY_VARIABLES if environ.get(name, "").strip()), "")
    if any(_covers(entry.strip(), host) for entry in exempt.split(",") if entry.strip()):
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(
            f"{variable}: {parts.scheme}://{parts.hostname or ''} is not an http:// proxy, which gRPC tunnels through "
            "with CONNECT (set grpc_proxy to one, or no_grpc_proxy to the collector's host)"
        )
    authorization = None
    if parts.username is not None:
        password = unquote(parts.password or "")
        credentials = base64.b64encode(f"{unquote(parts.username)}:{password}".encode()).decode()
        secrets.register(password)
        secrets.register(credentials)
        authorization = f"Basic {credentials}"
    return Proxy(parts.hostname, parts.port or 80, authorization)


def _covers(entry: str, host: str) -> bool:
    if entry == "*":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    name = entry.lstrip(".").rsplit(":", 1)[0] if entry.count(":") == 1 else entry.lstrip(".")
    return host == name or host.endswith("." + name)


class _Stream:
    """What one call's stream received, filled in by the connection's reader."""

    __slots__ = ("body", "broken", "ended", "headers", "oversized", "reset", "trailers")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.trailers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.ended = asyncio.Event()
        self.reset: int | None = None  # the RST_STREAM code, when the server reset it
        self.broken: str | None = None  # why the connection failed under it
        self.oversized = False


class _Connection:
    """One HTTP/2 connection: calls send on it, a reader task feeds h2 and wakes the calls' streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self._streams: dict[int, _Stream] = {}
        self._window = asyncio.Event()  # set when the server opens flow-control window (or the connection fails)
        self.closed_because: str | None = None  # set once no new call may start here
        self._h2.initiate_connection()
        self._writer.write(self._h2.data_to_send())
        self._reading = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, host: str, port: int, tls: ssl.SSLContext | None, proxy: Proxy | None) -> _Connection:
        if proxy is None:
            reader, writer = await asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None)
        else:
            reader, writer = await _tunnel(proxy, host, port)
            if tls is not None:
                await writer.start_tls(tls, server_hostname=host)
        if tls is not None:
            negotiated = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            if negotiated != "h2":
                writer.close()
                raise ConnectionError(f"the server did not agree to HTTP/2 over TLS (ALPN: {negotiated})")
        return cls(reader, writer)

    @property
    def idle(self) -> bool:
        return not self._streams

    async def call(self, headers: list[tuple[str, str]], message: bytes) -> _Stream:
        """Send one request on a new stream and wait for the whole answer (or the connection's failure)."""
        if self.closed_because is not None:
            raise ConnectionError(self.closed_because)
        stream_id = self._h2.get_next_available_stream_id()
        stream = self._streams[stream_id] = _Stream()
        try:
            self._h2.send_headers(stream_id, headers)
            with contextlib.suppress(h2.exceptions.StreamClosedError):  # answered before the whole message: see why
                await self._send_data(stream_id, message)
            await stream.ended.wait()
        finally:
            del self._streams[stream_id]
            if not stream.ended.is_set():  # cancelled (the deadline): tell the server to stop
                with contextlib.suppress(h2.exceptions.H2Error):
                    self._h2.reset_stream(stream_id, ErrorCodes.CANCEL)
                    self._writer.write(self._h2.data_to_send())
        return stream

    async def _send_data(self, stream_id: int, message: bytes) -> None:
        """The message in frames as large as the server's flow-control window and frame size allow."""
        rest = memoryview(message)
        while True:
            room = min(self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size)
            if room <= 0:
                self._window.clear()
                await self._window.wait()
                if self.closed_because is not None:
                    raise ConnectionError(self.closed_because)
                continue
            chunk, rest = rest[:room], rest[room:]
            self._h2.send_data(stream_id, chunk, end_stream=not rest)
            await self._flush()
            if not rest:
                return

    async def _flush(self) -> None:
        self._writer.write(self._h2.data_to_send())
        await self._writer.drain()

    async def _read(self) -> None:
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    raise ConnectionError("the server closed the connection")
                for event in self._h2.receive_data(data):
                    self._on(event)
                await self._flush()  # settings and ping acknowledgements, window updates
        except Exception as error:  # noqa: BLE001  # whatever a broken or hostile peer causes ends this connection
            self._fail(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):  # every byte is acknowledged: no stream can stall the others
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            last = event.last_stream_id or 0
            self.closed_because = f"the server is going away (GOAWAY, {_error_code_name(event.error_code or 0)})"
            for stream_id, waiting in self._streams.items():
                if stream_id > last:  # never processed: safe to try again elsewhere
                    self._break(waiting, self.closed_because)
        stream = self._streams.get(getattr(event, "stream_id", 0))
        if stream is None:
            return
        if isinstance(event, h2.events.ResponseReceived):
            stream.headers = event.headers
        elif isinstance(event, h2.events.TrailersReceived):
            stream.trailers = event.headers
        elif isinstance(event, h2.events.DataReceived):
            if len(stream.body) + len(event.data) > MAX_REPLY_BYTES:
                stream.oversized = True
                stream.ended.set()
                with contextlib.suppress(h2.exceptions.StreamClosedError):  # its last frame: nothing to stop
                    self._h2.reset_stream(event.stream_id, ErrorCodes.CANCEL)
            else:
                stream.body += event.data
        elif isinstance(event, h2.events.StreamReset):
            stream.reset = event.error_code
            stream.ended.set()
        elif isinstance(event, h2.events.StreamEnded):
            stream.ended.set()

    def _fail(self, reason: str) -> None:
        self.closed_because = reason
        for stream in self._streams.values():
            self._break(stream, reason)
        self._window.set()
        self._writer.close()

    @staticmethod
    def _break(stream: _Stream, reason: str) -> None:
        if not stream.ended.is_set():
            stream.broken = reason
            stream.ended.set()

    async def close(self) -> None:
        """Say GOAWAY, end any call still waiting (UNAVAILABLE), close the socket."""
        if self.closed_because is None:
            with contextlib.suppress(h2.exceptions.H2Error):
                self._h2.close_connection()
                self._writer.write(self._h2.data_to_send())
            self._fail("the channel was closed")  # the socket flushes the GOAWAY as it closes
        self._reading.cancel()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._reading
            await self._writer.wait_closed()


class Channel:
    """Unary calls to one server, on one connection at a time, made at the first call and after one breaks."""

    def __init__(
        self, host: str, port: int, tls: ssl.SSLContext | None, *, user_agent: str, proxy: Proxy | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.user_agent = user_agent
        self.proxy = proxy
        self.authority = _authority(host, port)
        self._connection: _Connection | None = None
        self._retired: set[_Connection] = set()  # replaced, closed when their last call ends
        self._opening = asyncio.Lock()

    async def call(
        self, path: str, message: bytes, *, metadata: Mapping[str, str], timeout: float, gzip: bool
    ) -> bytes | None:
        """The reply message of one call (None when an OK answer carries none that can be read); CallError else."""
        framed = _frame(message, gzip)
        headers = self._headers(path, metadata, timeout, gzip)
        connection = None
        try:
            async with asyncio.timeout(timeout):
                connection = await self._connected()
                try:
                    stream = await connection.call(headers, framed)
                finally:
                    if connection in self._retired and connection.idle:
                        self._retired.discard(connection)
                        await connection.close()
        except TimeoutError:
            if connection is not None and connection.closed_because is None:  # perhaps a path that drops packets:
                connection.closed_because = f"a call on it had no answer within {timeout:g} s"  # the next call redials
            raise CallError("DEADLINE_EXCEEDED", f"no answer within {timeout:g} s") from None
        except (OSError, h2.exceptions.H2Error) as error:
            raise CallError("UNAVAILABLE", f"{type(error).__name__}: {error}") from None
        return _reply(stream)

    async def _connected(self) -> _Connection:
        async with self._opening:
            current = self._connection
            if current is None or current.closed_because is not None:
                if current is not None:
                    if current.idle:
                        await current.close()
                    else:
                        self._retired.add(current)
                self._connection = None
                current = self._connection = await _Connection.open(self.host, self.port, self.tls, self.proxy)
            return current

    def _headers(self, path: str, metadata: Mapping[str, str], timeout: float, gzip: bool) -> list[tuple[str, str]]:
        headers = [
            (":method", "POST"),
            (":scheme", "https" if self.tls else "http"),
            (":path", path),
            (":authority", self.authority),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
            ("user-agent", self.user_agent),
            ("grpc-timeout", grpc_timeout(timeout)),
            ("grpc-accept-encoding", "identity,gzip"),
        ]
        if gzip:
            headers.append(("grpc-encoding", "gzip"))
        headers += [(k, v) for k, v in metadata.items() if not k.startswith(":") and k not in RESERVED_HEADERS]
        return headers

    async def close(self) -> None:
        connections = [*self._retired, *([self._connection] if self._connection else [])]
        self._connection, self._retired = None, set()
        for connection in connections:
            await connection.close()


def address(url: str) -> tuple[str, int]:
    """(host, port) from `scheme://host:port/path` or `host:port`: gRPC ignores scheme and path; port 443 if none."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    return parts.hostname or "localhost", parts.port or 443


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _tunnel(proxy: Proxy, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to host:port through the proxy's CONNECT tunnel; ConnectionError if it refuses."""
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    authority = _authority(host, port)
    request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
    if proxy.authorization is not None:
        request += f"Proxy-Authorization: {proxy.authorization}\r\n"
    writer.write(f"{request}\r\n".encode())
    try:
        head = await reader.readuntil(b"\r\n\r\n")  # at most the reader's limit, 64 KiB
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        raise ConnectionError(f"the proxy {proxy.host}:{proxy.port} ended the CONNECT exchange") from None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if status_line.split(" ", 2)[1:2] != ["200"]:
        writer.close()
        raise ConnectionError(f"the proxy {proxy.host}:{proxy.port} refused the tunnel: {status_line[:200]}")
    return reader, writer


def grpc_timeout(seconds: float) -> str:
    """The grpc-timeout header: at most eight digits and a unit, rounded up so the server never cuts it shorter."""
    milliseconds = math.ceil(seconds * 1000)
    if milliseconds < 100_000_000:
        return f"{milliseconds}m"
    return f"{min(math.ceil(seconds), 99_999_999)}S"


def _frame(message: bytes, gzip: bool) -> bytes:
    if gzip:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # the gzip format, as grpc-encoding says
        message = compressor.compress(message) + compressor.flush()
    return _MESSAGE_PREFIX.pack(gzip, len(message)) + message


def _reply(stream: _Stream) -> bytes | None:
    """The reply message of a finished stream, or the CallError its answer amounts to."""
    if stream.broken is not None:
        raise CallError("UNAVAILABLE", stream.broken)
    if stream.oversized:
        raise CallError("RESOURCE_EXHAUSTED", f"the reply is over {MAX_REPLY_BYTES} bytes")
    headers = dict(stream.headers)
    status_fields = dict(stream.trailers) if stream.trailers else headers  # or a Trailers-Only answer
    if stream.reset is not None and b"grpc-status" not in status_fields:
        code = RESET_STATUSES.get(stream.reset, "INTERNAL")
        raise CallError(code, f"the server reset the stream ({_error_code_name(stream.reset)})")
    http_status = headers.get(b":status", b"")
    if http_status != b"200":
        body = bytes(stream.body[:200]).decode("utf-8", "replace")
        number = int(http_status) if http_status.isdigit() else 0
        raise CallError(HTTP_STATUSES.get(number, "UNKNOWN"), f"HTTP status {number}: {body}".rstrip(": "))
    if not headers.get(b"content-type", b"").startswith(b"application/grpc"):
        raise CallError("UNKNOWN", f"not a gRPC answer (content-type {headers.get(b'content-type', b'')!r})")
    raw_code = status_fields.get(b"grpc-status")
    if raw_code is None:
        raise CallError("INTERNAL", "the server ended the call without a grpc-status")
    number = int(raw_code) if raw_code.isdigit() else -1
    code = STATUS_NAMES[number] if 0 <= number < len(STATUS_NAMES) else "UNKNOWN"
    if code != "OK":
        message = unquote(status_fields.get(b"grpc-message", b"").decode("ascii", "replace"), errors="replace")
        raise CallError(code, message, _unbase64(status_fields.get(b"grpc-status-details-bin")))
    return _message(bytes(stream.body), headers.get(b"grpc-encoding", b"identity"))


def _message(body: bytes, encoding: bytes) -> bytes | None:
    """The length-prefixed message a unary reply carries, decompressed; None if there is none to read."""
    if len(body) < _MESSAGE_PREFIX.size:
        return None
    compressed, length = _MESSAGE_PREFIX.unpack_from(body)
    message = body[_MESSAGE_PREFIX.size : _MESSAGE_PREFIX.size + length]
    if len(message) < length:
        return None
    if not compressed:
        return message
    if encoding != b"gzip":
        return None
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = decompressor.decompress(message, MAX_REPLY_BYTES)
    except zlib.error:
        return None
    return plain if decompressor.eof else None  # not the whole stream: truncated, or larger than we keep


def _unbase64(value: bytes | None) -> bytes | None:
    """A -bin header's bytes: base64, padded or not (gRPC servers may leave the padding out)."""
    if value is None:
        return None
    try:
        return base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
    except binascii.Error:
        return None


def _error_code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"error code {code}"
