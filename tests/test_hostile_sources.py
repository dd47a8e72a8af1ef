"""Hostile or unlucky upstreams never stall, mute, bloat or stop a source.

Each test drives the real path: the `prometheus`/`cerebras` source against a
real HTTP server on 127.0.0.1, and the real CLI where the failure showed in
the running process (spinning sources, a stop that never ends).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import parser, telemetry
from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context
from bridge.model import Batch
from bridge.pipeline import STOP_MARGIN_SECONDS, Pipeline
from bridge.sinks.otlp import OTLPSink
from bridge.sources.prometheus import PrometheusSource
from bridge.sources.schedule import MAX_SERVER_DELAY_SECONDS
from tests.conftest import T0, run, wait_for
from tests.fuzz_sources import fuzz
from tests.servers import ExpositionServer, Response
from tests.test_prometheus_source import make_source

CLI = [sys.executable, "-m", "bridge.cli"]
GOOD = "# TYPE up gauge\nup 1\n# TYPE jobs_total counter\njobs_total 7\n"
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


async def collect_once(source: PrometheusSource, clock: ManualClock, at: float) -> Batch | None:
    await source.start()
    try:
        await clock.set(at)
        return await source.collect(clock.now())
    finally:
        await source.close()


def start_cli(config: dict[str, Any], tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.Popen(
        [*CLI, "run", "-c", str(path), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def stop_cli(process: subprocess.Popen[str], within: float) -> tuple[float, str]:
    """SIGTERM; (seconds until the process was gone, its log). Kills it (and fails) past `within`."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        _, log = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        _, log = process.communicate()
        pytest.fail(f"still running {within:.0f} s after SIGTERM; log tail:\n{log[-2000:]}")
    return time.monotonic() - sent, log


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float) -> list[str]:
    """Read the log until a line contains `text`; the lines read so far."""
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    pytest.fail(f"no log line with {text!r} within {timeout:.0f} s:\n{''.join(lines[-20:])}")


# -- 1. nothing that happens inside a collect makes a source spin --------------------------------------
def test_no_collect_failure_makes_a_source_spin(
    exposition_server: ExpositionServer, tmp_path: Path, record_property: Any
) -> None:
    """Each of these once made its source re-collect in a tight loop (300 requests/s, 100% CPU)."""
    utf16 = tmp_path / "utf16-token"
    utf16.write_text("csk-utf16-token", encoding="utf-16")
    non_ascii = tmp_path / "non-ascii-token"
    non_ascii.write_text("csk-tökén-1234", encoding="utf-8")
    unavailable = {"Retry-After": "soon"}
    sources = {
        "soon_503": {"url": exposition_server.route("/soon503", Response(503, "busy", unavailable))},
        "soon_429": {
            "url": exposition_server.route("/soon429", Response(429, "slow down", unavailable)),
            "windowed": True,
            "rate_limit_per_minute": 6,
        },
        "year_99999": {
            "url": exposition_server.route(
                "/y99999", Response(503, "busy", {"Retry-After": "Fri, 01 Jan 99999 00:00:00 GMT"})
            )
        },
        "utf16_token": {
            "url": exposition_server.route("/utf16", Response(200, GOOD)),
            "auth": {"type": "bearer", "token_file": str(utf16)},
        },
        "non_ascii_token": {
            "url": exposition_server.route("/nonascii", Response(200, GOOD)),
            "auth": {"type": "bearer", "token_file": str(non_ascii)},
        },
    }
    config = {
        "sources": {
            name: {"type": "prometheus", "retry_delay_seconds": 30, **extra} for name, extra in sources.items()
        },
        "sinks": {"out": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}},
    }
    process = start_cli(config, tmp_path)
    early = wait_for_line(process, "running", timeout=60)  # a source may fail (and log it) before this line
    refused = ("/soon503", "/soon429", "/y99999")
    # each source's first request, however slow the machine is to get there; then 3 s in which a spin would show
    wait_for(lambda: all(exposition_server.requests_to(path) for path in refused), 30, "a first request each")
    time.sleep(3)
    seconds, rest = stop_cli(process, within=30)
    log = "".join(early) + rest
    for path in refused:
        assert 1 <= exposition_server.requests_to(path) <= 2, (path, exposition_server.requests_to(path))
        record_property("hostile", f"{path[1:]}: {exposition_server.requests_to(path)} request(s) in 3 s")
    assert exposition_server.requests_to("/utf16") + exposition_server.requests_to("/nonascii") == 0, (
        "a token that cannot be sent is a credentials problem, not a request"
    )
    for name in sources:
        lines = [line for line in log.splitlines() if f"source {name}:" in line]
        assert 1 <= len(lines) <= 2, (name, lines)  # the failure, logged once (plus at most the one retry's)
    assert "Traceback" not in log
    assert "csk-" not in log
    record_property(
        "hostile",
        f"UTF-16 and non-ASCII token files: 0 requests, `credentials_unreadable`; "
        f"each failure logged once; SIGTERM -> gone in {seconds:.1f} s",
    )


def test_an_unexpected_error_in_a_collect_is_contained(
    exposition_server: ExpositionServer, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (here: a classifier that raises) is counted and scheduled like a failed scrape."""
    exposition_server.respond(Response(200, GOOD))
    source = make_source(exposition_server.url, clock, "buggy")

    def broken(*_: object) -> list[object]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(source.classifier, "ingest", broken)  # a planted bug: nothing upstream can cause one
    errors_before = counter(telemetry.SCRAPES, "buggy", "internal_error")
    assert run(collect_once(source, clock, T0 + 5)) is None
    assert counter(telemetry.SCRAPES, "buggy", "internal_error") == errors_before + 1
    assert source.next_due(clock.now()) == T0 + 65, "the next attempt is the next aligned scrape"


# -- 2. stopping always completes, bounded as a whole ----------------------------------------------------
class _StubbornSource:
    """A plug-in that swallows cancellation (the bug wait_for had on 3.11): stop must still end."""

    name = "stubborn"
    config = None
    interval_seconds = 60.0
    last_success = last_error = None
    released = False  # set by the test once it has measured, so the event loop can end

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def next_due(self, now: float) -> float:
        return now

    async def collect(self, now: float) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if self.released:
                    raise


def test_stop_is_bounded_even_when_a_source_ignores_cancellation(tmp_path: Path, record_property: Any) -> None:
    config = parse_config(
        {
            "sources": {"ok": {"type": "file", "path": str(tmp_path / "none.prom")}},
            "sinks": {"out": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}},
        }
    )

    async def go() -> tuple[int, float]:
        pipeline = Pipeline(config)
        stubborn = _StubbornSource()
        pipeline.sources["ok"].source = stubborn  # type: ignore[assignment]
        await pipeline.start()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        stuck = await pipeline.stop(grace=1.0)
        elapsed = time.monotonic() - started
        stubborn.released = True
        for task in asyncio.all_tasks():
            if task.get_name() == "source:ok":
                task.cancel()
        return stuck, elapsed

    stuck, seconds = run(go())
    assert stuck == 1
    assert seconds < 1.0 + 3 * STOP_MARGIN_SECONDS
    record_property("hostile", f"stop returned in {seconds:.1f} s (grace 1 s), 1 task abandoned and counted")


@pytest.mark.slow
def test_sigterm_stops_a_thousand_source_pipeline_in_time(
    exposition_server: ExpositionServer, tmp_path: Path, record_property: Any
) -> None:
    """1,000 windowed sources, a jsonl sink, telemetry on; SIGTERM while scrapes are in flight."""
    exposition_server.respond(Response(200, GOOD, delay=0.5))
    port = _free_port()
    config = {
        "sources": {
            f"s{i:04d}": {"type": "prometheus", "url": f"{exposition_server.url}?i={i}", "windowed": True}
            for i in range(1000)
        },
        "sinks": {"out": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}},
        "telemetry": {"listen": f"127.0.0.1:{port}"},
    }
    started = time.monotonic()
    process = start_cli(config, tmp_path, "--grace", "5")
    wait_for_line(process, "running", timeout=240)
    start_seconds = time.monotonic() - started
    deadline = time.monotonic() + 60
    while len(exposition_server.requests) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)  # scrapes are in flight now: the moment the hang was seen
    seconds, log = stop_cli(process, within=5 + 2 * STOP_MARGIN_SECONDS + 20)
    assert process.returncode == 0, log[-2000:]
    assert "Traceback" not in log
    record_property(
        "hostile",
        f"started in {start_seconds:.1f} s; SIGTERM mid-scrape -> gone in {seconds:.1f} s (grace 5 s), exit 0",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- 3. a far-future wait never mutes a source -------------------------------------------------------------
FAR_FUTURE = [
    {"Retry-After": "1e30"},
    {"Retry-After": "inf"},
    {"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"},
    {"x-ratelimit-reset-requests": "1e30s"},
]


@pytest.mark.parametrize("headers", FAR_FUTURE, ids=lambda h: "=".join(next(iter(h.items()))))
@pytest.mark.parametrize("status", [429, 503])
def test_a_far_future_wait_is_capped_for_a_windowed_source(
    exposition_server: ExpositionServer, clock: ManualClock, status: int, headers: dict[str, str], record_property: Any
) -> None:
    exposition_server.respond(Response(status, "later", headers))
    source = make_source(exposition_server.url, clock, "far", windowed=True, rate_limit_per_minute=6)
    assert run(collect_once(source, clock, T0 + 65)) is None
    due = source.next_due(clock.now())
    # The window ending T0+120 can be fetched until T0+180: the wait never goes past that.
    assert T0 + 65 < due < T0 + 180
    assert source.budget is not None and source.budget.next_free(clock.now()) < T0 + 180
    record_property("hostile", f"next scrape {due - clock.now():.0f} s later (the next window is still there)")


@pytest.mark.parametrize("headers", FAR_FUTURE, ids=lambda h: "=".join(next(iter(h.items()))))
def test_a_far_future_wait_is_capped_for_an_exporter(
    exposition_server: ExpositionServer, clock: ManualClock, headers: dict[str, str], record_property: Any
) -> None:
    exposition_server.respond(Response(429, "later", headers))
    source = make_source(exposition_server.url, clock, "far_exporter", interval_seconds=15)
    assert run(collect_once(source, clock, T0 + 5)) is None
    due = source.next_due(clock.now())
    assert due <= T0 + 5 + MAX_SERVER_DELAY_SECONDS
    record_property("hostile", f"next scrape {due - clock.now():.0f} s later")


# -- 4. error bodies are read only as far as the log needs ---------------------------------------------------
def failed_scrape_peak(source: PrometheusSource, clock: ManualClock) -> int:
    """The traced Python heap peak of one collect, which must fail."""
    tracemalloc.start()
    try:
        assert run(collect_once(source, clock, T0 + 5)) is None
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_in_an_error_body_is_not_expanded(
    exposition_server: ExpositionServer, clock: ManualClock, record_property: Any
) -> None:
    bomb = gzip.compress(b"\0" * (256 << 20), compresslevel=9)  # 256 MiB of zeros in about 256 KB
    exposition_server.respond(Response(503, bomb, {"Content-Encoding": "gzip"}))
    source = make_source(exposition_server.url, clock, "bomb")
    peak = failed_scrape_peak(source, clock)
    assert counter(telemetry.SCRAPES, "bomb", "http_503") >= 1
    assert peak < 16 << 20, f"peak {peak >> 20} MiB while reading a 503"
    record_property("hostile", f"256 MiB expanded: traced peak {peak / 2**20:.1f} MiB, counted `http_503`")


def test_a_gzip_bomb_in_a_200_stops_at_max_body_bytes(
    exposition_server: ExpositionServer, clock: ManualClock, record_property: Any
) -> None:
    exposition_server.respond(
        Response(200, gzip.compress(b"#" * (256 << 20), compresslevel=9), {"Content-Encoding": "gzip"})
    )
    source = make_source(exposition_server.url, clock, "bomb200", max_body_bytes=1 << 20)
    peak = failed_scrape_peak(source, clock)
    assert source.last_error == "body_too_large"
    assert peak < 16 << 20, f"peak {peak >> 20} MiB for a 1 MiB limit"
    record_property("hostile", f"traced peak {peak / 2**20:.1f} MiB, `body_too_large`")


# -- 5 and 6. one odd sample costs that sample, never the scrape ------------------------------------------------
ODD = """\
# TYPE lat_seconds histogram
lat_seconds_bucket{le="0.1"} 1
lat_seconds_bucket{le="abc"} 2
lat_seconds_bucket{le="+Inf"} 3
lat_seconds_sum 0.4
lat_seconds_count 3
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.1
rpc_seconds 0.3
rpc_seconds_sum 9
rpc_seconds_count 30
# TYPE nan_stamp gauge
nan_stamp 1 NaN
nan_stamp{x="ok"} 2
# TYPE far_future gauge
far_future 1 99999999999999999999
far_future{x="ok"} 2
# TYPE before_1970 gauge
before_1970 1 -5000
# TYPE up gauge
up 1
"""


def test_odd_samples_are_skipped_and_counted_and_the_rest_is_forwarded(
    exposition_server: ExpositionServer, clock: ManualClock, record_property: Any
) -> None:
    exposition_server.respond(Response(200, ODD))
    source = make_source(exposition_server.url, clock, "odd")
    skipped_before = counter(telemetry.PARSE_ERRORS, "odd")
    batch = run(collect_once(source, clock, T0 + 5))
    assert batch is not None
    by_name = {m.name: m for m in batch.metrics}
    assert set(by_name) == {"lat_seconds", "rpc_seconds", "nan_stamp", "far_future", "up"}
    assert by_name["lat_seconds"].points[0].value.buckets == ((0.1, 1.0), (math.inf, 3.0))
    assert by_name["rpc_seconds"].points[0].value.quantiles == ((0.5, 0.1),)
    assert [p.attributes for p in by_name["nan_stamp"].points] == [(("x", "ok"),)]
    assert [p.attributes for p in by_name["far_future"].points] == [(("x", "ok"),)]
    # le="abc", the summary line without quantile, and the NaN, 1e20 ms and -5 s timestamps
    assert counter(telemetry.PARSE_ERRORS, "odd") == skipped_before + 5
    assert counter(telemetry.SCRAPES, "odd", "ok") >= 1
    assert counter(telemetry.SCRAPES, "odd", "internal_error") == 0
    record_property("hostile", "5 samples skipped and counted in bridge_parse_errors_total, 5 families forwarded")


def test_out_of_range_timestamps_never_reach_the_otlp_encoder(
    exposition_server: ExpositionServer, clock: ManualClock
) -> None:
    """The batch above once failed as a whole in the OTLP encoder ("value out of range")."""
    exposition_server.respond(Response(200, ODD))
    source = make_source(exposition_server.url, clock, "odd_otlp")
    batch = run(collect_once(source, clock, T0 + 5))
    assert batch is not None
    config = parse_config(
        {
            "sources": {"x": {"type": "file", "path": "x"}},
            "sinks": {"otlp": {"type": "otlp", "endpoint": "http://127.0.0.1:1", "protocol": "http/protobuf"}},
        }
    )
    sink = OTLPSink("otlp", config.sinks["otlp"], Context(clock=clock))
    payloads = sink.prepare(batch)
    assert sum(p.points for p in payloads) == batch.point_count()


# -- 7. a target with huge label values cannot pin memory; log lines stay short -------------------------------
def test_huge_label_values_do_not_accumulate(
    exposition_server: ExpositionServer, clock: ManualClock, caplog: pytest.LogCaptureFixture, record_property: Any
) -> None:
    source = make_source(exposition_server.url, clock, "huge")

    async def go() -> None:
        await source.start()
        try:
            for scrape in range(15):
                text = "".join(f'big{{v="{scrape}-{i}-{"x" * (1 << 20)}"}} 1\n' for i in range(4))
                exposition_server.respond(Response(200, text + "bad-" + "y" * (5 << 20) + " 1\n"))
                await clock.set(T0 + 5 + 60 * scrape)
                assert await source.collect(clock.now()) is not None
                assert parser._label_cache.text_bytes <= parser._LABEL_CACHE_MAX_BYTES
        finally:
            await source.close()

    with caplog.at_level(logging.WARNING):  # whatever level the runner set (make reliability sets ERROR)
        run(go())
    longest = max(len(r.getMessage()) for r in caplog.records)
    assert longest < 1000
    record_property(
        "hostile",
        f"15 scrapes of 4 distinct 1 MiB label values: label cache at most "
        f"{parser._LABEL_CACHE_MAX_BYTES >> 20} MiB; a 5 MiB bad line logged in {longest} chars",
    )


# -- 8. a 200 that is not an exposition is a failed scrape ------------------------------------------------------
def test_an_html_200_is_a_failed_scrape_and_the_window_a_gap(
    exposition_server: ExpositionServer, clock: ManualClock, caplog: pytest.LogCaptureFixture, record_property: Any
) -> None:
    exposition_server.respond(
        Response(200, "<html><body>Please log in</body></html>", {"Content-Type": "text/html; charset=utf-8"})
    )
    source = make_source(exposition_server.url, clock, "login_page", windowed=True)
    with caplog.at_level(logging.WARNING):
        assert run(collect_once(source, clock, T0 + 5)) is None
    assert source.last_error == "not_prometheus"
    assert source.context.windows.last(source.budget_key) is None, "the window was not marked forwarded"
    assert counter(telemetry.SCRAPES, "login_page", "ok") == 0
    assert "the body is not Prometheus text: text/html" in caplog.text
    record_property("hostile", "failed scrape `not_prometheus`, window counted as a gap, not marked forwarded")


def test_an_empty_200_from_an_exporter_is_still_a_scrape(
    exposition_server: ExpositionServer, clock: ManualClock
) -> None:
    """An exporter with nothing to expose yet is fine; only a windowed source needs samples."""
    exposition_server.respond(Response(200, ""))
    source = make_source(exposition_server.url, clock, "empty_exporter")
    batch = run(collect_once(source, clock, T0 + 5))
    assert batch is not None and batch.metrics == []


# -- the fuzz run, small: `python -m tests.fuzz_sources --count 10000` is the full one ------------------------
def test_mutated_expositions_never_crash_a_source_or_cost_a_well_formed_family() -> None:
    figures = run(fuzz(count=300, seed=7))
    assert figures.mutated_families > 300
    assert (figures.crashes, figures.lost_families) == (0, 0)
