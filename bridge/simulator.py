"""An embedded Cerebras Metrics API: a real HTTP server the demo and tests scrape.

The real API is in private preview and rate limited to 6 requests per minute, so
nothing can be developed or tested against it. This simulator reproduces what the
bridge has to cope with (see docs/cerebras-metrics-api.md): per-minute window
values with no timestamps, `*_total` families declared as gauges, floats for
counts, idle endpoints printing NaN, the two statistic label names, flat JSON
errors, 401/404 and a rolling per-organization rate limit with Retry-After.

Every number is a pure function of (seed, window_start, endpoint), so a test can
recompute exactly what any scrape returned and sum expected totals over an hour.
"""

from __future__ import annotations

import collections
import hmac
import json
import math
import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bridge.clock import Clock, SystemClock, minute_floor
from bridge.serverthread import ServerThread

API_PREFIX = "/api/v1/metrics/organizations/"
STATISTICS = ("avg", "p50", "p90", "p95", "p99")
FAILURE_CODES = (429, 500, 503)
RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class EndpointProfile:
    """How one dedicated endpoint behaves; the extra fields shape realistic numbers."""

    name: str
    rpm: float  # mean requests per minute
    failure_rate: float  # baseline fraction of failed requests
    idle: bool = False  # up, but no traffic: zero counts, NaN statistics
    down: bool = False  # status 0, zero counts, no latency or cache series
    latency_scale: float = 1.0  # bigger models answer more slowly
    input_tokens_per_request: int = 2000
    output_tokens_per_request: int = 300


DEFAULT_ENDPOINTS: tuple[EndpointProfile, ...] = (
    EndpointProfile("acme-llama-3.3-70b", rpm=1200.0, failure_rate=0.01),
    EndpointProfile(
        "acme-qwen-3-32b",
        rpm=300.0,
        failure_rate=0.002,
        latency_scale=0.5,
        input_tokens_per_request=600,
        output_tokens_per_request=310,
    ),
    EndpointProfile("acme-idle-8b", rpm=0.0, failure_rate=0.0, idle=True),
)


@dataclass(frozen=True)
class EndpointValues:
    """One endpoint's numbers for one window, exactly as the exposition prints them."""

    status: int  # 1 up, 0 down
    requests: int
    success: int
    failures: Mapping[int, int]  # http_code -> count, only codes with count > 0
    input_tokens: int
    output_tokens: int
    statistics: Mapping[str, Mapping[str, float]]  # family -> statistic -> seconds; {} = omitted
    cache_rate: float | None  # None = series omitted


@dataclass(frozen=True)
class WindowValues:
    window_start: float
    endpoints: Mapping[str, EndpointValues]  # in profile order


# (family, HELP, p50 in seconds at latency_scale 1, range of p90/p50)
_LATENCY_FAMILIES: tuple[tuple[str, str, float, tuple[float, float]], ...] = (
    ("queue_time_seconds", "Queue time percentiles in seconds", 0.003, (4.0, 8.0)),
    ("e2e_latency_seconds", "End-to-end API latency percentiles in seconds", 0.0, (1.8, 3.0)),
    ("ttft_seconds", "Time to first token percentiles in seconds", 0.12, (1.8, 2.6)),
    ("tpot_seconds", "Time per output token percentiles in seconds", 0.0018, (1.5, 2.0)),
)
_HELP = {
    "inference_endpoint_status": "Status of inference endpoint (-1=error calculating status, 0=down, 1=up)",
    "requests_count_total": "Total request count (all HTTP codes) in the last complete minute",
    "requests_success_total": "Total successful requests (HTTP 200) in the last complete minute",
    "requests_failure_total": "Total failed requests by HTTP code in the last complete minute",
    "input_tokens_total": "Total input tokens for successful requests in the last complete minute",
    "output_tokens_total": "Total output tokens for successful requests in the last complete minute",
    **{family: help_text for family, help_text, _, _ in _LATENCY_FAMILIES},
    "cache_rate": "Fraction of input tokens served from the prompt cache in the last complete minute",
}

_ERRORS: dict[int, tuple[str, str, str]] = {  # status -> (message, type, code)
    401: ("Wrong API Key", "invalid_request_error", "wrong_api_key"),
    403: ("Metrics are not enabled for this organization", "permission_error", "forbidden"),
    404: ("Organization not found", "not_found_error", "not_found"),
    429: (
        "Requests per minute limit exceeded - too many requests sent.",
        "too_many_requests_error",
        "request_quota_exceeded",
    ),
    500: ("Internal server error", "server_error", "internal_server_error"),
    503: ("Service temporarily unavailable", "server_error", "service_unavailable"),
}


def _poisson(rng: random.Random, lam: float) -> int:
    """Poisson draw: exact (Knuth) for small means, normal approximation for large ones."""
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, p = math.exp(-lam), 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def _sig(x: float) -> float:
    """Four significant digits, like the API's short decimals; monotonic, so ordering survives."""
    return float(f"{x:.4g}")


def _statistics(rng: random.Random, p50: float, p90_ratio: tuple[float, float]) -> dict[str, float]:
    """avg/p50/p90/p95/p99 with p50 <= p90 <= p95 <= p99 and avg inside the body of the distribution."""
    p90 = p50 * rng.uniform(*p90_ratio)
    p95 = p90 * rng.uniform(1.1, 1.5)
    p99 = p95 * rng.uniform(1.4, 2.5)
    avg = p50 + (p90 - p50) * rng.uniform(0.2, 0.6)
    return {"avg": _sig(avg), "p50": _sig(p50), "p90": _sig(p90), "p95": _sig(p95), "p99": _sig(p99)}


def _no_traffic() -> EndpointValues:
    """An up endpoint with nothing to aggregate: zero counts, NaN statistics and cache rate."""
    nan_stats = {family: dict.fromkeys(STATISTICS, math.nan) for family, *_ in _LATENCY_FAMILIES}
    return EndpointValues(1, 0, 0, {}, 0, 0, nan_stats, math.nan)


def simulate_endpoint(profile: EndpointProfile, seed: int, window_start: float) -> EndpointValues:
    """One endpoint's minute, seeded per endpoint so adding an endpoint leaves the others unchanged."""
    if profile.down:
        return EndpointValues(0, 0, 0, {}, 0, 0, {}, None)
    if profile.idle:
        return _no_traffic()

    rng = random.Random(f"{seed}:{window_start:.0f}:{profile.name}")
    load = rng.lognormvariate(0.0, 0.1)
    requests = _poisson(rng, profile.rpm * load)
    if not requests:
        return _no_traffic()
    burst = profile.failure_rate > 0 and rng.random() < 0.05
    rate = min(0.5, max(profile.failure_rate * 10, 0.05)) if burst else profile.failure_rate
    n_failed = min(requests, _poisson(rng, requests * rate))
    weights = [0.5, 0.3, 0.2]
    if burst:  # a burst is mostly one kind of failure: throttling or an outage
        dominant = rng.randrange(len(FAILURE_CODES))
        weights = [0.8 if i == dominant else 0.1 for i in range(len(FAILURE_CODES))]
    failures = dict(sorted(collections.Counter(rng.choices(FAILURE_CODES, weights, k=n_failed)).items()))
    success = requests - n_failed

    input_tokens = round(success * profile.input_tokens_per_request * rng.lognormvariate(0.0, 0.1))
    output_tokens = round(success * profile.output_tokens_per_request * rng.lognormvariate(0.0, 0.1))
    cache_rate = _sig(rng.betavariate(8, 11)) if success else math.nan  # a ratio of no tokens is undefined
    slow = profile.latency_scale * load * (rng.uniform(1.2, 1.6) if burst else 1.0)
    p50s = {family: base * slow * rng.lognormvariate(0.0, 0.1) for family, _, base, _ in _LATENCY_FAMILIES}
    p50s["queue_time_seconds"] *= load**2 * (rng.uniform(3, 8) if burst else 1.0)
    p50s["e2e_latency_seconds"] = (
        p50s["queue_time_seconds"] + p50s["ttft_seconds"] + p50s["tpot_seconds"] * profile.output_tokens_per_request
    )
    statistics = {family: _statistics(rng, p50s[family], ratio) for family, _, _, ratio in _LATENCY_FAMILIES}
    return EndpointValues(1, requests, success, failures, input_tokens, output_tokens, statistics, cache_rate)


def simulate_window(endpoints: Sequence[EndpointProfile], seed: int, window_start: float) -> WindowValues:
    return WindowValues(window_start, {p.name: simulate_endpoint(p, seed, window_start) for p in endpoints})


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(float(value))


def _samples(family: str, ep: EndpointValues, statistic_label: str) -> list[tuple[dict[str, str], float]]:
    """One endpoint's samples of one family as (extra labels, value)."""
    plain = {
        "inference_endpoint_status": ep.status,
        "requests_count_total": ep.requests,
        "requests_success_total": ep.success,
        "input_tokens_total": ep.input_tokens,
        "output_tokens_total": ep.output_tokens,
        "cache_rate": ep.cache_rate,
    }
    if family == "requests_failure_total":  # one zero series without http_code when nothing failed
        return [({"http_code": str(code)}, n) for code, n in ep.failures.items()] or [({}, 0)]
    if family in plain:
        value = plain[family]
        return [] if value is None else [({}, value)]
    return [({statistic_label: stat}, value) for stat, value in ep.statistics.get(family, {}).items()]


def render_exposition(values: WindowValues, organization_id: str, statistic_label: str = "statistic") -> str:
    """Prometheus text 0.0.4 as the API prints it: gauges, float counts, no timestamps, no # EOF.

    Label names come in sorted order like the reference; a family with no samples is left out.
    """
    blocks = []
    for family, help_text in _HELP.items():
        lines = []
        for name, ep in values.endpoints.items():
            for extra, value in _samples(family, ep, statistic_label):
                labels = {"endpoint": name, "organization_id": organization_id, **extra}
                rendered = ",".join(f'{key}="{_escape(labels[key])}"' for key in sorted(labels))
                lines.append(f"{family}{{{rendered}}} {_number(value)}")
        if lines:
            blocks.append("\n".join([f"# HELP {family} {help_text}", f"# TYPE {family} gauge", *lines]))
    return "\n\n".join(blocks) + "\n"


def _seconds(value: float) -> str:
    """Retry-After text: whole seconds print as integers, as servers send them."""
    return str(int(value)) if value == int(value) else str(value)


def error_body(status: int) -> bytes:
    """The flat JSON error shape of the Cerebras inference API; never carries the key."""
    message, type_, code = _ERRORS.get(status, (f"HTTP {status}", "server_error", "error"))
    return json.dumps({"message": message, "type": type_, "param": None, "code": code}).encode()


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    retry_after: str | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: CerebrasSimulator


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        response = self.server.simulator._handle(self.path, self.headers.get("Authorization"))
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if response.retry_after is not None:
            self.send_header("Retry-After", response.retry_after)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a scrape every few milliseconds in tests would flood stderr."""


class CerebrasSimulator(ServerThread):
    """The Metrics API for one organization, served on 127.0.0.1 from a daemon thread.

    Checks run in the order a real gateway would: key (401), organization (404),
    rate limit (429, only admitted requests use up a slot), forced faults, then 200.
    """

    thread_name = "cerebras-simulator"

    def __init__(
        self,
        *,
        organization_id: str = "org_demo",
        api_key: str = "sim-key",
        clock: Clock | None = None,
        seed: int = 0,
        endpoints: Sequence[EndpointProfile] = DEFAULT_ENDPOINTS,
        rate_limit_per_minute: int = 6,
        host: str = "127.0.0.1",
        port: int = 0,
        statistic_label: str = "statistic",
    ) -> None:
        self.organization_id = organization_id
        self.clock: Clock = clock or SystemClock()
        self.seed = seed
        self.endpoints = tuple(endpoints)
        self.rate_limit_per_minute = rate_limit_per_minute
        self.statistic_label = statistic_label
        self.served_windows: set[float] = set()
        self.requests_received: list[tuple[float, int]] = []
        self._api_key = api_key
        self._address = (host, port)
        self._lock = threading.Lock()
        self._admitted: collections.deque[float] = collections.deque()
        self._forced: collections.deque[tuple[int, float | None]] = collections.deque()

    def _make_server(self) -> _Server:
        server = _Server(self._address, _Handler)
        server.simulator = self
        return server

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}{API_PREFIX}{self.organization_id}"

    def window_values(self, window_start: float) -> WindowValues:
        return simulate_window(self.endpoints, self.seed, window_start)

    def count_totals(self, window_starts: Iterable[float] | None = None) -> dict[tuple[str, str, str], float]:
        """(family, endpoint, http_code or "") -> the sum of a count family over windows, zeros left out.

        What every backend must add up to once those windows (default: every window
        served with a 200) are delivered: the yardstick of the end-to-end tests.
        """
        totals: dict[tuple[str, str, str], float] = collections.defaultdict(float)
        for start in self.served_windows if window_starts is None else window_starts:
            for endpoint, values in self.window_values(start).endpoints.items():
                totals["requests_count_total", endpoint, ""] += values.requests
                totals["requests_success_total", endpoint, ""] += values.success
                totals["input_tokens_total", endpoint, ""] += values.input_tokens
                totals["output_tokens_total", endpoint, ""] += values.output_tokens
                for code, count in values.failures.items():
                    totals["requests_failure_total", endpoint, str(code)] += count
        return {key: value for key, value in totals.items() if value}

    def fail_next(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `count` admitted requests with `status` (and Retry-After if given).

        Forced responses replace what would have been a 200: auth, org and the rate
        limit are still checked first, and a forced response uses up a rate-limit slot.
        """
        if status < 400:
            raise ValueError("fail_next forces error responses (status >= 400)")
        with self._lock:
            self._forced.extend([(status, retry_after)] * count)

    def _handle(self, path: str, authorization: str | None) -> _Response:
        now = self.clock.now()
        with self._lock:
            response = self._decide(now, path.split("?", 1)[0], authorization)
            self.requests_received.append((now, response.status))
        return response

    def _decide(self, now: float, path: str, authorization: str | None) -> _Response:
        if not hmac.compare_digest((authorization or "").encode(), f"Bearer {self._api_key}".encode()):
            return _Response(401, error_body(401))
        if not path.startswith(API_PREFIX) or path[len(API_PREFIX) :].rstrip("/") != self.organization_id:
            return _Response(404, error_body(404))

        while self._admitted and self._admitted[0] <= now - RATE_WINDOW_S:
            self._admitted.popleft()
        if len(self._admitted) >= self.rate_limit_per_minute:
            wait = max(1, math.ceil(self._admitted[0] + RATE_WINDOW_S - now))
            return _Response(429, error_body(429), retry_after=str(wait))
        self._admitted.append(now)

        if self._forced:
            status, retry_after = self._forced.popleft()
            header = None if retry_after is None else _seconds(retry_after)
            return _Response(status, error_body(status), retry_after=header)

        window_start = minute_floor(now) - 60.0
        body = render_exposition(self.window_values(window_start), self.organization_id, self.statistic_label)
        self.served_windows.add(window_start)
        return _Response(200, body.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")
