"""Canary secrets must never leave the process: not in logs, `validate`, `once --dry-run`, /metrics or tracebacks.

Canaries are planted every way a key reaches the bridge: literally in the
config, through ${VAR}, through ${file:...}, through a component's own
environment default (CEREBRAS_API_KEY, DD_API_KEY, OTEL_EXPORTER_OTLP_HEADERS,
and a malformed entry of it, which OpenTelemetry's parser logs verbatim) and
through a bearer token file and a basic-auth password file re-read at each
scrape. Every upstream and backend is a hostile echo server that answers with
the credentials it received (basic auth decoded too), in a body short enough
to be logged whole.

Each output is checked both ways. With redaction switched off (the test-only
switch in bridge.secrets) every canary that output can carry must appear:
that proves the test reaches it. With redaction on, none may. Where a test
shows only "never printed" (nothing reaches that output at all), it says so.
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
from collections.abc import Collection, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bridge import cli, secrets
from bridge.auth import auth_header
from bridge.clock import ManualClock, SystemClock
from bridge.config import ConfigError, load_config, parse_config
from bridge.context import Context
from bridge.health import HealthServer, HealthState
from bridge.simulator import CerebrasSimulator
from bridge.sources.cerebras import CerebrasSource
from bridge.telemetry import SCRAPES, setup_logging
from tests.conftest import T0, run

ROOT = Path(__file__).resolve().parents[1]

CANARIES = {
    "config": "cnry-config-datadog-5b1e0c7d",
    "env_ref": "cnry-env-otlp-auth-93d2f4aa",
    "file_ref": "cnry-file-grafana-token-0e6a77c1",
    "env_cerebras": "cnry-env-cerebras-key-4c8b1f20",
    "env_datadog": "cnry-env-dd-api-key-7a2e9d31",
    "env_otel_headers": "cnry-env-otel-header-2f9c6b58",
    "env_otel_typo": "cnry-env-otel-typo-d41c9e07",
    "token_file": "cnry-token-file-bearer-61d0e4b9",
    "password_file": "cnry-password-file-basic-8e3f",
    "env_remote_write_password": "cnry-env-rw-basic-password-3a9d51e2",
    "config_remote_write_header": "cnry-config-rw-header-b7c40f19",
    "env_grafana_prometheus_token": "cnry-env-grafana-prom-token-5d2e",
}
GRAFANA_INSTANCE = "424242"
GRAFANA_PROMETHEUS_INSTANCE = "737373"
REMOTE_WRITE_USER = "rw-user"
SCRAPE_USER = "scraper"
# what a request with basic auth really carries: the base64 of user:password, as secret as the password
ENCODED = {
    "grafana basic-auth credentials": base64.b64encode(f"{GRAFANA_INSTANCE}:{CANARIES['file_ref']}".encode()).decode(),
    "exporter basic-auth credentials": base64.b64encode(f"{SCRAPE_USER}:{CANARIES['password_file']}".encode()).decode(),
    "remote-write basic-auth credentials": base64.b64encode(
        f"{REMOTE_WRITE_USER}:{CANARIES['env_remote_write_password']}".encode()
    ).decode(),
    "grafana prometheus basic-auth credentials": base64.b64encode(
        f"{GRAFANA_PROMETHEUS_INSTANCE}:{CANARIES['env_grafana_prometheus_token']}".encode()
    ).decode(),
}
EVERY_CANARY = (*CANARIES, *ENCODED)
TYPO_ENTRY = f"x-tenant-token:{CANARIES['env_otel_typo']}"  # ":" for "=": OpenTelemetry logs the entry verbatim


def leaked(text: str) -> list[str]:
    secret_values = {**CANARIES, **ENCODED}
    return [name for name, value in secret_values.items() if value in text]


def check_output(text: str, where: str, *, redaction: bool, reachable: Collection[str]) -> None:
    """Redaction on: no canary in `text`. Off: every `reachable` one is there, so the check above means something."""
    found = leaked(text)
    if redaction:
        assert not found, f"{where} leaked {found}:\n{text[-3000:]}"
    else:
        missing = sorted(set(reachable) - set(found))
        assert not missing, (
            f"{where}: canaries {missing} never reach this output, so it checks nothing:\n{text[-3000:]}"
        )


def assert_no_canary(text: str, where: str) -> None:
    check_output(text, where, redaction=True, reachable=())


class _Echo(BaseHTTPRequestHandler):
    """Rejects every request, answering with the credentials it received (basic auth decoded) in a short body.

    GETs (sources) get 400, which every source logs with the server's text (a
    Cerebras 401 or 403 is explained in fixed words); POSTs (sinks) get 403, permanent.
    """

    server: _EchoServer
    credential_headers = ("authorization", "dd-api-key", "x-canary")

    def _reject(self, status: int) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.server.requests += 1
        sent = [f"{name}={self.headers[name]}" for name in self.credential_headers if self.headers.get(name)]
        scheme, _, credentials = (self.headers.get("authorization") or "").partition(" ")
        if scheme == "Basic":
            sent.append("decoded=" + base64.b64decode(credentials).decode(errors="replace"))
        body = ("bad credentials: " + "; ".join(sent)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reject(400)

    def do_POST(self) -> None:
        self._reject(403)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    requests = 0


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """setup_logging replaces the root handlers: give other tests theirs back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(params=[True, False], ids=["redacted", "unredacted"])
def redaction(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Both ways: redaction on (the claim), and off (proof that the canaries reach the output checked)."""
    if not request.param:
        secrets._disable_for_tests()
    yield request.param
    secrets._enable()


def redaction_env(redaction: bool) -> dict[str, str]:
    """The environment a subprocess needs for the same switch."""
    return {} if redaction else {secrets.TEST_SWITCH: secrets.TEST_SWITCH_VALUE}


@pytest.fixture(scope="module")
def echo() -> Iterator[_EchoServer]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def echo_url(echo: _EchoServer) -> str:
    return f"http://127.0.0.1:{echo.server_address[1]}"


@pytest.fixture
def planted(tmp_path: Path, echo_url: str) -> tuple[Path, dict[str, str]]:
    """A config with every kind of canary, and the environment the process needs for it."""
    (tmp_path / "grafana-token").write_text(CANARIES["file_ref"] + "\n")
    (tmp_path / "bearer-token").write_text(CANARIES["token_file"])
    (tmp_path / "password").write_text(CANARIES["password_file"] + "\n")
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
    auth: {{type: bearer, token_file: {tmp_path / "bearer-token"}}}
  basic:
    type: prometheus
    url: {echo_url}/basic
    interval_seconds: 5
    offset_seconds: 0
    auth: {{type: basic, username: {SCRAPE_USER}, password_file: {tmp_path / "password"}}}
sinks:
  console:
    type: console
  datadog:
    type: datadog
    url: {echo_url}
    api_key: {CANARIES["config"]}
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
    token: ${{file:{tmp_path / "grafana-token"}}}
    endpoint: {echo_url}/otlp
  remote_write:
    type: remote_write
    url: {echo_url}/api/v1/write
    auth: {{type: basic, username: {REMOTE_WRITE_USER}, password: "${{RW_PASSWORD}}"}}
    headers: {{x-canary: {CANARIES["config_remote_write_header"]}}}
  grafana_prometheus:
    type: grafana_cloud_prometheus
    url: {echo_url}/api/prom/push
    instance_id: {GRAFANA_PROMETHEUS_INSTANCE}
    token: "${{GRAFANA_PROM_TOKEN}}"
""")
    env = {
        "OTLP_AUTH": CANARIES["env_ref"],
        "CEREBRAS_API_KEY": CANARIES["env_cerebras"],
        "DD_API_KEY": CANARIES["env_datadog"],
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-canary={CANARIES['env_otel_headers']},{TYPO_ENTRY}",
        "RW_PASSWORD": CANARIES["env_remote_write_password"],
        "GRAFANA_PROM_TOKEN": CANARIES["env_grafana_prometheus_token"],
    }
    return config, env


# ---------------------------------------------------------------- in process: loader, logging, /metrics
def test_loading_and_scrape_auth_register_every_planted_secret(
    planted: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, env = planted
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = load_config(config)
    for source in ("exporter", "basic"):  # credential files are read at each scrape: registered then
        auth_header(loaded.sources[source].auth)  # type: ignore[attr-defined]
    registered = {**CANARIES, **ENCODED, "env_otel_typo": TYPO_ENTRY}  # a malformed entry is registered whole
    for name, value in registered.items():
        assert secrets.redact(f"x {value} y") == f"x {secrets.REDACTED} y", name


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_logs_and_tracebacks_are_redacted(
    planted: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch, fmt: str, redaction: bool
) -> None:
    config, env = planted
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    load_config(config)
    stream = io.StringIO()
    setup_logging("debug", fmt)
    handler = logging.getLogger().handlers[0]
    monkeypatch.setattr(handler, "stream", stream)
    log = logging.getLogger("bridge.canary")
    log.info("plain %s", CANARIES["config"])
    log.warning(f"f-string {CANARIES['env_ref']}")
    log.error("dict %s", {"headers": {"authorization": f"Bearer {CANARIES['env_otel_headers']}"}})
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
    assert "RuntimeError" in output and "Traceback" in output
    check_output(
        output,
        f"{fmt} logs",
        redaction=redaction,
        reachable=("config", "env_ref", "env_otel_headers", "env_cerebras", "file_ref", "env_datadog"),
    )
    if redaction:
        assert output.count(secrets.REDACTED) >= 6
    if fmt == "json":
        assert all(json.loads(line)["logger"] == "bridge.canary" for line in output.splitlines())


def test_config_errors_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redaction: bool) -> None:
    """Errors never quote a secret field; a secret interpolated into a non-secret one is redacted there."""
    monkeypatch.setenv("OTLP_AUTH", CANARIES["env_ref"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"""
sources:
  demo: {{type: simulator, organization_id: "org with spaces"}}
sinks:
  datadog: {{type: datadog, api_key: {CANARIES["config"]}, timeout_seconds: -1}}
  otlp: {{type: otlp, endpoint: "ftp://${{OTLP_AUTH}}"}}
  otlp_list_header: {{type: otlp, headers: {{authorization: [{CANARIES["env_ref"]}]}}}}
  grafana: {{type: grafana_cloud, instance_id: 1, token: {CANARIES["file_ref"]}, zone: "Not A Zone"}}
""")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert len(caught.value.problems) >= 5
    check_output(str(caught.value), "config errors", redaction=redaction, reachable=("env_ref",))


def test_metrics_endpoint_is_redacted(redaction: bool) -> None:
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
    check_output(text, "/metrics", redaction=redaction, reachable=("config",))


def test_an_unexpected_error_in_the_cli_is_redacted(
    planted: tuple[Path, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    redaction: bool,
) -> None:
    """The CLI's last-resort handler: a crash whose message carries a key prints and logs it redacted."""
    config, env = planted
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    async def explode(*args: object) -> int:
        raise RuntimeError(f"boom while using {CANARIES['config']} and {CANARIES['env_ref']}")

    monkeypatch.setattr(cli, "_once", explode)
    for fmt in ("json", "console"):
        assert cli.main(["once", "-c", str(config), "--log-level", "debug", "--log-format", fmt]) == 2
        out, err = capfd.readouterr()
        assert "boom while using" in err and "RuntimeError" in err, "the traceback is logged at debug"
        check_output(
            out + err, f"crash output ({fmt})", redaction=redaction, reachable=("config", "env_ref", "env_otel_typo")
        )


# ---------------------------------------------------------------- credentials that cannot go in a header
def test_escaped_forms_of_a_secret_are_redacted() -> None:
    """httpx quotes a bad header as bytes (`b'Bearer csk-...\\nrotated'`); repr and JSON escape it otherwise.

    Every form is redacted.
    """
    key = "csk-escaped-canary-71f0\nrotated-é"
    secrets.register(key)
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(httpx.LocalProtocolError) as caught:  # what the scrape would have logged
            httpx.get(f"http://127.0.0.1:{server.server_address[1]}/", headers={"Authorization": f"Bearer {key[:-2]}"})
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    secrets.register(key[:-2])
    assert secrets.redact(str(caught.value)) == "Illegal header value b'Bearer ***'"
    for rendered in (repr(key), repr(key.encode()).removeprefix("b"), json.dumps(key)):
        assert rendered != key and secrets.redact(rendered) in ("'***'", '"***"'), rendered
    assert secrets.redact("first line alone: csk-escaped-canary-71f0.") == "first line alone: ***."


def test_a_secret_inside_a_longer_one_never_leaves_a_piece_of_it() -> None:
    secrets.register("zz-inner-secret-5c1")
    secrets.register("aa-zz-inner-secret-5c1-tail")
    assert secrets.redact("key aa-zz-inner-secret-5c1-tail!") == "key ***!"


def test_a_secret_file_that_is_not_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"csk-canary-\xff\xfe")
    with pytest.raises(ValueError) as caught:
        secrets.read_file(str(key_file))
    assert str(caught.value) == f"{key_file}: is not UTF-8 text"


def test_values_shorter_than_four_characters_are_not_secrets() -> None:
    """They would redact ordinary words; four characters already count."""
    secrets.register("Zq7")
    secrets.register("Xq7w")
    assert secrets.redact("Zq7 Xq7w") == "Zq7 ***"


@pytest.mark.parametrize(
    "value, problem",
    [
        ("csk-canary\nnext", "contains a line break"),
        ("csk-canary\rnext", "contains a line break"),
        ("csk\tcanary", "contains a control character"),
        ("csk-canary\x00", "contains a control character"),
        ("csk-canary\x1f", "contains a control character"),
        ("csk-canary\x7f", "contains a control character"),
        ("csk-canary\x80", "contains a non-ASCII character (HTTP headers are ASCII)"),
        ("csk-canary-é", "contains a non-ASCII character (HTTP headers are ASCII)"),
        (" csk-canary~!", None),
    ],
)
def test_what_cannot_go_in_a_header(value: str, problem: str | None) -> None:
    assert secrets.problem(value) == problem


@pytest.mark.parametrize(
    "contents, problem",
    [
        ("csk-canary-first-line\nrotated-second-line", "contains a line break"),
        ("csk-canary-with-a-bell\a", "contains a control character"),
        ("csk-canary-café", "contains a non-ASCII character (HTTP headers are ASCII)"),
    ],
)
def test_a_config_secret_that_cannot_go_in_a_header_is_refused_naming_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contents: str, problem: str
) -> None:
    """Inline, ${VAR} and ${file:} values at load time: the error names the YAML path or the file, never the value."""
    secrets._disable_for_tests()  # so the message itself is shown not to carry the value
    try:
        key_file = tmp_path / "key"
        key_file.write_text(contents + "\n")
        monkeypatch.setenv("CANARY_KEY", contents)
        sinks = {
            "inline": {"type": "datadog", "api_key": contents},
            "from_env": {"type": "otlp", "headers": {"x-key": "${CANARY_KEY}"}},
            "from_file": {"type": "grafana_cloud", "instance_id": 1, "token": f"${{file:{key_file}}}", "zone": "z"},
            "key_file": {"type": "datadog", "api_key_file": str(key_file)},
        }
        with pytest.raises(ConfigError) as caught:
            parse_config({"sources": {"demo": {"type": "simulator"}}, "sinks": sinks})
    finally:
        secrets._enable()
    assert sorted(caught.value.problems) == sorted(
        [
            f"sinks.inline.api_key: {problem}",
            f"sinks.from_env.headers.x-key: {problem}",
            f"sinks.from_file.token: {key_file}: {problem}",
            f"sinks.key_file: {key_file}: {problem}",
        ]
    )
    assert "csk-canary" not in str(caught.value)


@pytest.mark.parametrize(
    "contents, problem",
    [
        (b"csk-canary-first-line\nrotated-second-line", "contains a line break"),
        (b"csk-canary-with-a-nul\0", "contains a control character"),
        ("csk-canary-café".encode(), "contains a non-ASCII character (HTTP headers are ASCII)"),
        (b"csk-canary-\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_a_key_file_that_cannot_go_in_a_header_fails_the_scrape_naming_the_file(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture, contents: bytes, problem: str
) -> None:
    """Re-read at each scrape: refused before any request, logged naming the file; a fixed file scrapes again."""
    key_file = tmp_path / "cerebras-key"
    key_file.write_bytes(contents)
    with CerebrasSimulator(organization_id="org_test", api_key="csk-the-right-key", clock=clock) as sim:
        config = parse_config(
            {
                "sources": {
                    "cb": {
                        "type": "cerebras",
                        "organization_id": "org_test",
                        "api_key_file": str(key_file),
                        "base_url": sim.url.rsplit("/", 1)[0],
                    }
                },
                "sinks": {"out": {"type": "console"}},
            }
        )
        source = CerebrasSource("cb_bad_key", config.sources["cb"], Context(clock=clock))  # type: ignore[arg-type]

        async def scrape_twice() -> tuple[object, int, object]:
            await source.start()
            try:
                await clock.set(T0 + 65)
                refused = await source.collect(clock.now())
                requests_while_refused = len(sim.requests_received)
                key_file.write_text("csk-the-right-key\n")
                await clock.set(T0 + 125)
                return refused, requests_while_refused, await source.collect(clock.now())
            finally:
                await source.close()

        refusals_before = SCRAPES.labels("cb_bad_key", "credentials_unreadable")._value.get()
        secrets._disable_for_tests()  # the log line itself must not carry the value
        try:
            with caplog.at_level(logging.WARNING):
                refused, requests_while_refused, fixed = run(scrape_twice())
        finally:
            secrets._enable()
    assert refused is None and requests_while_refused == 0, "nothing is sent with an unsendable key"
    assert fixed is not None, "the file is re-read at each scrape"
    assert SCRAPES.labels("cb_bad_key", "credentials_unreadable")._value.get() - refusals_before == 1
    assert f"credentials_unreadable: {key_file}: {problem}" in caplog.text
    assert "csk-canary" not in caplog.text


# ---------------------------------------------------------------- the real command, as a subprocess
def bridge(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_validate_output(planted: tuple[Path, dict[str, str]], tmp_path: Path, fmt: str, redaction: bool) -> None:
    """Only the malformed OTEL header entry reaches `validate` output (OpenTelemetry logs it while loading)."""
    config, env = planted
    env = {**env, **redaction_env(redaction)}
    result = bridge(["validate", "-c", str(config), "--log-format", fmt], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and "Header format invalid" in result.stderr
    check_output(result.stdout + result.stderr, "validate", redaction=redaction, reachable=("env_otel_typo",))
    broken = tmp_path / "broken.yaml"
    broken.write_text(config.read_text().replace("type: console", "type: console\n    colour: always"))
    result = bridge(["validate", "-c", str(broken), "--log-format", fmt], env, tmp_path)
    assert result.returncode == 1 and "sinks.console.colour: unknown key" in result.stderr
    check_output(
        result.stdout + result.stderr,
        "validate of an invalid config",
        redaction=redaction,
        reachable=("env_otel_typo",),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt, redaction",
    [("json", True), ("console", True), ("console", False)],
    ids=["json-redacted", "console-redacted", "console-unredacted"],
)
def test_once_dry_run_output(planted: tuple[Path, dict[str, str]], tmp_path: Path, fmt: str, redaction: bool) -> None:
    """One scrape of every source (the echo answers each with its credentials) and every sink's payload printed."""
    config, env = planted
    result = bridge(
        ["once", "-c", str(config), "--dry-run", "--log-level", "debug", "--log-format", fmt],
        {**env, **redaction_env(redaction)},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "=== sink datadog" in result.stdout and "=== sink grafana" in result.stdout
    check_output(
        result.stdout + result.stderr,
        "once --dry-run",
        redaction=redaction,
        reachable=("env_cerebras", "token_file", "password_file", "exporter basic-auth credentials", "env_otel_typo"),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.3)
    return False


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt, redaction",
    [("json", True), ("console", True), ("console", False)],
    ids=["json-redacted", "console-redacted", "console-unredacted"],
)
def test_run_logs_metrics_and_readyz(
    planted: tuple[Path, dict[str, str]], tmp_path: Path, fmt: str, redaction: bool
) -> None:
    """A running bridge whose upstreams and backends all echo the keys back, reloaded once (SIGHUP).

    Unredacted, every canary shows up in the logs; redacted, none anywhere.
    """
    config, env = planted
    port = free_port()
    config.write_text(config.read_text() + f"telemetry: {{listen: '127.0.0.1:{port}', log_level: debug}}\n")
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    pages: list[str] = []
    wanted = (
        'bridge_scrapes_total{outcome="ok",source="demo"}',
        'source="cerebras"',
        'source="exporter"',
        'source="basic"',
        'sink="datadog"',
        'sink="datadog_env"',
        'sink="otlp"',
        'sink="grafana"',
        'sink="remote_write"',
        'sink="grafana_prometheus"',
    )

    def all_components_seen() -> bool:
        try:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            pages.extend([metrics, httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).text])
        except httpx.TransportError:
            return False
        return all(w in metrics for w in wanted)

    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "run", "-c", str(config), "--log-format", fmt, "--grace", "2"],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env, **redaction_env(redaction)},
            cwd=tmp_path,
            stdout=out_file,
            stderr=err_file,
            text=True,
        )
        try:
            started = wait_for(all_components_seen, 45)
            if started:
                process.send_signal(signal.SIGHUP)
                reloaded = wait_for(lambda: "config reloaded" in err_path.read_text(), 15)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    out, err = out_path.read_text(), err_path.read_text()
    missing = [w for w in wanted if not pages or w not in pages[-2]]
    assert started and not missing, f"the bridge never got that far: {missing}\n{err[-3000:]}"
    assert reloaded, f"SIGHUP did not reload:\n{err[-3000:]}"
    assert "sink datadog: failing permanently" in pages[-1], "readiness reasons were exercised"
    assert "bad credentials:" in err, "the echoed credentials reached the logs"
    check_output(out + err, f"run output ({fmt})", redaction=redaction, reachable=EVERY_CANARY)
    assert_no_canary("\n".join(pages), "/metrics and /readyz")  # never printed there: outcomes only, no bodies
    if not redaction:
        assert err.count(CANARIES["env_otel_typo"]) >= 2, "the malformed header is logged again at each SIGHUP"
