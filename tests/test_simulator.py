"""The simulator must look like the real Metrics API, or tests against it prove nothing."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.clock import ManualClock
from bridge.simulator import (
    DEFAULT_ENDPOINTS,
    FAILURE_CODES,
    STATISTICS,
    CerebrasSimulator,
    EndpointProfile,
    render_exposition,
    simulate_window,
)

START = 1_800_000_000.0  # a minute boundary
KEY = "sim-key"
FAMILIES = {
    "inference_endpoint_status",
    "requests_count_total",
    "requests_success_total",
    "requests_failure_total",
    "input_tokens_total",
    "output_tokens_total",
    "queue_time_seconds",
    "e2e_latency_seconds",
    "ttft_seconds",
    "tpot_seconds",
    "cache_rate",
}
LATENCY_FAMILIES = ("queue_time_seconds", "e2e_latency_seconds", "ttft_seconds", "tpot_seconds")

MakeSim = Callable[..., tuple[CerebrasSimulator, ManualClock]]


@pytest.fixture
def make_sim() -> Iterator[MakeSim]:
    """Start simulators on a manual clock and always stop them, even when a test fails."""
    started: list[CerebrasSimulator] = []

    def make(**kwargs: Any) -> tuple[CerebrasSimulator, ManualClock]:
        clock = ManualClock(START + 5)
        sim = CerebrasSimulator(clock=clock, api_key=KEY, **kwargs)
        sim.start()
        started.append(sim)
        return sim, clock

    yield make
    for sim in started:
        sim.stop()


def set_time(clock: ManualClock, t: float) -> None:
    asyncio.run(clock.set(t))


_HTTP = httpx.Client(timeout=5)  # shared: a client per request spends ~30 ms building an SSL context


def get(url: str, key: str | None = KEY) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return _HTTP.get(url, headers=headers)


def test_body_parses_and_contains_every_family(make_sim: MakeSim) -> None:
    sim, _ = make_sim()
    response = get(sim.url)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in response.text
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert set(families) == FAMILIES
    assert {f.type for f in families.values()} == {"gauge"}
    window = START - 60
    assert sim.served_windows == {window}
    assert response.text == render_exposition(sim.window_values(window), "org_demo")
    for line in response.text.splitlines():
        if line.startswith(("requests_", "input_tokens", "output_tokens", "inference_endpoint_status")):
            assert line.endswith(".0"), line  # counts are printed as floats, without a timestamp


def test_window_invariants_hold_for_many_windows() -> None:
    windows = [simulate_window(DEFAULT_ENDPOINTS, 7, START + 60 * i) for i in range(1500)]
    busy = [p for p in DEFAULT_ENDPOINTS if not p.idle]
    bursts = 0
    for values in windows:
        for profile in busy:
            ep = values.endpoints[profile.name]
            assert ep.status == 1
            assert set(ep.failures) <= set(FAILURE_CODES) and all(n > 0 for n in ep.failures.values())
            assert ep.requests == ep.success + sum(ep.failures.values())
            assert (ep.input_tokens > 0) == (ep.output_tokens > 0) == (ep.success > 0)
            assert 0 <= ep.cache_rate <= 1
            for family in LATENCY_FAMILIES:
                s = ep.statistics[family]
                assert tuple(s) == STATISTICS
                assert 0 < s["p50"] <= s["p90"] <= s["p95"] <= s["p99"]
                assert s["p50"] <= s["avg"] <= s["p99"]
            bursts += sum(ep.failures.values()) > 0.04 * ep.requests
        idle = values.endpoints["acme-idle-8b"]
        assert (idle.requests, idle.success, idle.failures, idle.input_tokens, idle.output_tokens) == (0, 0, {}, 0, 0)
        assert all(math.isnan(v) for family in idle.statistics.values() for v in family.values())

    for profile in busy:  # Poisson-ish around rpm
        mean = sum(w.endpoints[profile.name].requests for w in windows) / len(windows)
        assert abs(mean - profile.rpm) < 0.05 * profile.rpm
    assert 0 < bursts < 0.2 * len(windows) * len(busy)  # failure bursts are occasional


def test_same_window_same_body_next_window_differs(make_sim: MakeSim) -> None:
    sim, clock = make_sim()
    first = get(sim.url).text
    set_time(clock, START + 59.9)
    assert get(sim.url).text == first
    set_time(clock, START + 60)
    assert get(sim.url).text != first
    assert sim.served_windows == {START - 60, START}


def test_hour_of_scrapes_sums_to_window_values(make_sim: MakeSim) -> None:
    sim, clock = make_sim(seed=3)
    totals: dict[str, float] = {}
    for minute in range(60):
        set_time(clock, START + 60 * minute + 1)
        response = get(sim.url)
        assert response.status_code == 200
        for family in text_string_to_metric_families(response.text):
            if family.name == "requests_count_total":
                for sample in family.samples:
                    endpoint = sample.labels["endpoint"]
                    totals[endpoint] = totals.get(endpoint, 0.0) + sample.value

    assert len(sim.served_windows) == 60
    expected = {
        name: sum(sim.window_values(w).endpoints[name].requests for w in sim.served_windows)
        for name in (p.name for p in DEFAULT_ENDPOINTS)
    }
    assert totals == expected
    assert expected["acme-idle-8b"] == 0 and expected["acme-llama-3.3-70b"] > 0


def test_missing_or_wrong_key_is_401_without_echoing_it(make_sim: MakeSim) -> None:
    sim, _ = make_sim()
    for key in (None, "sk-wrong-secret-123"):
        response = get(sim.url, key)
        assert response.status_code == 401
        body = response.json()
        assert body == {
            "message": body["message"],
            "type": "invalid_request_error",
            "param": None,
            "code": "wrong_api_key",
        }
        raw = response.text + str(response.headers)
        assert KEY not in raw and "sk-wrong-secret-123" not in raw
    assert [status for _, status in sim.requests_received] == [401, 401]
    assert sim.served_windows == set()


def test_wrong_org_is_404_json(make_sim: MakeSim) -> None:
    sim, _ = make_sim(organization_id="org_abc123")
    response = get(sim.url.replace("org_abc123", "org_other"))
    assert response.status_code == 404
    assert set(json.loads(response.text)) == {"message", "type", "param", "code"}


def test_seventh_request_in_a_minute_is_429_with_retry_after(make_sim: MakeSim) -> None:
    sim, clock = make_sim()
    statuses = [get(sim.url).status_code for _ in range(6)]
    limited = get(sim.url)
    assert statuses == [200] * 6
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "60"
    assert limited.json()["type"] == "too_many_requests_error"

    set_time(clock, START + 35.5)  # the oldest slot frees at START + 65
    assert get(sim.url).headers["Retry-After"] == "30"
    set_time(clock, START + 65)
    assert get(sim.url).status_code == 200
    assert [status for _, status in sim.requests_received] == [200] * 6 + [429, 429, 200]
    assert [t for t, _ in sim.requests_received][-1] == START + 65


def test_statistic_label_option(make_sim: MakeSim) -> None:
    sim, _ = make_sim(statistic_label="percentile")
    families = {f.name: f for f in text_string_to_metric_families(get(sim.url).text)}
    for family in LATENCY_FAMILIES:
        labels = [sample.labels for sample in families[family].samples]
        assert labels and all("percentile" in label and "statistic" not in label for label in labels)
        assert {label["percentile"] for label in labels} == set(STATISTICS)


def test_fail_next_forces_responses(make_sim: MakeSim) -> None:
    sim, _ = make_sim()
    sim.fail_next(503, count=2, retry_after=30)
    sim.fail_next(500)
    responses = [get(sim.url) for _ in range(4)]
    assert [r.status_code for r in responses] == [503, 503, 500, 200]
    assert [r.headers.get("Retry-After") for r in responses] == ["30", "30", None, None]
    assert responses[0].json()["type"] == "server_error"


def test_down_endpoint_and_zero_failure_series(make_sim: MakeSim) -> None:
    down = EndpointProfile("acme-down-70b", rpm=500, failure_rate=0.1, down=True)
    sim, _ = make_sim(endpoints=(down, EndpointProfile("acme-idle-8b", rpm=0, failure_rate=0, idle=True)))
    families = {f.name: f for f in text_string_to_metric_families(get(sim.url).text)}

    status = {s.labels["endpoint"]: s.value for s in families["inference_endpoint_status"].samples}
    assert status == {"acme-down-70b": 0.0, "acme-idle-8b": 1.0}
    failures = families["requests_failure_total"].samples
    assert [(s.labels["endpoint"], "http_code" in s.labels, s.value) for s in failures] == [
        ("acme-down-70b", False, 0.0),
        ("acme-idle-8b", False, 0.0),
    ]
    for family in (*LATENCY_FAMILIES, "cache_rate"):  # down: no series; idle: NaN
        samples = families[family].samples
        assert {s.labels["endpoint"] for s in samples} == {"acme-idle-8b"}
        assert all(math.isnan(s.value) for s in samples)


def test_seed_changes_values_and_stop_closes_the_socket(make_sim: MakeSim) -> None:
    assert simulate_window(DEFAULT_ENDPOINTS, 1, START) != simulate_window(DEFAULT_ENDPOINTS, 2, START)
    sim, _ = make_sim()
    url = sim.url
    sim.stop()
    with pytest.raises(httpx.ConnectError):
        get(url)
