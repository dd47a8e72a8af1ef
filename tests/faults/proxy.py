"""Fault fronts on 127.0.0.1: put one between the bridge and a real server, and script how it fails.

`HttpFaultProxy` forwards HTTP/1.1 requests to a real server (a receiver, the
Datadog intake, the Cerebras simulator) or answers for it with a fault.
`TcpFaultProxy` does the same for any TCP protocol (gRPC) at connection
level. Both choose a fault per request (per connection for TCP):

    proxy.next(status(503), count=2)          # the next two requests
    proxy.during(t0, t0 + 1800, refuse())     # a window of the proxy's clock (simulated time with a ManualClock)

then forward. Every request is recorded with the clock's time, the fault
applied and the status the client got, so a test can count requests per
minute or see which attempt hit which fault.

`refuse` closes the listening socket for its time window (clients get
ECONNREFUSED) and resets open connections when the window starts; `hang`
and `lose_answer` hold a request until `release()` or `stop()`.
"""

from __future__ import annotations

import abc
import contextlib
import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Self
from urllib.parse import urlsplit

from bridge.clock import Clock

HOST = "127.0.0.1"
_POLL_SECONDS = 0.005  # how quickly a `refuse` window opens or closes the listening socket
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
    "host",
    "te",
    "upgrade",
    "trailer",
}
_JUNK_LINES = b'\nthis line is { not an exposition\nrequests_count_total{endpoint="x" 12\n# TYPE\n\xff\xfe bytes\n'


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 0
    retry_after: float | None = None
    seconds: float = 0.0
    size: int = 0


def forward() -> Fault:
    return Fault("forward")


def status(code: int, retry_after: float | None = None) -> Fault:
    """Answer `code` (with Retry-After when given) instead of the server."""
    return Fault("status", status=code, retry_after=retry_after)


def refuse() -> Fault:
    """Connection refused: the listening socket is closed (time windows only)."""
    return Fault("refuse")


def reset() -> Fault:
    """Accept, then reset the connection without an answer."""
    return Fault("reset")


def hang() -> Fault:
    """Take the request and answer nothing until released (a stuck backend)."""
    return Fault("hang")


def lose_answer() -> Fault:
    """Forward, so the server has it, then hang: the client never learns it was accepted."""
    return Fault("lose_answer")


def reset_mid_body() -> Fault:
    """Start a 200 answer and reset the connection halfway through its body."""
    return Fault("reset_mid_body")


def stall_body(seconds: float) -> Fault:
    """Send a 200 head at once and the body only after `seconds`."""
    return Fault("stall_body", seconds=seconds)


def huge_body(size: int) -> Fault:
    """A 200 whose body is `size` bytes of filler, streamed."""
    return Fault("huge_body", size=size)


def bad_gzip() -> Fault:
    """A 200 that says Content-Encoding: gzip and is not gzip."""
    return Fault("bad_gzip")


def junk_lines() -> Fault:
    """Forward, and append malformed exposition lines to a 200 body (valid lines stay valid)."""
    return Fault("junk_lines")


@dataclass
class Exchange:
    at: float  # the proxy's clock when the request arrived
    method: str
    path: str
    fault: str
    status: int | None = None  # what the client got, once answered; None: no answer (reset, hang, refused)


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN: the peer sees 'connection reset'."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class _FaultFront(abc.ABC):
    """The script, the record, the listening socket and the open connections, shared by both proxies."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.exchanges: list[Exchange] = []
        self._queue: list[Fault] = []
        self._windows: list[tuple[float, float, Fault]] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._release = threading.Event()
        self._stopped = threading.Event()
        self._hung = 0
        self._listener: socket.socket | None = self._bind(0)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._listen, name=type(self).__name__, daemon=True)

    # -- script --------------------------------------------------------------------------------
    def next(self, fault: Fault, count: int = 1) -> None:
        with self._lock:
            self._queue.extend([fault] * count)

    def during(self, start: float, end: float, fault: Fault) -> None:
        """Apply `fault` to requests arriving in [start, end) of the proxy's clock."""
        with self._lock:
            self._windows.append((start, end, fault))

    def heal(self) -> None:
        """Forget the script: forward everything from now on."""
        with self._lock:
            self._queue.clear()
            self._windows.clear()

    def release(self) -> None:
        """Let every held request go (its connection is reset); later `hang`s hold again."""
        with self._lock:
            release, self._release = self._release, threading.Event()
        release.set()

    @property
    def hung(self) -> int:
        """Requests held right now."""
        with self._lock:
            return self._hung

    def _window_fault(self, now: float) -> Fault | None:
        return next((fault for start, end, fault in self._windows if start <= now < end), None)

    def _decide(self, method: str, path: str) -> tuple[Fault, Exchange]:
        """The fault for a request arriving now, recorded at once (its answer may take a while)."""
        now = self.clock.now()
        with self._lock:
            fault = self._queue.pop(0) if self._queue else self._window_fault(now) or forward()
            if fault.kind == "refuse":  # reached us before the listener closed: as good as refused
                fault = reset()
            exchange = Exchange(now, method, path, fault.kind)
            self.exchanges.append(exchange)
        return fault, exchange

    def _hold(self) -> None:
        """Block this connection's thread until release() or stop()."""
        with self._lock:
            release = self._release
            self._hung += 1
        try:
            while not (release.wait(0.05) or self._stopped.is_set()):
                pass
        finally:
            with self._lock:
                self._hung -= 1

    # -- sockets -----------------------------------------------------------------------------------
    def _bind(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, port))
        listener.listen(64)
        listener.settimeout(_POLL_SECONDS)
        return listener

    def _listen(self) -> None:
        refusing = False
        while not self._stopped.is_set():
            with self._lock:
                window = self._window_fault(self.clock.now())
            now_refusing = window is not None and window.kind == "refuse"
            if now_refusing != refusing:
                refusing = now_refusing
                self._set_listening(not refusing)
            if self._listener is None:
                time.sleep(_POLL_SECONDS)
                continue
            try:
                connection, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            connection.settimeout(None)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stall per answer
            with self._lock:
                self._connections.add(connection)
            threading.Thread(target=self._serve_and_forget, args=(connection,), daemon=True).start()

    def _set_listening(self, listening: bool) -> None:
        if listening:
            self._listener = self._bind(self.port)
            return
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._reset_connections()

    def _reset_connections(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            _reset(connection)

    def _serve_and_forget(self, connection: socket.socket) -> None:
        try:
            self._serve(connection)
        except OSError:
            pass  # the client went away, or we reset it
        finally:
            with self._lock:
                self._connections.discard(connection)
            _reset(connection)

    @abc.abstractmethod
    def _serve(self, connection: socket.socket) -> None:
        """Handle one accepted connection (on its own thread) until it is done."""

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._release.set()
        self._thread.join()
        if self._listener is not None:
            self._listener.close()
        self._reset_connections()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class HttpFaultProxy(_FaultFront):
    """HTTP/1.1 (keep-alive, Content-Length bodies) to `target`, e.g. http://127.0.0.1:4318."""

    def __init__(self, target: str, clock: Clock) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or HOST, parts.port or 80)
        super().__init__(clock)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _serve(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        while True:
            request = _read_request(reader)
            if request is None:
                return
            method, path, headers, body = request
            fault, exchange = self._decide(method, path)
            exchange.status = self._apply(connection, fault, method, path, headers, body)
            if exchange.status is None:
                return

    def _apply(
        self, connection: socket.socket, fault: Fault, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> int | None:
        """Carry out one fault; the status the client got, or None when the connection must go."""
        kind = fault.kind
        if kind in ("forward", "junk_lines"):
            code, reason, reply_headers, reply = self._forward(method, path, headers, body)
            if kind == "junk_lines" and code == 200:
                reply += _JUNK_LINES
            _send(connection, code, reason, reply_headers, reply)
            return code
        if kind == "status":
            extra = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            error = json.dumps({"errors": [f"injected {fault.status}"], "message": f"injected {fault.status}"})
            _send(connection, fault.status, "Injected", {"Content-Type": "application/json", **extra}, error.encode())
            return fault.status
        if kind == "lose_answer":
            self._forward(method, path, headers, body)
            self._hold()
            return None
        if kind == "hang":
            self._hold()
            return None
        if kind == "reset_mid_body":
            _send_head(connection, 200, {"Content-Type": "text/plain", "Content-Length": "1000"})
            connection.sendall(b"x" * 500)
            return None
        if kind == "stall_body":
            _send_head(connection, 200, {"Content-Type": "text/plain", "Content-Length": "2"})
            self._stopped.wait(fault.seconds)
            connection.sendall(b"\n\n")
            return None
        if kind == "huge_body":
            _send_head(connection, 200, {"Content-Type": "text/plain", "Content-Length": str(fault.size)})
            chunk = b"# filler line of a body far too large to accept\n" * 20_000
            for offset in range(0, fault.size, len(chunk)):
                connection.sendall(chunk[: fault.size - offset])
            return 200
        if kind == "bad_gzip":
            body = b"this is not gzip at all"
            _send(connection, 200, "OK", {"Content-Type": "text/plain", "Content-Encoding": "gzip"}, body)
            return 200
        assert kind == "reset", kind
        return None

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, dict[str, str], bytes]:
        upstream = http.client.HTTPConnection(*self.target, timeout=30)
        try:
            upstream.request(
                method,
                path,
                body=body or None,
                headers={k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP},
            )
            response = upstream.getresponse()
            reply = response.read()
            reply_headers = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return response.status, response.reason, reply_headers, reply
        finally:
            upstream.close()


def _read_request(reader: BinaryIO) -> tuple[str, str, dict[str, str], bytes] | None:
    line = reader.readline()
    if not line.strip():
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
    return method, path, headers, reader.read(length) if length else b""


def _head(code: int, headers: dict[str, str], reason: str = "OK") -> bytes:
    return (f"HTTP/1.1 {code} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode(
        "latin-1"
    )


def _send_head(connection: socket.socket, code: int, headers: dict[str, str]) -> None:
    connection.sendall(_head(code, headers))


def _send(connection: socket.socket, code: int, reason: str, headers: dict[str, str], body: bytes) -> None:
    connection.sendall(_head(code, {**headers, "Content-Length": str(len(body))}, reason) + body)


class TcpFaultProxy(_FaultFront):
    """Any TCP protocol to `target` (host, port), faults per connection: forward, refuse, reset, hang.

    A connection established before a fault window began is cut the next time
    the client sends on it, so a client holding one long-lived connection
    (gRPC) meets the fault too.
    """

    def __init__(self, target: tuple[str, int], clock: Clock) -> None:
        self.target = target
        super().__init__(clock)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _forwarding(self) -> bool:
        with self._lock:
            fault = self._window_fault(self.clock.now())
        return fault is None or fault.kind == "forward"

    def _serve(self, connection: socket.socket) -> None:
        fault, _ = self._decide("CONNECT", "")
        if fault.kind == "reset":
            return
        if fault.kind == "hang":
            threading.Thread(target=_pump, args=(connection, None, None), daemon=True).start()
            self._hold()
            return
        upstream = socket.create_connection(self.target)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            answers = threading.Thread(target=_pump, args=(upstream, connection, None), daemon=True)
            answers.start()
            _pump(connection, upstream, self._forwarding)
            answers.join()
        finally:
            _reset(upstream)


def _pump(source: socket.socket, sink: socket.socket | None, forwarding: Callable[[], bool] | None) -> None:
    """Copy source to sink (None: swallow) until either side closes or `forwarding()` turns false."""
    try:
        while data := source.recv(65536):
            if forwarding is not None and not forwarding():
                break
            if sink is not None:
                sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
