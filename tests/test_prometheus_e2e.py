"""A real Prometheus (Debian's package, run directly) scrapes a real `metrics-bridge run`.

Proves the exposition on the telemetry port is what a Prometheus server
accepts (content type, format, names), and that the bridge's own series show
up there once it runs, not just what prometheus_client's parser accepts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.prometheus_server import stop

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = Path("/usr/bin/prometheus")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(  # in CI, scripts/ci-deps.sh installs it: a missing binary there must fail, not skip
        not PROMETHEUS.exists() and not os.environ.get("CI"),
        reason="needs Debian's prometheus at /usr/bin/prometheus: run scripts/ci-deps.sh",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query_until(
    client: httpx.Client, promql: str, deadline: float, processes: list[subprocess.Popen[bytes]]
) -> list[dict]:
    """Poll the instant-query API until the expression returns a series."""
    last = ""
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args[0]} exited with {process.returncode}"
        try:
            r = client.get("/api/v1/query", params={"query": promql})
            if r.status_code == 200 and r.json()["data"]["result"]:
                return r.json()["data"]["result"]
            last = r.text
        except httpx.TransportError as exc:  # Prometheus still starting
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"{promql} never appeared; last answer: {last}")


def test_prometheus_scrapes_a_running_bridge(tmp_path: Path) -> None:
    bridge_port, prometheus_port = free_port(), free_port()
    (tmp_path / "bridge.yaml").write_text(
        "sources: {demo: {type: simulator}}\n"
        f"sinks: {{out: {{type: jsonl, path: {tmp_path / 'out.jsonl'}}}}}\n"
        f"telemetry: {{listen: '127.0.0.1:{bridge_port}', log_format: json}}\n"
    )
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: metrics-bridge\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{bridge_port}']}}]\n"
    )
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("bridge", "prometheus")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "run", "-c", str(tmp_path / "bridge.yaml")],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=logs["bridge"],
        ),
        subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=logs["prometheus"],
        ),
    ]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{prometheus_port}", timeout=5) as client:
            deadline = time.monotonic() + 60
            up = query_until(client, 'up{job="metrics-bridge"} == 1', deadline, processes)
            assert up[0]["metric"]["instance"] == f"127.0.0.1:{bridge_port}"
            scrapes = query_until(client, 'bridge_scrapes_total{source="demo",outcome="ok"} >= 1', deadline, processes)
            assert scrapes[0]["metric"]["job"] == "metrics-bridge"
            query_until(client, 'bridge_points_out_total{sink="out"} > 0', deadline, processes)
            query_until(client, 'bridge_last_scrape_success_timestamp_seconds{source="demo"} > 0', deadline, processes)
    except AssertionError:
        for name, log in logs.items():
            log.flush()
            print(f"--- {name} log\n{(tmp_path / f'{name}.log').read_text()[-3000:]}")
        raise
    finally:
        for process in processes:
            stop(process)
        for log in logs.values():
            log.close()
