"""A stand-in for Datadog's dashboards and monitors API (v1) on 127.0.0.1: NOT Datadog, a test double.

It answers the calls `metrics-bridge dashboards apply datadog` makes (list, create,
update), keeps what it was sent, and validates every body strictly against
datadog-api-client's own models (`Dashboard`, `Monitor`, `MonitorUpdateRequest`):
an unknown key or an unparsable widget is a 400, as a real body error would be.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from datadog_api_client.model_utils import OpenApiModel
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest

from bridge.serverthread import ServerThread
from tests.receivers.datadog_intake import ModelMismatch, deserialize_strict

Answer = tuple[int, Any]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: DatadogApiStandIn


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        keys = (self.headers.get("DD-API-KEY"), self.headers.get("DD-APPLICATION-KEY"))
        status, answer = self.server.api.handle(self.command, self.path, keys, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class DatadogApiStandIn(ServerThread):
    thread_name = "datadog-api-stand-in"

    def __init__(self, api_key: str, app_key: str) -> None:
        self.keys = (api_key, app_key)
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.monitors: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _make_server(self) -> _Server:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.api = self
        return server

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}"

    def handle(self, method: str, target: str, keys: tuple[str | None, str | None], body: Any) -> Answer:
        if keys != self.keys:
            return 403, {"errors": ["Forbidden"]}
        url = urlsplit(target)
        parts = url.path.strip("/").split("/")  # api, v1, kind[, id]
        with self._lock:
            self.calls.append((method, url.path))
            try:
                return self._route(method, parts[2], parts[3] if len(parts) > 3 else None, parse_qs(url.query), body)
            except ModelMismatch as exc:
                return 400, {"errors": [str(exc)]}

    @staticmethod
    def _valid(body: Any, model: type[OpenApiModel]) -> dict[str, Any]:
        deserialize_strict(body, model)
        return dict(body)

    def _route(self, method: str, kind: str, id_: str | None, query: dict[str, list[str]], body: Any) -> Answer:
        if kind == "dashboard":
            if method == "GET" and id_ is None:
                start, count = int(query.get("start", ["0"])[0]), int(query.get("count", ["100"])[0])
                listed = [{"id": i, "title": d["title"]} for i, d in self.dashboards.items()][start : start + count]
                return 200, {"dashboards": listed}
            if method == "POST" and id_ is None:
                id_ = f"abc-def-{len(self.dashboards):03d}"
            elif method != "PUT" or id_ not in self.dashboards:
                return 404, {"errors": ["Dashboard not found"]}
            self.dashboards[id_] = self._valid(body, Dashboard)
            return 200, {**self.dashboards[id_], "id": id_}
        if kind == "monitor":
            if method == "GET" and id_ is None:
                name = query.get("name", [""])[0]
                return 200, [{**m, "id": i} for i, m in self.monitors.items() if name in m["name"]]
            if method == "POST" and id_ is None:
                number = 1000 + len(self.monitors)
                self.monitors[number] = self._valid(body, Monitor)
                return 200, {**self.monitors[number], "id": number}
            if method == "PUT" and id_ is not None and int(id_) in self.monitors:
                self.monitors[int(id_)] = {**self.monitors[int(id_)], **self._valid(body, MonitorUpdateRequest)}
                return 200, {**self.monitors[int(id_)], "id": int(id_)}
            return 404, {"errors": ["Monitor not found"]}
        return 404, {"errors": ["no such API in this stand-in"]}
