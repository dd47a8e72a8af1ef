"""Canary secrets must never leave the process: not in logs, `validate`, `once --dry-run`, /metrics or tracebacks.

Canaries are planted every way a key reaches the bridge: literally in the
config, through ${VAR}, through ${file:...}, through a component's own
environment default (CEREBRAS_API_KEY, DD_API_KEY, OTEL_EXPORTER_OTLP_HEADERS)
and through a token file re-read at each scrape. The upstreams and backends
are a hostile echo server that puts every request header it received into its
error bodies, the way some APIs do; then every byte of output is grepped.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bridge import cli, secrets
from bridge.clock import SystemClock
from bridge.config import ConfigError, load_config
from bridge.health import HealthServer, HealthState
from bridge.telemetry import SCRAPES, setup_logging

ROOT = Path(__file__).resolve().parents[1]

CANARIES = {
    "config": "cnry-config-datadog-5b1e0c7d",
    "env_ref": "cnry-env-otlp-auth-93d2f4aa",
    "file_ref": "cnry-file-grafana-token-0e6a77c1",
    "env_cerebras": "cnry-env-cerebras-key-4c8b1f20",
    "env_datadog": "cnry-env-dd-api-key-7a2e9d31",
    "env_otel_headers": "cnry-env-otel-header-2f9c6b58",
    "token_file": "cnry-token-file-bearer-61d0e4b9",
}
GRAFANA_INSTANCE = "424242"
# what a Grafana Cloud request really carries: basic auth built from the token
ENCODED = base64.b64encode(f"{GRAFANA_INSTANCE}:{CANARIES['file_ref']}".encode()).decode()


def assert_no_canary(text: str, where: str) -> None:
    leaked = [name for name, value in CANARIES.items() if value in text]
    if ENCODED in text:
        leaked.append("grafana basic-auth credentials")
    assert not leaked, f"{where} leaked {leaked}:\n{text[-3000:]}"


class _Echo(BaseHTTPRequestHandler):
    """Rejects everything and reflects the request's headers (keys included) in the body."""

    def _reject(self, status: int) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = ("rejected; you sent: " + "; ".join(f"{k}={v}" for k, v in self.headers.items())).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reject(401)

    def do_POST(self) -> None:
        self._reject(403)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """setup_logging replaces the root handlers: give other tests theirs back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def planted(tmp_path: Path, echo_url: str) -> tuple[Path, dict[str, str]]:
    """A config with every kind of canary, and the environment the process needs for it."""
    (tmp_path / "grafana-token").write_text(CANARIES["file_ref"] + "\n")
    (tmp_path / "bearer-token").write_text(CANARIES["token_file"])
    config = tmp_path / "config.yaml"
    config.write_text(f"""
sources:
  demo:
    type: simulator
  cerebras:
    type: cerebras
    organization_id: org_canary
    base_url: {echo_url}/v1/metrics/organizations
  exporter:
    type: prometheus
    url: {echo_url}/metrics
    interval_seconds: 5
    offset_seconds: 0
    auth: {{type: bearer, token_file: {tmp_path / 'bearer-token'}}}
sinks:
  console:
    type: console
  datadog:
    type: datadog
    url: {echo_url}
    api_key: {CANARIES['config']}
  datadog_env:
    type: datadog
    url: {echo_url}
  otlp:
    type: otlp
    protocol: http/protobuf
    endpoint: {echo_url}
    headers:
      authorization: "Bearer ${{OTLP_AUTH}}"
  grafana:
    type: grafana_cloud
    instance_id: "{GRAFANA_INSTANCE}"
    token: ${{file:{tmp_path / 'grafana-token'}}}
    endpoint: https://127.0.0.1:9/otlp
""")
    env = {
        "OTLP_AUTH": CANARIES["env_ref"],
        "CEREBRAS_API_KEY": CANARIES["env_cerebras"],
        "DD_API_KEY": CANARIES["env_datadog"],
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-canary={CANARIES['env_otel_headers']}",
    }
    return config, env


# ---------------------------------------------------------------- in process: loader, logging, /metrics
def test_loading_registers_every_planted_secret(planted: tuple[Path, dict[str, str]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config, env = planted
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_config(config)
    for name, value in CANARIES.items():
        if name != "token_file":  # read at scrape time, registered then
            assert secrets.redact(f"x {value} y") == f"x {secrets.REDACTED} y", name


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_logs_and_tracebacks_are_redacted(planted: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch,
                                          fmt: str) -> None:
    config, env = planted
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_config(config)
    stream = io.StringIO()
    setup_logging("debug", fmt)
    handler = logging.getLogger().handlers[0]
    monkeypatch.setattr(handler, "stream", stream)
    log = logging.getLogger("bridge.canary")
    key = CANARIES["config"]
    log.info("plain %s", key)
    log.warning(f"f-string {CANARIES['env_ref']}")
    log.error("dict %s", {"headers": {"authorization": f"Bearer {CANARIES['env_ref']}"}})
    try:
        raise RuntimeError(f"upstream said: invalid key {CANARIES['env_cerebras']}")
    except RuntimeError:
        log.exception("scrape failed with %s", CANARIES["file_ref"])
    try:
        try:
            raise ValueError(CANARIES["env_datadog"])
        except ValueError as inner:
            raise ConnectionError("send failed") from inner
    except ConnectionError:
        log.debug("chained", exc_info=True)
    output = stream.getvalue()
    assert "RuntimeError" in output and "Traceback" in output and output.count(secrets.REDACTED) >= 6
    assert_no_canary(output, f"{fmt} logs")
    if fmt == "json":
        assert all(json.loads(line)["logger"] == "bridge.canary" for line in output.splitlines())


def test_config_errors_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTLP_AUTH", CANARIES["env_ref"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"""
sources:
  demo: {{type: simulator, organization_id: "org with spaces"}}
sinks:
  datadog: {{type: datadog, api_key: {CANARIES['config']}, timeout_seconds: -1}}
  otlp: {{type: otlp, endpoint: "ftp://${{OTLP_AUTH}}", headers: {{authorization: [{CANARIES['env_ref']}]}}}}
  grafana: {{type: grafana_cloud, instance_id: 1, token: {CANARIES['file_ref']}, zone: "Not A Zone"}}
""")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert len(caught.value.problems) >= 4
    assert_no_canary(str(caught.value), "config errors")


def test_metrics_endpoint_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a label value carrying a key (a reason string, a URL) is scrubbed from /metrics."""
    secrets.register(CANARIES["config"])
    SCRAPES.labels(source="canary", outcome=f"http_401 key={CANARIES['config']}").inc()

    async def main() -> str:
        server = HealthServer("127.0.0.1:0", HealthState(SystemClock()))
        await server.start()
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{server.port}/metrics")).text
        finally:
            await server.stop()

    text = asyncio.run(main())
    assert 'source="canary"' in text
    assert_no_canary(text, "/metrics")


def test_an_unexpected_error_in_the_cli_is_redacted(planted: tuple[Path, dict[str, str]],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """The CLI's last-resort handler: a crash whose message carries a key prints and logs it redacted."""
    config, env = planted
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def explode(args: object) -> int:
        raise RuntimeError(f"boom while using {CANARIES['config']} and {CANARIES['env_ref']}")

    monkeypatch.setattr(cli, "cmd_validate", explode)
    for fmt in ("json", "console"):
        assert cli.main(["validate", "-c", str(config), "--log-level", "debug", "--log-format", fmt]) == 2
        out, err = capfd.readouterr()
        assert "boom while using" in err and "RuntimeError" in err, "the traceback is logged at debug"
        assert_no_canary(out + err, f"crash output ({fmt})")


# ---------------------------------------------------------------- the real command, as a subprocess
def bridge(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args], env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_validate_output(planted: tuple[Path, dict[str, str]], tmp_path: Path, fmt: str) -> None:
    config, env = planted
    result = bridge(["validate", "-c", str(config), "--log-format", fmt], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert_no_canary(result.stdout + result.stderr, "validate")
    broken = tmp_path / "broken.yaml"
    broken.write_text(config.read_text().replace("type: console", "type: console\n    colour: always"))
    result = bridge(["validate", "-c", str(broken), "--log-format", fmt], env, tmp_path)
    assert result.returncode == 1 and "sinks.console.colour: unknown key" in result.stderr
    assert_no_canary(result.stdout + result.stderr, "validate of an invalid config")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_once_dry_run_output(planted: tuple[Path, dict[str, str]], tmp_path: Path, fmt: str) -> None:
    config, env = planted
    result = bridge(["once", "-c", str(config), "--dry-run", "--log-level", "debug", "--log-format", fmt], env,
                    tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "=== sink datadog" in result.stdout and "=== sink grafana" in result.stdout
    assert_no_canary(result.stdout + result.stderr, "once --dry-run")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_run_logs_metrics_and_readyz(planted: tuple[Path, dict[str, str]], tmp_path: Path, fmt: str) -> None:
    """A running bridge whose upstreams and backends all echo the keys back: nothing of them comes out."""
    config, env = planted
    port = free_port()
    config.write_text(config.read_text() + f"telemetry: {{listen: '127.0.0.1:{port}', log_level: debug}}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "run", "-c", str(config), "--log-format", fmt, "--grace", "2"],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    pages: list[str] = []
    try:
        deadline = time.monotonic() + 45
        wanted = ('bridge_scrapes_total{outcome="ok",source="demo"}', 'source="cerebras"', 'source="exporter"',
                  'sink="datadog"', 'sink="datadog_env"', 'sink="otlp"', 'sink="grafana"')
        while time.monotonic() < deadline and process.poll() is None:
            try:
                metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                pages += [metrics, httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).text]
                if all(w in metrics for w in wanted):
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        missing = [w for w in wanted if not pages or w not in pages[-2]]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    assert not missing, f"the bridge never got that far: {missing}\n{err[-3000:]}"
    assert "sink datadog: failing permanently" in pages[-1], "readiness reasons were exercised"
    assert "you sent:" in err, "the echoed headers reached the logs, redacted"
    assert_no_canary(out + err, f"run output ({fmt})")
    assert_no_canary("\n".join(pages), "/metrics and /readyz")
