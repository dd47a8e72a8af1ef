"""A whole bridge cycle on a 100k-sample scrape against the Datadog Agent's OpenMetrics check and Prometheus.

Default mode (`cycle`, what `make bench` runs; a few minutes, more the first time the check is installed):
one loopback server serves a 100,000-sample exposition (100 families of 1,000 series: 80 gauge families,
20 counter families whose values grow at every request). Each contender runs alone against it:

- bridge: scrape + parse + classify (`source.collect`), then the Datadog and the OTLP sink's `prepare`
  (normalise, encode, compress; nothing sent), through the public pipeline API, in a fresh subprocess;
- the Datadog Agent's OpenMetricsBaseCheckV2 (bench/cycle_peers/datadog_check.py), in its own venv under
  .cache/bench-datadog-check/ (installed here once, pinned), submitting to the stub aggregator;
- Prometheus (/usr/bin/prometheus), scraping every 2 s; its own `scrape_duration_seconds` is the figure
  (skipped, and said so, where it is not installed).

First cycle and steady state (median of cycles 2..N), wall and CPU time, peak RSS, the ratios to the targets.

Opt-in mode (`sources`, 10 real minutes): 1,000 `cerebras` sources in one bridge process, each reading its own
organisation (~28 series in the Cerebras API's shape) from a loopback simulator, on the real scheduler and
clock, into a jsonl sink on /dev/null, or with `--sinks datadog[,otlp]` into the Datadog (and OTLP/HTTP) sinks and
loopback receivers (tests/receivers; `--latency S` makes the Datadog one answer S seconds late, a far backend,
and `--max-in-flight N` sets the sinks' delivery.max_in_flight): windows expected vs forwarded and delivered,
windows missed (not forwarded, or evicted or left queued by a sink), CPU, peak RSS.

    python bench/bench_cycle.py [--cycles 8] [--json] [--without click --without snappy]
    python bench/bench_cycle.py --mode sources [--minutes 10] [--sources 1000] [--sinks jsonl|datadog|datadog,otlp]
                                [--latency 0.1] [--max-in-flight 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHECK_SCRIPT = Path(__file__).resolve().parent / "cycle_peers" / "datadog_check.py"
CHECK_VENV = REPO / ".cache" / "bench-datadog-check"
#: 38.6.0 and 38.7.0 pin certifi==2026.10.19, which PyPI does not serve; 38.5.0 installs on Python 3.11.
CHECK_VERSION = "38.5.0"
START = 1_800_000_000.0

FAMILIES = 100
COUNTER_EVERY = 5  # every fifth family is a counter: 20 of 100
STATISTICS = ("avg", "p50", "p90", "p95", "p99")
LABELS = [
    f'{{endpoint="endpoint-{e:02d}",model="model-{m}",statistic="{s}"}}'
    for e in range(50)
    for m in range(4)
    for s in STATISTICS
]
SAMPLES = FAMILIES * len(LABELS)
GAUGE_SAMPLES = SAMPLES - SAMPLES // COUNTER_EVERY

# Targets from issue #10.
CHECK_STEADY_TARGET = 10.0
CHECK_FIRST_TARGET = 5.0
PROMETHEUS_TARGET = 3.0
RSS_TARGET_MB = 150.0
SOURCES_CPU_TARGET = 50.0


# -- the served page ------------------------------------------------------------------------------------------
class Exposition:
    """The 100k-sample page: gauge families rendered once, counter families at every request (+ request number)."""

    def __init__(self) -> None:
        self.requests = 0
        self._parts: list[bytes | tuple[str, ...]] = []
        for f in range(FAMILIES):
            if f % COUNTER_EVERY == COUNTER_EVERY - 1:
                name = f"bench_requests_{f:02d}_total"
                self._parts.append(f"# HELP {name} Requests served.\n# TYPE {name} counter\n".encode())
                self._parts.append(tuple(f"{name}{labels} " for labels in LABELS))
            else:
                name = f"bench_latency_{f:02d}_seconds"
                lines = [f"# HELP {name} Latency by statistic.", f"# TYPE {name} gauge"]
                lines += [f"{name}{labels} {0.001 * (1 + (i * 31 + f) % 997):.6g}" for i, labels in enumerate(LABELS)]
                self._parts.append(("\n".join(lines) + "\n").encode())

    def render(self) -> bytes:
        self.requests += 1  # only the server's one thread renders
        n = self.requests
        return b"".join(
            part
            if isinstance(part, bytes)
            else "".join([f"{p}{1000 + 7 * i + n}\n" for i, p in enumerate(part)]).encode()
            for part in self._parts
        )


@contextmanager
def serve(page: Callable[[str], bytes | None]) -> Iterator[str]:
    """A loopback HTTP/1.0 server answering every GET with `page(path)`; yields its base URL.

    One event loop on one thread, not a thread per connection: the sources mode's 1,000 scrapes arrive in the
    same second, and 1,000 threads fighting over the GIL (and the server's own CPU) would slow every answer.
    """
    loop = asyncio.new_event_loop()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            body = page(head.split(b" ", 2)[1].decode())
            status = b"200 OK" if body is not None else b"404 Not Found"
            body = body or b""
            writer.write(
                b"HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(body))
            )
            writer.write(body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):  # a contender that hung up: not the bench's failure
            pass
        finally:
            writer.close()

    server = loop.run_until_complete(asyncio.start_server(answer, "127.0.0.1", 0, backlog=2048))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


# -- the bridge's cycle (child process) --------------------------------------------------------------------------
async def bridge_cycles(url: str, cycles: int) -> dict[str, Any]:
    """N cycles through the public pipeline API on a manual clock set to each cycle's `now`."""
    from bridge.clock import ManualClock
    from bridge.config import parse_config
    from bridge.context import Context
    from bridge.pipeline import Pipeline

    clock = ManualClock(START)
    config = parse_config(
        {
            "sources": {"bench": {"type": "prometheus", "url": url}},
            "sinks": {
                "datadog": {"type": "datadog", "api_key": "0" * 32},
                "otlp": {"type": "otlp", "protocol": "http/protobuf", "endpoint": "http://127.0.0.1:9"},
            },
        }
    )
    pipeline = Pipeline(config, Context(clock=clock))
    await pipeline.start(schedule=False)
    source = pipeline.sources["bench"].source
    sinks = {name: lane.sink for name, lane in pipeline.lanes.items()}
    out = []
    for i in range(cycles):
        now = START + 60 * i + 5
        await clock.set(now)
        cycle: dict[str, Any] = {}
        wall, cpu = time.perf_counter(), time.process_time()
        batch = await source.collect(now)
        cycle["collect"] = (time.perf_counter() - wall, time.process_time() - cpu)
        assert batch is not None and batch.point_count() == SAMPLES, "the scrape did not yield the whole page"
        points = {}
        for name, sink in sinks.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            payloads = sink.prepare(batch)
            cycle[name] = (time.perf_counter() - began, time.process_time() - began_cpu)
            points[name] = sum(p.points for p in payloads)
        cycle["total"] = (time.perf_counter() - wall, time.process_time() - cpu)
        # A cumulative counter's first point is only remembered by the Datadog sink (no increase yet).
        expected = {"datadog": GAUGE_SAMPLES if i == 0 else SAMPLES, "otlp": SAMPLES}
        assert points == expected, f"cycle {i + 1}: prepared {points}, expected {expected}: points dropped"
        cycle["points"] = points
        out.append(cycle)
    await pipeline.stop(grace=1.0)
    return {"cycles": out, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# -- the peers ---------------------------------------------------------------------------------------------------
def check_python() -> Path:
    """The check's venv, created and installed once per pinned version (its pins clash with ours)."""
    python = CHECK_VENV / "bin" / "python"
    marker = CHECK_VENV / f".installed-{CHECK_VERSION}"
    if not marker.exists():
        print(f"installing datadog-checks-base[deps]=={CHECK_VERSION} into {CHECK_VENV} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(CHECK_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"datadog-checks-base[deps]=={CHECK_VERSION}"], check=True
        )
        marker.touch()
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _query(api: str, promql: str) -> list[Any]:
    return list(_get_json(f"{api}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")["data"]["result"])


def prometheus_scrapes(binary: str, url: str, scrapes: int, interval: int) -> dict[str, Any]:
    """Prometheus scraping `url` until it has `scrapes` scrape durations of its own; its peak RSS (VmHWM)."""
    target = urllib.parse.urlsplit(url)
    with tempfile.TemporaryDirectory(prefix="bench-prometheus-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            f"global: {{scrape_interval: {interval}s, scrape_timeout: {interval}s}}\n"
            f"scrape_configs:\n- job_name: bench\n  metrics_path: {target.path}\n"
            f"  static_configs: [{{targets: ['{target.netloc}']}}]\n"
        )
        api = f"http://127.0.0.1:{_free_port()}"
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp}/data",
            f"--web.listen-address={api.removeprefix('http://')}",
            "--log.level=warn",
        ]
        with open(Path(tmp) / "log", "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=log)
            try:
                durations = _await_scrapes(
                    api, process, scrapes, deadline=time.monotonic() + 30 + 3 * interval * scrapes
                )
                samples = [float(r["value"][1]) for r in _query(api, 'scrape_samples_scraped{job="bench"}')]
                # A scrape past its timeout still records a duration: `up` says whether each one read the page.
                ups = [float(v) for _, v in _query(api, 'up{job="bench"}[10m]')[0]["values"][:scrapes]]
                status = Path(f"/proc/{process.pid}/status").read_text()
                hwm_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            except Exception:
                print((Path(tmp) / "log").read_text()[-2000:], file=sys.stderr)
                raise
            finally:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    assert samples == [float(SAMPLES)], f"Prometheus scraped {samples} samples, not {SAMPLES}"
    assert all(ups), f"Prometheus scrapes failed (up = {ups}): raise --prometheus-interval, which is also the timeout"
    return {"durations_s": durations, "peak_rss_mb": hwm_kb / 1024}


def _await_scrapes(api: str, process: subprocess.Popen[bytes], scrapes: int, deadline: float) -> list[float]:
    """Poll Prometheus' API until its own series holds `scrapes` scrape durations of the bench job."""
    promql = 'scrape_duration_seconds{job="bench"}[10m]'
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with status {process.returncode}")
        try:
            result = _query(api, promql)
        except OSError:  # not listening yet
            result = []
        if result and len(result[0]["values"]) >= scrapes:
            return [float(v) for _, v in result[0]["values"][:scrapes]]
        time.sleep(0.5)
    raise TimeoutError(f"prometheus did not scrape {scrapes} times in time")


# -- the cycle mode (parent) -------------------------------------------------------------------------------------
def _child(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one contender in its own process (its own RSS); its last stdout line is JSON."""
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(command[:3])}... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _first_steady(values: list[float]) -> tuple[float, float]:
    return values[0], statistics.median(values[1:])


def cycle_mode(args: argparse.Namespace) -> dict[str, Any]:
    exposition = Exposition()
    size = len(exposition.render())
    results: dict[str, Any] = {"samples": SAMPLES, "body_bytes": size}
    python = check_python()
    with serve(lambda path: exposition.render() if path == "/metrics" else None) as base:
        url = f"{base}/metrics"
        without = [f"--without={package}" for package in args.without]
        bridge = _child(
            [sys.executable, __file__, "--child", "bridge", "--url", url, "--cycles", str(args.cycles), *without]
        )
        check = _child(
            [str(python), str(CHECK_SCRIPT), url, "--runs", str(args.cycles)], env={**os.environ, "PYTHONPATH": ""}
        )
        submissions = [run["submissions"] for run in check["runs"]]
        assert min(submissions) >= SAMPLES, f"the check submitted {submissions}, fewer than the {SAMPLES} samples"
        prometheus = shutil.which(args.prometheus)
        results["prometheus"] = (
            prometheus_scrapes(prometheus, url, args.cycles, args.prometheus_interval) if prometheus else None
        )
    results["bridge"], results["check"] = bridge, check
    results["versions"] = {
        "python": platform.python_version(),
        "datadog-checks-base": check["version"],
        "prometheus": _prometheus_version(prometheus) if prometheus else None,
    }
    return results


def _prometheus_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return (done.stdout or done.stderr).split()[2]


def report_cycle(results: dict[str, Any]) -> None:
    cycles = results["bridge"]["cycles"]
    part = {
        key: (_first_steady([c[key][0] for c in cycles]), _first_steady([c[key][1] for c in cycles]))
        for key in ("collect", "datadog", "otlp", "total")
    }
    check_runs = results["check"]["runs"]
    check_wall = _first_steady([r["wall_s"] for r in check_runs])
    check_cpu = _first_steady([r["cpu_s"] for r in check_runs])
    print(_machine())
    print(
        f"input: {results['samples']:,} samples ({FAMILIES} families x {len(LABELS)} series, "
        f"{100 // COUNTER_EVERY}% counters), {results['body_bytes'] / 1e6:.1f} MB per scrape; "
        f"{len(cycles)} cycles; versions {results['versions']}"
    )
    print(f"{'contender':<44}{'first s':>9}{'first CPU s':>13}{'steady s':>10}{'steady CPU s':>14}{'peak RSS MB':>13}")
    rows = [
        ("bridge: collect + Datadog & OTLP prepare", part["total"], results["bridge"]["peak_rss_mb"]),
        ("Datadog OpenMetrics V2 check (stub aggregator)", (check_wall, check_cpu), results["check"]["peak_rss_mb"]),
    ]
    for label, ((first, steady), (first_cpu, steady_cpu)), rss in rows:
        print(f"{label:<44}{first:>9.3f}{first_cpu:>13.3f}{steady:>10.3f}{steady_cpu:>14.3f}{rss:>13.0f}")
    prometheus = results["prometheus"]
    if prometheus is not None:
        prom_first, prom_steady = _first_steady(prometheus["durations_s"])
        print(
            f"{'Prometheus scrape_duration_seconds':<44}{prom_first:>9.3f}{'-':>13}{prom_steady:>10.3f}{'-':>14}"
            f"{prometheus['peak_rss_mb']:>13.0f}"
        )
    print("bridge split (wall s, CPU s in brackets):")
    for key, label in (
        ("collect", "collect (scrape, parse, classify)"),
        ("datadog", "Datadog prepare"),
        ("otlp", "OTLP prepare"),
    ):
        (first, steady), (first_cpu, steady_cpu) = part[key]
        print(f"  {label:<42}first {first:.3f} ({first_cpu:.3f})   steady {steady:.3f} ({steady_cpu:.3f})")
    (bridge_first, bridge_steady), _ = part["total"]
    rss = results["bridge"]["peak_rss_mb"]
    ratios = [
        ("check steady / bridge steady", check_wall[1] / bridge_steady, ">=", CHECK_STEADY_TARGET),
        ("check first / bridge first", check_wall[0] / bridge_first, ">=", CHECK_FIRST_TARGET),
    ]
    if prometheus is not None:
        ratios.append(("bridge steady / Prometheus steady", bridge_steady / prom_steady, "<=", PROMETHEUS_TARGET))
    print("ratios (wall):" + ("" if prometheus is not None else " Prometheus not found, its comparison skipped"))
    for label, value, sense, target in ratios:
        met = value >= target if sense == ">=" else value <= target
        print(f"  {label:<36}{value:>7.1f}x     (target {sense} {target:g}x: {_met(met)})")
    print(f"  {'bridge peak RSS':<36}{rss:>7.0f} MB  (target <= {RSS_TARGET_MB:g} MB: {_met(rss <= RSS_TARGET_MB)})")


def _met(met: bool) -> str:
    return "met" if met else "NOT met"


def _machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"machine: {os.cpu_count()} CPUs, {cpu}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )


# -- the sources mode --------------------------------------------------------------------------------------------
async def bridge_sources(base_url: str, count: int, minutes: float, sinks: dict[str, Any]) -> dict[str, Any]:
    """`count` cerebras sources on the real scheduler for `minutes`, then what the self-metrics counted."""
    from bridge import telemetry
    from bridge.clock import minute_floor
    from bridge.config import parse_config
    from bridge.pipeline import Pipeline

    names = [f"org_{i:04d}" for i in range(count)]
    sources = {n: {"type": "cerebras", "organization_id": n, "api_key": "bench", "base_url": base_url} for n in names}
    config = parse_config({"sources": sources, "sinks": sinks})
    # Start mid-minute: the first scrape (at once) and the first aligned one (at :05) then read different windows,
    # so every source should forward one window at start and one per minute boundary after it.
    into_minute = time.time() % 60
    if not 15 <= into_minute < 50:
        await asyncio.sleep((15 - into_minute) % 60)
    began, cpu = time.time(), time.process_time()
    pipeline = Pipeline(config)
    await pipeline.start()
    start_s = time.time() - began
    stop_at = minute_floor(began + minutes * 60) + 35  # mid-minute again: no scrape is cut off
    if stop_at < began + minutes * 60:
        stop_at += 60
    await asyncio.sleep(stop_at - time.time())
    wall, cpu = time.time() - began, time.process_time() - cpu
    await pipeline.stop(grace=10.0)

    # One pass over the self-metrics (REGISTRY.get_sample_value walks all of them at every call).
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {
        (s.name, frozenset(s.labels.items())): s.value
        for metric in telemetry.REGISTRY.collect()
        for s in metric.samples
    }

    def counted(metric: str, **labels: str) -> float:
        return values.get((metric, frozenset(labels.items())), 0.0)

    forwarded = [counted("bridge_windows_total", source=n, outcome="forwarded") for n in names]
    failures: dict[str, float] = {}
    for (name, labels), value in values.items():
        outcome = dict(labels).get("outcome", "")
        if name == "bridge_scrapes_total" and outcome != "ok" and value:
            failures[outcome] = failures.get(outcome, 0.0) + value
    failed_scrapes = sum(failures.values())
    evicted = {
        dict(labels).get("reason", ""): value
        for (name, labels), value in values.items()
        if name == "bridge_delivery_evicted_payloads_total" and value
    }
    return {
        "sources": count,
        "wall_s": wall,
        "start_s": start_s,
        "cpu_s": cpu,
        "windows_expected_per_source": int((minute_floor(stop_at) - minute_floor(began)) // 60) + 1,
        "forwarded_min": min(forwarded),
        "forwarded_max": max(forwarded),
        "forwarded_total": sum(forwarded),
        "gaps": sum(counted("bridge_gaps_total", source=n) for n in names),
        "failed_scrapes": failed_scrapes,
        "failures_by_outcome": failures,
        "evicted_by_reason": evicted,
        "sinks": {
            sink: {
                "payloads": counted("bridge_payloads_out_total", sink=sink),
                "points": counted("bridge_points_out_total", sink=sink),
            }
            for sink in sinks
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def sources_mode(args: argparse.Namespace) -> dict[str, Any]:
    """One loopback simulator, a path per organisation (one endpoint each, Cerebras-shaped); the bridge in a child."""
    from bridge.clock import minute_floor
    from bridge.simulator import API_PREFIX, EndpointProfile, render_exposition, simulate_window

    profiles = {
        f"org_{i:04d}": EndpointProfile(f"endpoint-{i:04d}", rpm=600.0, failure_rate=0.01) for i in range(args.sources)
    }

    pages: dict[tuple[str, float], bytes] = {}  # rendered once a minute per organisation: the server stays light

    def page(path: str) -> bytes | None:
        organization = path.removeprefix(API_PREFIX)
        profile = profiles.get(organization)
        if profile is None:
            return None
        start = minute_floor(time.time()) - 60
        key = (organization, start)
        if key not in pages:
            if len(pages) > 2 * len(profiles):
                pages.clear()
            window = simulate_window([profile], seed=0, window_start=start)
            pages[key] = render_exposition(window, organization).encode()
        return pages[key]

    with serve(page) as base, contextlib.ExitStack() as receivers:
        sinks: dict[str, Any] = {"out": {"type": "jsonl", "path": "/dev/null"}}
        if args.sinks != "jsonl":  # real receivers on loopback, in this process: their CPU is not counted
            from tests.receivers.datadog_intake import DatadogIntake
            from tests.receivers.otlp import HttpReceiver

            intake = receivers.enter_context(DatadogIntake(api_keys={"bench"}, latency_seconds=args.latency))
            delivery = {"max_in_flight": args.max_in_flight} if args.max_in_flight else {}
            sinks = {"datadog": {"type": "datadog", "url": intake.url, "api_key": "bench", "delivery": delivery}}
            if args.sinks == "datadog,otlp":
                otlp = receivers.enter_context(HttpReceiver())
                endpoint = otlp.endpoint
                sinks["otlp"] = {
                    "type": "otlp",
                    "protocol": "http/protobuf",
                    "endpoint": endpoint,
                    "delivery": delivery,
                }
        command = [sys.executable, __file__, "--child", "sources", "--url", base + API_PREFIX.rstrip("/")]
        command += ["--sink-config", json.dumps(sinks)]
        return _child([*command, "--sources", str(args.sources), "--minutes", str(args.minutes)])


def report_sources(r: dict[str, Any]) -> None:
    expected = r["windows_expected_per_source"]
    # Missed: not forwarded by a source, or forwarded and then evicted from the sink's queue (jsonl: a payload each).
    missed = r["sources"] * expected - r["forwarded_total"] + sum(r["evicted_by_reason"].values())
    cpu_percent = 100 * r["cpu_s"] / r["wall_s"]
    cpu_ok = cpu_percent < SOURCES_CPU_TARGET
    print(_machine())
    sinks = ", ".join(r["sinks"]) if "out" not in r["sinks"] else "a jsonl sink to /dev/null"
    print(
        f"{r['sources']} cerebras sources in one process, {r['wall_s'] / 60:.1f} min on the real clock "
        f"(start {r['start_s']:.1f} s), into {sinks}"
    )
    rows = [
        ("windows expected per source", f"{expected}"),
        ("windows forwarded per source", f"min {r['forwarded_min']:.0f}, max {r['forwarded_max']:.0f}"),
        (
            "windows missed",
            f"{missed:.0f}, gaps counted {r['gaps']:.0f} (target 0: {_met(not missed and not r['gaps'])})",
        ),
        ("failed scrapes", f"{r['failed_scrapes']:.0f} {r['failures_by_outcome'] or ''}"),
        *(
            (f"delivered to {sink}", f"{d['payloads']:.0f} payloads, {d['points']:.0f} points")
            for sink, d in r["sinks"].items()
        ),
        ("evicted from the sinks' queues", f"{r['evicted_by_reason'] or 'none'}"),
        ("CPU", f"{cpu_percent:.1f}% of one core (target < {SOURCES_CPU_TARGET:g}%: {_met(cpu_ok)})"),
        ("peak RSS", f"{r['peak_rss_mb']:.0f} MB"),
    ]
    for label, value in rows:
        print(f"  {label:<32}{value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["cycle", "sources"], default="cycle")
    parser.add_argument("--cycles", type=int, default=8, help="cycle mode: cycles per contender (>= 6)")
    parser.add_argument("--prometheus", default="/usr/bin/prometheus", help="cycle mode: the Prometheus binary")
    parser.add_argument(
        "--prometheus-interval", type=int, default=2, help="cycle mode: its scrape interval and timeout, s"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="sources mode: how long to run")
    parser.add_argument("--sources", type=int, default=1000, help="sources mode: how many sources")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    parser.add_argument(
        "--sinks",
        choices=["jsonl", "datadog", "datadog,otlp"],
        default="jsonl",
        help="sources mode: a jsonl sink on /dev/null, or the Datadog (and OTLP/HTTP) sinks into loopback receivers",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="sources mode: the Datadog receiver answers this late (s)"
    )
    parser.add_argument(
        "--max-in-flight", type=int, help="sources mode: the sinks' delivery.max_in_flight (default: the bridge's)"
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="PKG",
        help="cycle mode: run the bridge with PKG unimportable (repeatable), as bench_idle.py does: e.g. click, "
        "which httpx imports for its command line whenever it is installed (a dev tool here, not in the image)",
    )
    parser.add_argument("--child", choices=["bridge", "sources"], help=argparse.SUPPRESS)
    parser.add_argument("--sink-config", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cycles < 6:
        parser.error("--cycles: at least 6, so the steady state is a median of 5 or more")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.child == "bridge":
        sys.modules.update(dict.fromkeys(args.without))  # before the bridge is imported: as if not installed
        print(json.dumps(asyncio.run(bridge_cycles(args.url, args.cycles))))
    elif args.child == "sources":
        sinks = json.loads(args.sink_config)
        print(json.dumps(asyncio.run(bridge_sources(args.url, args.sources, args.minutes, sinks))))
    elif args.mode == "cycle":
        results = cycle_mode(args)
        print(json.dumps(results)) if args.json else report_cycle(results)
    else:
        results = sources_mode(args)
        print(json.dumps(results)) if args.json else report_sources(results)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
