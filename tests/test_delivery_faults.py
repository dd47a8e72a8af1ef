"""The fault suite of issue 5: each scenario asserts exact totals at real receivers against the simulator.

The scenarios live in tests/faults/scenarios.py so that `python -m
tests.faults.report` runs the very same code to write docs/reliability.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from bridge.clock import ManualClock
from tests.conftest import T0, run
from tests.faults import scenarios
from tests.faults.proxy import (
    HttpFaultProxy,
    junk_lines,
    lose_answer,
    refuse,
    reset,
    status,
)
from tests.servers import ExpositionServer, Response


def connection_refused(client: httpx.Client, url: str) -> bool:
    """True once the front's listening socket is closed (it follows the clock within milliseconds)."""
    for _ in range(200):
        try:
            client.get(url)
        except httpx.ConnectError:
            return True
        except httpx.TransportError:  # arrived just before the close: reset instead
            pass
        time.sleep(0.005)
    return False


def assert_nothing_lost(figures: scenarios.Figures) -> None:
    for sink in figures.sinks:
        assert sink.lost == 0, sink


def test_backend_down_for_30_minutes_then_back_every_window_arrives_once(tmp_path: Path) -> None:
    figures = run(scenarios.backend_outage(tmp_path))
    assert_nothing_lost(figures)
    assert all(s.delivered == s.scraped and s.duplicated == 0 for s in figures.sinks)


def test_sigkill_mid_delivery_then_a_restart_sends_exactly_the_unacknowledged(tmp_path: Path) -> None:
    figures = run(scenarios.sigkill_mid_delivery(tmp_path))
    assert_nothing_lost(figures)


@pytest.mark.slow
def test_backend_down_for_good_keeps_memory_bounded_and_counts_every_drop(tmp_path: Path) -> None:
    figures = run(scenarios.backend_down_for_good(tmp_path))
    assert_nothing_lost(figures)
    assert all(s.delivered == 0 and s.evicted for s in figures.sinks)


def test_source_faults_never_crash_nor_exceed_the_rate_limit(tmp_path: Path) -> None:
    assert_nothing_lost(run(scenarios.source_faults(tmp_path)))


def test_one_sink_down_never_delays_the_other(tmp_path: Path) -> None:
    assert_nothing_lost(run(scenarios.one_sink_down(tmp_path)))


def test_the_fault_front_does_what_it_says(exposition_server: ExpositionServer) -> None:
    """The proxy itself: the scenarios' conclusions are only as good as their faults."""
    exposition_server.respond(Response(200, "up 1\n"))
    clock = ManualClock(T0)
    with HttpFaultProxy(exposition_server.url, clock) as proxy, httpx.Client(timeout=0.5) as client:
        url = proxy.url + "/metrics"
        proxy.next(status(429, retry_after=7))
        answer = client.get(url)
        assert (answer.status_code, answer.headers["retry-after"]) == (429, "7")
        assert client.get(url).text == "up 1\n"  # script used up: forwarded
        proxy.next(junk_lines())
        assert client.get(url).text.startswith("up 1\n\nthis line is { not an exposition")
        proxy.next(reset())
        with pytest.raises(httpx.TransportError):
            client.get(url)
        requests_before = len(exposition_server.requests)
        proxy.next(lose_answer())
        with pytest.raises(httpx.ReadTimeout):
            client.get(url)
        assert len(exposition_server.requests) == requests_before + 1  # the server got it; the client never knew
        proxy.release()
        proxy.during(T0 + 60, T0 + 120, refuse())
        run(clock.set(T0 + 60))
        assert connection_refused(client, url)
        assert [e.fault for e in proxy.exchanges][:5] == ["status", "forward", "junk_lines", "reset", "lose_answer"]
