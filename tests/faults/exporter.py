"""A Prometheus exporter on 127.0.0.1 whose every answer is unique and remembered.

For the SIGKILL scenario, which runs in real time with a fast scrape
interval: each 200 carries one gauge sample `fault_serial N` stamped with its
own timestamp, so every scrape the bridge took is one distinct point that
must reach the receiver, whatever window the bridge's clock assigned it.
`pause()` answers 503 (no new data) so a test can wait for the bridge to
spool what it has before killing it.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bridge.serverthread import ServerThread

SERIAL_METRIC = "fault_serial"
_BASE_MS = 1_800_000_000_000  # the timestamp of serial 0; serial n is n seconds later


def serial_timestamp_ms(serial: int) -> int:
    return _BASE_MS + serial * 1000


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        body, status = self.server.exporter._answer()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    exporter: SerialExporter


class SerialExporter(ServerThread):
    thread_name = "serial-exporter"

    def __init__(self) -> None:
        self.served: list[int] = []  # serials answered with a 200
        self._paused = False
        self._lock = threading.Lock()

    def _make_server(self) -> _Server:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.exporter = self
        return server

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}/metrics"

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def _answer(self) -> tuple[bytes, int]:
        with self._lock:
            if self._paused:
                return b"paused\n", 503
            serial = len(self.served)
            self.served.append(serial)
        line = f"{SERIAL_METRIC} {serial} {serial_timestamp_ms(serial)}\n"
        return f"# TYPE {SERIAL_METRIC} gauge\n{line}".encode(), 200
