"""A stdlib HTTP server on a daemon thread: the embedded simulator's, and the test servers'.

ThreadingHTTPServer is all these need (a few requests per second on loopback);
this base owns what they all share: serving from a background thread, a short
poll so stop() is quick, and a clean stop that closes the socket.
"""

from __future__ import annotations

import threading
from http.server import HTTPServer
from typing import ClassVar, TypeVar

_Self = TypeVar("_Self", bound="ServerThread")


class ServerThread:
    thread_name: ClassVar[str] = "http-server"
    _server: HTTPServer | None = None
    _thread: threading.Thread | None = None

    def _make_server(self) -> HTTPServer:
        """Build the bound (not yet serving) server."""
        raise NotImplementedError

    @property
    def server_address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError(f"{self.thread_name} not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"{self.thread_name} already started")
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self: _Self) -> _Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
