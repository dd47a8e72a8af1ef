"""A real HTTP server on 127.0.0.1 that serves scripted responses, for source tests.

Each request pops the next scripted Response (the last one repeats), so a test
can say "503, then 200 with this body" and assert on what the bridge did. A
path may have a script of its own (`route`), so one server can play many
different upstreams at once.
"""

from __future__ import annotations

import gzip
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bridge.serverthread import ServerThread


def serve_tls(server: socketserver.TCPServer, tls: tuple[str, str] | None) -> None:
    """Make a loopback test server answer over TLS with this (certificate file, key file), if given."""
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)


@dataclass
class Response:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    gzip: bool = False
    delay: float = 0.0  # seconds before the body is sent
    trickle: float = 0.0  # seconds between 64-byte chunks of the body


@dataclass
class Request:
    path: str
    headers: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        response = owner._next(Request(self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = response.body.encode() if isinstance(response.body, str) else response.body
        if response.gzip:
            body = gzip.compress(body)
        self.send_response(response.status)
        headers = {"Content-Type": "text/plain; version=0.0.4", **response.headers}
        if response.gzip:
            headers["Content-Encoding"] = "gzip"
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if response.delay:
            time.sleep(response.delay)
        try:
            step = 64 if response.trickle else len(body) or 1
            for offset in range(0, len(body), step):
                self.wfile.write(body[offset : offset + step])
                if response.trickle:
                    self.wfile.flush()
                    time.sleep(response.trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ExpositionServer

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: a client hanging up mid-body (what the hostile-input tests provoke) is not the server's error."""


class ExpositionServer(ServerThread):
    thread_name = "exposition-server"

    def __init__(self) -> None:
        self.script: list[Response] = [Response()]
        self.routes: dict[str, list[Response]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def _make_server(self) -> _Server:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        return server

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}/metrics"

    def respond(self, *responses: Response) -> None:
        with self._lock:
            self.script = list(responses)

    def route(self, path: str, *responses: Response) -> str:
        """Script the answers for one path; returns that path's URL."""
        with self._lock:
            self.routes[path] = list(responses)
        host, port = self.server_address
        return f"http://{host}:{port}{path}"

    def requests_to(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def _next(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            script = self.routes.get(request.path, self.script)
            return script.pop(0) if len(script) > 1 else script[0]
