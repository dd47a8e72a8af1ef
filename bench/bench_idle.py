"""Idle memory of a real `metrics-bridge run`: one `cerebras` source, three sinks (issue #10: <= 50 MB).

Each measurement is a fresh `python -m bridge.cli run -c <config>` subprocess (so
its RSS is its own), against loopback servers this script starts: the embedded
Cerebras simulator (bridge/simulator.py) as the Metrics API, and the test
receivers (tests/receivers/) as Datadog's intake, an OTLP/gRPC and an
OTLP/HTTP collector, so every delivery succeeds as in a healthy deployment.
Once the first scrape has been delivered by every sink (the process's own
/metrics says so), the process is left alone for --settle seconds, then
VmRSS (idle) and VmHWM (peak) are read from /proc/<pid>/status. The
checkout's bridge/ is byte-compiled first, as an installed wheel is: otherwise
every child would compile it again, which costs time and memory a real
install never pays.

Configs: `three_sinks` (datadog + otlp grpc + otlp http/protobuf), the same
with the gRPC sink on http/protobuf (`three_sinks_no_grpc`: what gRPC costs),
and `console` (one console sink, the shipped cerebras-console.yaml shape).

--without PKG (repeatable) measures each config a second time with PKG made
unimportable, as if it were not installed: e.g. click, rich and pygments,
which httpx imports for its command line whenever they are installed (this
virtualenv has them for mutmut; the container image does not). That run
starts the bridge as the `metrics-bridge` script does (bridge.cli:main).
With --importtime, each config also runs once under `-X importtime`, and the
top-level packages the process imported are listed by their total import time.

    python bench/bench_idle.py [--repeat 3] [--settle 3] [--without click --without rich --without pygments]
                               [--importtime] [--top 12]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import compileall
import contextlib
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402  # after the path: the servers below import bridge and tests from this checkout

from bridge.simulator import CerebrasSimulator  # noqa: E402
from tests.receivers.datadog_intake import DatadogIntake  # noqa: E402
from tests.receivers.otlp import GrpcReceiver, HttpReceiver  # noqa: E402

CEREBRAS_KEY = "bench-cerebras-key"
DD_KEY = "bench-dd-key"
ORGANIZATION = "org_bench"
READY_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _configs(
    simulator: CerebrasSimulator, intake: DatadogIntake, grpc_rx: GrpcReceiver, http_rx: HttpReceiver
) -> dict[str, dict[str, Any]]:
    host, port = simulator.server_address
    source = {
        "cerebras": {
            "type": "cerebras",
            "organization_id": ORGANIZATION,
            "api_key": "${CEREBRAS_API_KEY}",
            "base_url": f"http://{host}:{port}/api/v1/metrics/organizations",
        }
    }
    three = {
        "datadog": {"type": "datadog", "url": intake.url, "api_key": "${DD_API_KEY}"},
        "otlp_grpc": {"type": "otlp", "protocol": "grpc", "endpoint": grpc_rx.endpoint},
        "otlp_http": {"type": "otlp", "protocol": "http/protobuf", "endpoint": http_rx.endpoint},
    }
    no_grpc = {**three, "otlp_grpc": {**three["otlp_http"]}}
    return {
        "three_sinks": {"sources": source, "sinks": three},
        "three_sinks_no_grpc": {"sources": source, "sinks": no_grpc},
        "console": {"sources": source, "sinks": {"console": {"type": "console"}}},
    }


def _status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _delivered(metrics_url: str, sinks: list[str]) -> bool:
    """Whether every sink has had a payload acknowledged (the first scrape went all the way through)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return False
    done = set()
    for sink in sinks:
        match = re.search(rf'^bridge_payloads_out_total\{{sink="{re.escape(sink)}"\}} (\S+)$', text, re.M)
        if match and float(match.group(1)) >= 1:
            done.add(sink)
    return done == set(sinks)


def _command(config_path: Path, without: list[str], importtime: bool) -> list[str]:
    """`python -m bridge.cli run -c <config>`, or with packages made unimportable, the entry point's code."""
    flags = ["-X", "importtime"] if importtime else []
    if not without:
        return [sys.executable, *flags, "-m", "bridge.cli", "run", "-c", str(config_path)]
    start = f"import sys; sys.modules.update(dict.fromkeys({without!r})); from bridge.cli import main; sys.exit(main())"
    return [sys.executable, *flags, "-c", start, "run", "-c", str(config_path)]


async def _measure(config: dict[str, Any], settle: float, without: list[str], importtime: bool) -> dict[str, Any]:
    """Start `run` on the config, wait for its first delivery, idle, read its memory, stop it."""
    listen = f"127.0.0.1:{_free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bridge.yaml"
        path.write_text(yaml.safe_dump({**config, "telemetry": {"listen": listen}}))
        env = {**os.environ, "CEREBRAS_API_KEY": CEREBRAS_KEY, "DD_API_KEY": DD_KEY}
        stderr = Path(tmp) / "stderr"
        with stderr.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                *_command(path, without, importtime),
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            try:
                started = time.monotonic()
                while not await asyncio.to_thread(_delivered, f"http://{listen}/metrics", list(config["sinks"])):
                    if process.returncode is not None or time.monotonic() - started > READY_TIMEOUT:
                        raise RuntimeError(f"no delivery from every sink:\n{stderr.read_text()[-3000:]}")
                    await asyncio.sleep(0.2)
                first_delivery = time.monotonic() - started
                await asyncio.sleep(settle)
                memory = _status(process.pid)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                await process.wait()
        return {**memory, "first_delivery_s": first_delivery, "stderr": stderr.read_text()}


def _import_costs(log: str) -> tuple[list[tuple[str, float]], int]:
    """(top-level package, summed self import time in ms) from an -X importtime log, and how many modules."""
    per_package: collections.Counter[str] = collections.Counter()
    modules = 0
    for line in log.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|( *)(\S+)", line)
        if match:
            modules += 1
            per_package[match.group(3).split(".")[0]] += int(match.group(1)) / 1000
    return per_package.most_common(), modules


async def _run(args: argparse.Namespace) -> None:
    compileall.compile_dir(REPO / "bridge", quiet=1)
    simulator = CerebrasSimulator(organization_id=ORGANIZATION, api_key=CEREBRAS_KEY, rate_limit_per_minute=10_000)
    with simulator, DatadogIntake(api_keys={DD_KEY}) as intake, HttpReceiver() as http_rx:
        async with GrpcReceiver() as grpc_rx:
            configs = _configs(simulator, intake, grpc_rx, http_rx)
            variants = [("", [])] + ([(f" without {','.join(args.without)}", args.without)] if args.without else [])
            runs = [(name + label, config, without) for name, config in configs.items() for label, without in variants]
            results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in runs}
            for _ in range(args.repeat):  # interleaved: a drift in the machine's load hits every config alike
                for name, config, without in runs:
                    results[name].append(await _measure(config, args.settle, without, importtime=False))
            imports = {
                name: _import_costs((await _measure(config, 0.0, without, importtime=True))["stderr"])
                for name, config, without in runs
                if args.importtime
            }
    print(
        f"machine: {os.cpu_count()} CPUs, {_cpu_model()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"median of {args.repeat} fresh processes each; memory read {args.settle:g} s after the first delivery")
    width = max(len(name) for name in results) + 2
    print(f"{'config':<{width}}{'VmRSS idle MB':>15}{'VmHWM MB':>10}{'first delivery s':>18}   all VmRSS")
    for name, measured in results.items():
        rss = [r["VmRSS"] for r in measured]
        print(
            f"{name:<{width}}{statistics.median(rss):>15.1f}{statistics.median(r['VmHWM'] for r in measured):>10.1f}"
            f"{statistics.median(r['first_delivery_s'] for r in measured):>18.1f}   "
            + ", ".join(f"{v:.1f}" for v in rss)
        )
    for name, (costs, modules) in imports.items():
        print(f"\n{name}: {modules} modules imported; top packages by import time (self, summed)")
        for package, ms in costs[: args.top]:
            print(f"  {package:<32}{ms:>8.1f} ms")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per config (median reported)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle after the first delivery")
    parser.add_argument(
        "--without", action="append", default=[], metavar="PKG", help="also measure with PKG unimportable (repeatable)"
    )
    parser.add_argument("--importtime", action="store_true", help="also list the imports each config costs")
    parser.add_argument("--top", type=int, default=12, help="packages listed with --importtime")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
