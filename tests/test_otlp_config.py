"""`otlp` configuration: explicit keys win over the OTEL_* environment, which wins over defaults."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bridge import registry, secrets
from bridge.config import validate_component
from bridge.context import Context
from bridge.sinks.otlp import OTLPSink
from bridge.sinks.otlp.config import Connection, OTLPSinkConfig


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def connection(**config: Any) -> Connection:
    return OTLPSinkConfig(type="otlp", **config).connection()


def validate(config: dict[str, Any]) -> tuple[Any, list[str]]:
    registry.load_builtins()
    problems: list[str] = []
    return validate_component(registry.sinks, {"type": "otlp", **config}, "sinks.collector", problems), problems


def test_defaults_follow_the_spec_except_gzip() -> None:
    default = connection()
    assert (default.protocol, default.url) == ("http/protobuf", "http://localhost:4318/v1/metrics")
    assert (default.gzip, default.timeout_seconds, default.headers) == (True, 10.0, {})
    grpc = connection(protocol="grpc")
    assert (grpc.url, grpc.plaintext) == ("http://localhost:4317", True)


@pytest.mark.parametrize(
    ("environment", "config", "url"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, {}, "http://collector:4318/v1/metrics"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://gw.example/otlp/"}, {}, "https://gw.example/otlp/v1/metrics"),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/custom"}, {}, "http://c:4318/custom"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:1/x"},
            {},
            "http://m:1/x",
        ),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://env:1/x"}, {"endpoint": "http://cfg:4318"},
         "http://cfg:4318/v1/metrics"),
        ({}, {"metrics_endpoint": "http://cfg:4318/exact"}, "http://cfg:4318/exact"),
    ],
)  # fmt: skip
def test_http_endpoint_precedence_and_path(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], config: dict[str, str], url: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert connection(**config).url == url


def test_protocol_compression_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc")  # the signal-specific variable wins
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")  # milliseconds, per the spec
    resolved = connection()
    assert (resolved.protocol, resolved.gzip, resolved.timeout_seconds) == ("grpc", False, 2.5)
    explicit = connection(protocol="http/protobuf", compression="gzip", timeout_seconds=7)
    assert (explicit.protocol, explicit.gzip, explicit.timeout_seconds) == ("http/protobuf", True, 7)


def test_grpc_transport_security(monkeypatch: pytest.MonkeyPatch) -> None:
    assert connection(protocol="grpc", endpoint="collector:4317").plaintext is False  # TLS unless told otherwise
    assert connection(protocol="grpc", endpoint="collector:4317", insecure=True).plaintext is True
    assert connection(protocol="grpc", endpoint="https://collector:4317", insecure=True).plaintext is False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/etc/ca.pem")
    from_env = connection(protocol="grpc", endpoint="collector:4317")
    assert (from_env.plaintext, from_env.certificate) == (True, "/etc/ca.pem")


def test_headers_merge_per_name_and_are_registered_as_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Basic%20env-credential-1,X-Tenant=env")
    config, problems = validate({"headers": {"x-tenant": "from-config"}})
    assert problems == []
    assert config.connection().headers == {"authorization": "Basic env-credential-1", "x-tenant": "from-config"}
    assert secrets.redact("sent Basic env-credential-1") == "sent ***"  # the whole header value is the secret
    assert "env-credential-1" not in repr(config.connection())


@pytest.mark.parametrize(
    ("environment", "config", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, {}, "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, {}, "not a positive number of milliseconds"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, {}, "OTEL_EXPORTER_OTLP_COMPRESSION='zstd'"),
        ({}, {"endpoint": "collector:4318"}, "http/protobuf needs an http:// or https:// URL"),
        ({}, {"compresion": "gzip"}, "sinks.collector.compresion: unknown key"),
    ],
)
def test_bad_settings_are_config_errors_with_the_sink_path(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], config: dict[str, Any], message: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    _, problems = validate(config)
    assert len(problems) == 1 and problems[0].startswith("sinks.collector") and message in problems[0]


def test_resource_follows_otel_variables_with_config_on_top(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OTLPSinkConfig(type="otlp").resource()["service.name"] == "metrics-bridge"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=ml%20ops,service.name=ignored")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "cerebras-bridge")
    resource = OTLPSinkConfig(type="otlp", resource_attributes={"team": "platform"}).resource()
    assert resource["service.name"] == "cerebras-bridge"  # OTEL_SERVICE_NAME beats OTEL_RESOURCE_ATTRIBUTES
    assert resource["deployment.environment"] == "prod"
    assert resource["team"] == "platform"


def test_no_random_instance_id_unless_the_user_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "service.instance.id" not in OTLPSinkConfig(type="otlp").resource()
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=bridge-0")
    assert OTLPSinkConfig(type="otlp").resource()["service.instance.id"] == "bridge-0"


def test_the_sink_is_registered_and_builds_from_config() -> None:
    config, problems = validate({"endpoint": "http://127.0.0.1:4318", "temporality": "delta"})
    assert problems == []
    sink = registry.sinks.get("otlp")(name="collector", config=config, context=Context())
    assert isinstance(sink, OTLPSink)
    assert sink.connection.url == "http://127.0.0.1:4318/v1/metrics" and sink.temporality.value == "delta"
