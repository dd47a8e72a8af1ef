"""`metrics-bridge check`, run as users run it, against real servers on 127.0.0.1: ok, and each way to fail.

Nothing is mocked: the Cerebras API is an exposition server on a Cerebras-like path, the
backends are the suite's receivers (OTLP gRPC and HTTP, the Datadog intake, remote write),
TLS uses a certificate made at test time by openssl (test_otlp_wire's fixture).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CEREBRAS_FIXTURES, run
from tests.prometheus_server import free_port
from tests.receivers.datadog_intake import DatadogIntake
from tests.receivers.otlp import GrpcReceiver, HttpReceiver
from tests.receivers.remote_write import Answer, RemoteWriteReceiver
from tests.servers import ExpositionServer, Response
from tests.test_cli import cli
from tests.test_otlp_wire import self_signed  # noqa: F401  # a fixture: the certificate made at test time

ORG, CEREBRAS_KEY, DD_KEY = "org_check", "cb-secret-check-1", "dd-secret-check-2"
FIXTURE = (CEREBRAS_FIXTURES / "two-endpoints-mixed-labels.prom").read_text()


@pytest.fixture
def cerebras() -> Iterator[ExpositionServer]:
    with ExpositionServer() as server:
        yield server


def source(server: ExpositionServer, *responses: Response, timeout: float = 5) -> str:
    url = server.route(f"/orgs/{ORG}", *responses)
    return (
        f"  cb:\n    type: cerebras\n    organization_id: {ORG}\n    api_key: {CEREBRAS_KEY}\n"
        f"    base_url: {url.rsplit('/', 1)[0]}\n    timeout_seconds: {timeout}\n"
    )


def check(tmp_path: Path, sources: str, sinks: str, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bridge.yaml"
    config.write_text(f"sources:\n{sources}sinks:\n{sinks}")
    result = cli("check", "-c", str(config), *extra)
    assert "Traceback" not in result.stderr, result.stderr
    for secret in (CEREBRAS_KEY, DD_KEY):
        assert secret not in result.stdout + result.stderr
    return result


def lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {line.split(":", 1)[0]: line.split(":", 1)[1] for line in result.stdout.splitlines()}


def test_everything_reachable_and_authorised(cerebras: ExpositionServer, tmp_path: Path) -> None:
    async def go() -> subprocess.CompletedProcess[str]:
        async with GrpcReceiver() as grpc:
            with HttpReceiver() as http, DatadogIntake(api_keys={DD_KEY}) as intake, RemoteWriteReceiver() as rw:
                sinks = (
                    f"  grpc:\n    type: otlp\n    protocol: grpc\n    endpoint: {grpc.endpoint}\n"
                    f"  http:\n    type: otlp\n    protocol: http/protobuf\n    endpoint: {http.endpoint}\n"
                    f"  dd:\n    type: datadog\n    url: {intake.url}\n    api_key: {DD_KEY}\n"
                    f"  rw:\n    type: remote_write\n    url: {rw.url}\n"
                    f"  file:\n    type: jsonl\n    path: {tmp_path / 'out.jsonl'}\n"
                )
                # in a thread: the gRPC receiver answers on this loop while the command runs
                result = await asyncio.to_thread(check, tmp_path, source(cerebras, Response(body=FIXTURE)), sinks)
                assert len(grpc.received) == 1 and len(http.received) == 1 and len(rw.received) == 1
                return result

    result = run(go())
    assert result.returncode == 0, result.stdout + result.stderr
    found = lines(result)
    assert set(found) == {"source cb", "sink grpc", "sink http", "sink dd", "sink rw", "sink file"}
    assert all(line.startswith(" ok (") for line in found.values()), found
    assert "56 series in 11 families; window ended" in found["source cb"]
    assert cerebras.requests_to(f"/orgs/{ORG}") == 1, "one request, from the source's budget"
    assert not (tmp_path / "out.jsonl").exists(), "checking writability creates nothing"


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (401, "the API key was rejected (401) for org_check: check CEREBRAS_API_KEY"),
        (403, "the feature may not be enabled for this organization"),
        (404, "the feature may not be enabled for this organization"),
    ],
)
def test_a_refused_cerebras_request_is_explained(
    cerebras: ExpositionServer, tmp_path: Path, status: int, advice: str
) -> None:
    body = json.dumps({"message": f"refused with key {CEREBRAS_KEY}"})
    result = check(tmp_path, source(cerebras, Response(status, body)), "  out:\n    type: console\n")
    assert result.returncode == 1
    assert result.stdout.startswith("source cb: failing (") and f"http_{status}" in result.stdout
    assert advice in result.stdout, result.stdout
    assert "sink out: ok" in result.stdout


def test_refused_and_timeout(cerebras: ExpositionServer, tmp_path: Path) -> None:
    port, datadog_port = free_port(), free_port()  # nothing listens there
    sources = source(cerebras, Response(body=FIXTURE, delay=5), timeout=1)
    sinks = (
        f"  collector:\n    type: otlp\n    protocol: grpc\n    endpoint: http://127.0.0.1:{port}\n"
        f"  dd:\n    type: datadog\n    url: http://127.0.0.1:{datadog_port}\n    api_key: {DD_KEY}\n"
    )
    result = check(tmp_path, sources, sinks, "--json")
    assert result.returncode == 1
    found = {o["component"]: o for o in map(json.loads, result.stdout.splitlines())}
    assert not found["source cb"]["ok"] and found["source cb"]["detail"].startswith("timeout")
    assert "no answer in time" in found["source cb"]["advice"]
    assert not found["sink collector"]["ok"]
    assert found["sink collector"]["advice"] == f"connection refused: is the collector listening on 127.0.0.1:{port}?"
    assert found["sink dd"]["advice"] == f"connection refused: is the API listening on 127.0.0.1:{datadog_port}?"


def test_wrong_keys_tls_and_an_unwritable_file(
    cerebras: ExpositionServer,
    tmp_path: Path,
    self_signed: tuple[str, str],  # noqa: F811  # the fixture
) -> None:
    with (
        DatadogIntake(api_keys={"another-key"}) as intake,
        RemoteWriteReceiver(tls=self_signed) as tls_rw,
        RemoteWriteReceiver() as refusing,
    ):
        refusing.script(Answer(401, "bad credentials"))
        sinks = (
            f"  dd:\n    type: datadog\n    url: {intake.url}\n    api_key: {DD_KEY}\n"
            f"  tls:\n    type: remote_write\n    url: {tls_rw.url}\n"
            f"  rw:\n    type: remote_write\n    url: {refusing.url}\n"
            f"    auth: {{type: bearer, token: {DD_KEY}}}\n"
            f"  file:\n    type: jsonl\n    path: {tmp_path / 'missing' / 'out.jsonl'}\n"
        )
        result = check(tmp_path, source(cerebras, Response(body=FIXTURE)), sinks)
    assert result.returncode == 1
    found = lines(result)
    assert found["source cb"].startswith(" ok")
    assert "the credentials were rejected: check DD_API_KEY or api_key" in found["sink dd"]
    assert "TLS: certificate signed by an unknown authority: set tls.ca_file" in found["sink tls"]
    assert "http_401" in found["sink rw"] and "the credentials were rejected: check the sink's auth" in found["sink rw"]
    assert "cannot create" in found["sink file"] and found["sink file"].startswith(" failing")
