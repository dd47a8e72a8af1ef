"""HealthState rules and the HealthServer over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from bridge import secrets
from bridge.clock import ManualClock
from bridge.health import HealthServer, HealthState, parse_listen
from bridge.telemetry import SCRAPES

START = 1_800_000_000.0


def state_with(clock: ManualClock) -> HealthState:
    state = HealthState(clock)
    state.expect_source("cerebras", 60)
    state.expect_sink("datadog")
    return state


def test_ready_during_grace_then_unready_without_a_success() -> None:
    clock = ManualClock(START)
    state = state_with(clock)
    assert state.ready() == (True, [])
    clock._now = START + 120  # exactly two intervals: still in grace
    assert state.ready()[0]
    clock._now = START + 121
    ready, reasons = state.ready()
    assert not ready
    assert reasons == ["source cerebras: no successful scrape since start (121s ago)"]


def test_success_keeps_ready_for_two_intervals_and_failure_reason_is_reported() -> None:
    clock = ManualClock(START)
    state = state_with(clock)
    state.source_succeeded("cerebras", START + 60)
    state.source_failed("cerebras", "http_503")
    clock._now = START + 180
    assert state.ready()[0], "one failed scrape within two intervals is not enough to go unready"
    clock._now = START + 181
    ready, reasons = state.ready()
    assert not ready
    assert reasons == ["source cerebras: last successful scrape 121s ago (last error: http_503)"]
    state.source_succeeded("cerebras", START + 181)
    assert state.ready() == (True, [])


def test_sink_permanent_failure_until_next_success() -> None:
    clock = ManualClock(START)
    state = state_with(clock)
    state.expect_sink("otlp")
    state.sink_failed_permanently("datadog", "http_403")
    ready, reasons = state.ready()
    assert not ready and reasons == ["sink datadog: failing permanently: http_403"]
    state.sink_succeeded("datadog")
    assert state.ready() == (True, [])


def test_every_culprit_is_named() -> None:
    clock = ManualClock(START)
    state = state_with(clock)
    state.expect_source("simulator", 10)
    state.sink_failed_permanently("datadog", "http_401")
    clock._now = START + 30
    ready, reasons = state.ready()
    assert not ready
    assert [r.split(":")[0] for r in reasons] == ["source simulator", "sink datadog"]


def test_reload_keeps_history_and_updates_interval() -> None:
    clock = ManualClock(START)
    state = state_with(clock)
    state.source_succeeded("cerebras", START)
    clock._now = START + 150
    assert not state.ready()[0]
    state.expect_source("cerebras", 120)
    assert state.ready()[0]


def test_reasons_are_redacted() -> None:
    canary = "canary-health-reason-9f3a"
    secrets.register(canary)
    clock = ManualClock(START)
    state = state_with(clock)
    state.sink_failed_permanently("datadog", f"rejected key {canary}")
    assert canary not in "".join(state.ready()[1])


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        (":9464", (None, 9464)),
        ("[::1]:9464", ("::1", 9464)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str | None, int]) -> None:
    assert parse_listen(listen) == expected


def test_parse_listen_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_listen("localhost")


async def _serve(clock: ManualClock, state: HealthState) -> HealthServer:
    server = HealthServer("127.0.0.1:0", state)
    await server.start()
    return server


def test_http_endpoints() -> None:
    async def main() -> None:
        clock = ManualClock(START)
        state = state_with(clock)
        server = await _serve(clock, state)
        SCRAPES.labels(source="health-test", outcome="ok").inc()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                r = await client.get("/healthz")
                assert (r.status_code, r.text) == (200, "ok\n")
                r = await client.get("/readyz")
                assert (r.status_code, r.text) == (200, "ready\n")
                r = await client.get("/metrics")
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/plain;")
                assert 'bridge_scrapes_total{outcome="ok",source="health-test"}' in r.text
                r = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
                assert r.headers["content-type"].startswith("application/openmetrics-text")
                assert r.text.endswith("# EOF\n")
                clock._now = START + 500
                state.sink_failed_permanently("datadog", "http_403")
                r = await client.get("/readyz")
                assert r.status_code == 503
                assert r.text.splitlines() == [
                    "source cerebras: no successful scrape since start (500s ago)",
                    "sink datadog: failing permanently: http_403",
                ]
                r = await client.get("/readyz?verbose=1")
                assert r.status_code == 503
                r = await client.head("/healthz")
                assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "3"
                assert (await client.get("/nope")).status_code == 404
                assert (await client.post("/healthz")).status_code == 405
        finally:
            await server.stop()

    asyncio.run(main())


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def main() -> None:
        server = await _serve(ManualClock(START), state_with(ManualClock(START)))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            first = await reader.readuntil(b"ok\n")
            second = await reader.readuntil(b"ready\n")
            assert first.startswith(b"HTTP/1.1 200 OK") and second.startswith(b"HTTP/1.1 200 OK")
            writer.close()
        finally:
            await server.stop()

    asyncio.run(main())


def test_stop_closes_idle_connections_and_frees_the_port() -> None:
    async def main() -> None:
        server = await _serve(ManualClock(START), state_with(ManualClock(START)))
        port = server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # a half-sent request keeps its handler waiting
        await writer.drain()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.stop(), 2)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        with socket.create_server(("127.0.0.1", port)):
            pass  # the listener is gone: the port can be bound again

    asyncio.run(main())


def test_malformed_request_gets_400() -> None:
    async def main() -> None:
        server = await _serve(ManualClock(START), state_with(ManualClock(START)))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"NONSENSE\r\n\r\n")
            await writer.drain()
            assert (await reader.read()).startswith(b"HTTP/1.1 400 Bad Request")
        finally:
            await server.stop()

    asyncio.run(main())


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = HealthServer("127.0.0.1:0", HealthState(ManualClock(START))).port


def test_every_self_metric_is_documented_in_the_readme() -> None:
    from pathlib import Path

    from bridge.telemetry import REGISTRY

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for family in REGISTRY.collect():
        suffix = "_total" if family.type == "counter" else ""
        assert f"`{family.name}{suffix}`" in readme, family.name
