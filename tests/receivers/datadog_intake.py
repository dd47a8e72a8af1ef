"""A real Datadog intake on 127.0.0.1 for tests: strict on the wire, faithful in storage, scriptable in failure.

- Checks `DD-API-KEY` (403 with Datadog's JSON error text otherwise) and
  `Content-Encoding` (gzip, deflate, zstd1 or none), enforces the size limits
  (413), decompresses.
- Validates every `/api/v2/series` body by deserializing it into
  datadog-api-client's own `MetricPayload` model and every `/api/v1/check_run`
  body into `ServiceChecks` (the official client is the validator); a body
  that does not fit, or carries keys the model does not know, gets a 400.
- Stores points as Datadog does: the last value per (metric, tag set, host,
  timestamp), so a re-sent point overwrites instead of adding. With a clock,
  points more than 1 h old or 10 min ahead are not stored but counted.
- `fail_next` scripts answers (403, 413, 429/503 with Retry-After, ...) for
  the next matching requests, so fault suites can reuse it; `send_next`
  sends the next answers a hostile way (tests/receivers/hostile.py: trickled,
  endless), whatever they say.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zstandard
from datadog_api_client import Configuration
from datadog_api_client.model_utils import (
    ModelNormal,
    ModelSimple,
    OpenApiModel,
    UnparsedObject,
    validate_and_convert_types,
)
from datadog_api_client.v1.model.service_checks import ServiceChecks
from datadog_api_client.v2.model.metric_payload import MetricPayload

from bridge.clock import Clock
from bridge.serverthread import ServerThread
from tests.receivers import hostile

SERIES_PATH = "/api/v2/series"
CHECK_RUN_PATH = "/api/v1/check_run"
VALIDATE_PATH = "/api/v1/validate"
MAX_COMPRESSED = 512_000
MAX_UNCOMPRESSED = 5_242_880

#: Datadog's answers, body included, as its intake sends them.
ERROR_TEXT = {
    400: "Payload is not in the expected format",
    403: "Forbidden",
    408: "Request timeout",
    413: "Payload too large",
    429: "Too many requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_CLIENT_CONFIGURATION = Configuration()

#: (status, JSON body, extra headers) of one answer
Answer = tuple[int, dict[str, Any], dict[str, str]]
#: what Datadog keeps one value for: (metric, tags, host resources, timestamp)
PointKey = tuple[str, frozenset[str], tuple[tuple[str, str], ...], int]


class ModelMismatch(ValueError):
    """A body the official client's model does not accept."""


def deserialize_strict(data: Any, model: type[OpenApiModel]) -> Any:
    """Deserialize JSON data into an official model, failing where the client would silently cope.

    The client turns items it cannot parse into `UnparsedObject` and keeps
    unknown keys as extra properties; both are errors here, reported by path.
    """
    try:
        value = validate_and_convert_types(data, (model,), ["body"], True, True, _CLIENT_CONFIGURATION)
    except (TypeError, ValueError) as exc:
        raise ModelMismatch(f"body: {exc}") from None
    _reject_loose(value, "body")
    return value


def _reject_loose(node: Any, path: str) -> None:
    if isinstance(node, UnparsedObject):
        raise ModelMismatch(f"{path}: does not match the model ({dict(node._data_store)})")
    if isinstance(node, ModelSimple):
        _reject_loose(node.value, path)
        if node._unparsed:
            raise ModelMismatch(f"{path}: does not match {type(node).__name__}")
    elif isinstance(node, ModelNormal):
        unknown = set(node._data_store) - set(node.attribute_map)
        if unknown:
            raise ModelMismatch(f"{path}: unknown keys {sorted(unknown)} for {type(node).__name__}")
        for key, child in node._data_store.items():
            _reject_loose(child, f"{path}.{key}")
        if node._unparsed:
            raise ModelMismatch(f"{path}: does not match {type(node).__name__}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            _reject_loose(child, f"{path}[{index}]")


def decompress(body: bytes, encoding: str | None) -> bytes:
    if encoding in (None, "", "identity"):
        return body
    if encoding == "gzip":
        return zlib.decompress(body, wbits=31)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd1":
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


@dataclass(frozen=True)
class StoredPoint:
    metric: str
    type: int
    interval: int | None
    unit: str | None
    tags: frozenset[str]
    resources: tuple[tuple[str, str], ...]
    timestamp: int
    value: float

    def tag(self, key: str) -> str | None:
        prefix = key + ":"
        return next((t[len(prefix) :] for t in self.tags if t.startswith(prefix)), None)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    status: int
    json: Any = None  # the decompressed, parsed body (None if it could not be read)


@dataclass
class Failure:
    status: int
    retry_after: str | None
    path: str | None  # None: any path
    errors: list[str]
    after: int = 0  # matching requests still to answer normally before this failure


@dataclass
class _State:
    points: dict[PointKey, StoredPoint] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    out_of_range: int = 0
    failures: deque[Failure] = field(default_factory=deque)
    manners: deque[hostile.Manner] = field(default_factory=deque)
    hostile_sent: list[int] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    intake: DatadogIntake


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        intake = self.server.intake
        status, answer, extra = intake._handle("POST", self.path, dict(self.headers.items()), body)
        if intake.latency_seconds:  # a far backend's round trip (each request on its own thread)
            time.sleep(intake.latency_seconds)
        manner = intake._next_manner()
        if manner is None:
            self._answer(status, answer, extra)
        else:
            headers = {"Content-Type": "application/json", **extra}
            intake._record_hostile(hostile.send(self, status, headers, json.dumps(answer).encode(), manner))

    def do_GET(self) -> None:
        self._answer(*self.server.intake._handle("GET", self.path, dict(self.headers.items()), b""))

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class DatadogIntake(ServerThread):
    """Usage: `with DatadogIntake(api_keys={"k"}) as intake: ... intake.url ...`."""

    thread_name = "datadog-intake"

    def __init__(
        self,
        api_keys: set[str] | frozenset[str] = frozenset({"test-dd-key"}),
        *,
        clock: Clock | None = None,
        max_compressed: int = MAX_COMPRESSED,
        max_uncompressed: int = MAX_UNCOMPRESSED,
        latency_seconds: float = 0.0,
    ) -> None:
        self.api_keys = set(api_keys)
        self.latency_seconds = latency_seconds
        self.clock = clock
        self.max_compressed = max_compressed
        self.max_uncompressed = max_uncompressed
        self._state = _State()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle
    def _make_server(self) -> _Server:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.intake = self
        return server

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}"

    # ------------------------------------------------------------ scripting and inspection
    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: float | str | None = None,
        path: str | None = SERIES_PATH,
        errors: list[str] | None = None,
        after: int = 0,
    ) -> None:
        """Answer `count` requests to `path` (None: any) with `status` and Datadog's error body.

        Scripts apply in the order given; `after` lets that many matching requests
        through normally first (e.g. the first half of a split succeeds, the second fails).
        """
        retry = None if retry_after is None else str(retry_after)
        text = errors if errors is not None else [ERROR_TEXT.get(status, f"HTTP {status}")]
        with self._lock:
            self._state.failures.append(Failure(status, retry, path, text, after))
            self._state.failures.extend(Failure(status, retry, path, text) for _ in range(count - 1))

    def send_next(self, manner: hostile.Manner, count: int = 1) -> None:
        """Send the answers to the next `count` POSTs `manner`'s way (what they say is decided as usual)."""
        with self._lock:
            self._state.manners.extend([manner] * count)

    @property
    def hostile_sent(self) -> list[int]:
        """Per hostile answer, once it stopped: the bytes that went out."""
        with self._lock:
            return list(self._state.hostile_sent)

    def _next_manner(self) -> hostile.Manner | None:
        with self._lock:
            return self._state.manners.popleft() if self._state.manners else None

    def _record_hostile(self, sent: int) -> None:
        with self._lock:
            self._state.hostile_sent.append(sent)

    def points(self, metric: str | None = None, **tags: str) -> list[StoredPoint]:
        """Stored points, oldest first, filtered by metric name and tag values (`endpoint="x"`)."""
        with self._lock:
            stored = list(self._state.points.values())
        return sorted(
            (
                p
                for p in stored
                if (metric is None or p.metric == metric) and all(p.tag(k) == v for k, v in tags.items())
            ),
            key=lambda p: (p.timestamp, p.metric, sorted(p.tags)),
        )

    def total(self, metric: str, **tags: str) -> float:
        return sum(p.value for p in self.points(metric, **tags))

    def metric_names(self) -> set[str]:
        return {p.metric for p in self.points()}

    @property
    def checks(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.checks)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._state.requests)

    @property
    def out_of_range(self) -> int:
        """Points received outside Datadog's accepted time range (needs a clock)."""
        with self._lock:
            return self._state.out_of_range

    # ------------------------------------------------------------ the intake itself
    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        headers = {k.lower(): v for k, v in headers.items()}
        path = path.split("?", 1)[0]
        with self._lock:
            request = Request(method, path, headers, 0)
            self._state.requests.append(request)
            status, answer, extra = self._decide(method, path, headers, body, request)
            request.status = status
        return status, answer, extra

    def _decide(self, method: str, path: str, headers: dict[str, str], body: bytes, request: Request) -> Answer:
        if headers.get("dd-api-key") not in self.api_keys:
            return 403, {"errors": [ERROR_TEXT[403]]}, {}
        routes = {("GET", VALIDATE_PATH), ("POST", SERIES_PATH), ("POST", CHECK_RUN_PATH)}
        if (method, path) not in routes:
            return 404, {"errors": ["Not found"]}, {}
        if method == "GET":
            return 200, {"valid": True}, {}

        failure = self._scripted(path)
        if failure is not None:
            extra = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
            return failure.status, {"errors": failure.errors}, extra
        if len(body) > self.max_compressed:
            return 413, {"errors": [ERROR_TEXT[413]]}, {}
        try:
            raw = decompress(body, headers.get("content-encoding"))
        except (ValueError, zlib.error, zstandard.ZstdError) as exc:
            return 400, {"errors": [f"cannot decompress: {exc}"]}, {}
        if len(raw) > self.max_uncompressed:
            return 413, {"errors": [ERROR_TEXT[413]]}, {}
        try:
            request.json = json.loads(raw)
        except ValueError as exc:
            return 400, {"errors": [f"{ERROR_TEXT[400]}: {exc}"]}, {}
        try:
            if path == SERIES_PATH:
                deserialize_strict(request.json, MetricPayload)
                self._store_series(request.json["series"])
                return 202, {"errors": []}, {}
            deserialize_strict(request.json, ServiceChecks)
            self._state.checks.extend(request.json)
            return 202, {"status": "ok"}, {}
        except ModelMismatch as exc:
            return 400, {"errors": [f"{ERROR_TEXT[400]}: {exc}"]}, {}

    def _scripted(self, path: str) -> Failure | None:
        failures = self._state.failures
        for index, failure in enumerate(failures):
            if failure.path is None or failure.path == path:
                if failure.after:
                    failure.after -= 1
                    return None
                del failures[index]
                return failure
        return None

    def _store_series(self, series_list: list[dict[str, Any]]) -> None:
        now = self.clock.now() if self.clock is not None else None
        for series in series_list:
            tags = frozenset(series.get("tags", ()))
            resources = tuple((r.get("type", ""), r.get("name", "")) for r in series.get("resources", ()))
            for point in series["points"]:
                timestamp = point["timestamp"]
                if now is not None and not now - 3600 <= timestamp <= now + 600:
                    self._state.out_of_range += 1
                    continue
                self._state.points[(series["metric"], tags, resources, timestamp)] = StoredPoint(
                    series["metric"],
                    series.get("type", 0),
                    series.get("interval"),
                    series.get("unit"),
                    tags,
                    resources,
                    timestamp,
                    float(point["value"]),
                )
