"""A remote-write receiver on 127.0.0.1 that records each request and answers as scripted.

It decodes what it receives as a receiver would (snappy block format, then the
WriteRequest message classes built from prompb's .proto), so a test reads what
the wire carried. Requests are answered 204 unless answers were scripted.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cramjam

from bridge.serverthread import ServerThread
from tests.remote_write_proto import WriteRequest
from tests.servers import serve_tls


@dataclass(frozen=True)
class Answer:
    status: int = 204
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # lower-case names
    body: bytes  # as sent (compressed)
    answer: Answer

    @property
    def request(self) -> Any:
        message = WriteRequest()
        message.ParseFromString(bytes(cramjam.snappy.decompress_raw(self.body)))
        return message


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        owner = self.server.owner
        answer = owner.next_answer()
        owner.record(Received({k.lower(): v for k, v in self.headers.items()}, body, answer))
        payload = answer.body.encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: RemoteWriteReceiver


class RemoteWriteReceiver(ServerThread):
    thread_name = "remote-write-receiver"

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.tls = tls  # (cert file, key file) in PEM: serve HTTPS
        self.received: list[Received] = []
        self._answers: collections.deque[Answer] = collections.deque()
        self._lock = threading.Lock()

    def _make_server(self) -> _Server:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        serve_tls(server, self.tls)
        return server

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"{'https' if self.tls else 'http'}://{host}:{port}/api/v1/write"

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self._answers.extend(answers)

    def next_answer(self) -> Answer:
        with self._lock:
            return self._answers.popleft() if self._answers else Answer()

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)
