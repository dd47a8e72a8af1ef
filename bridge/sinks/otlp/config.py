"""OTLP sink configuration: explicit keys win, then the OpenTelemetry spec's environment variables, then defaults.

The environment is read while the config is validated, so `validate` reports a
bad OTEL_* value with the sink's path, and header values taken from
OTEL_EXPORTER_OTLP_[METRICS_]HEADERS become SecretStr fields that the loader
registers for redaction like any configured secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, get_args
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    Resource,
    ServiceInstanceIdResourceDetector,
)
from opentelemetry.util.re import parse_env_headers
from pydantic import Field, SecretStr, model_validator

from bridge import secrets
from bridge.schema import SinkConfig, check_tls_files

Protocol = Literal["grpc", "http/protobuf"]
PROTOCOLS: tuple[Protocol, ...] = get_args(Protocol)
Compression = Literal["gzip", "none"]
COMPRESSIONS: tuple[Compression, ...] = get_args(Compression)
AttributeValue = str | bool | int | float | Sequence[str | bool | int | float]  # what OTel attributes may hold

DEFAULT_PROTOCOL: Protocol = "http/protobuf"  # the spec's recommended default
DEFAULT_ENDPOINTS: dict[Protocol, str] = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_SERVICE_NAME = "metrics-bridge"
METRICS_PATH = "v1/metrics"


@dataclass(frozen=True)
class Connection:
    """Where and how a transport sends, fully resolved: nothing left to look up."""

    protocol: Protocol
    url: str  # HTTP: the exact URL to POST to; gRPC: the endpoint (scheme://host:port or host:port)
    headers: dict[str, str] = field(repr=False)  # lower-case names (gRPC metadata requires it); values are secrets
    gzip: bool
    timeout_seconds: float
    plaintext: bool  # gRPC only: no TLS (http:// endpoints, or `insecure: true` without a scheme)
    certificate: str | None = None  # CA bundle (PEM) to verify the server
    client_certificate: str | None = None
    client_key: str | None = None


def metrics_url(base: str) -> str:
    """The spec's rule for the generic endpoint: append v1/metrics to the base URL's path."""
    return f"{base.rstrip('/')}/{METRICS_PATH}"


def _env(setting: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, value) of the metrics-specific variable, else the generic one. Empty counts as unset."""
    for name in (f"OTEL_EXPORTER_OTLP_METRICS_{setting}", f"OTEL_EXPORTER_OTLP_{setting}"):
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


_Choice = TypeVar("_Choice", bound=str)


def _env_choice(setting: str, choices: tuple[_Choice, ...], environ: Mapping[str, str]) -> _Choice | None:
    found = _env(setting, environ)
    if found is None:
        return None
    name, value = found
    for choice in choices:
        if value.lower() == choice:
            return choice
    raise ValueError(f"{name}={value!r} is not supported (expected one of: {', '.join(choices)})")


class OTLPCommonConfig(SinkConfig):
    """Keys every OTLP-speaking sink has (`otlp` and presets such as `grafana_cloud`)."""

    temporality: Literal["cumulative", "delta"] = Field(
        "cumulative", description="what counters and histograms become; Prometheus-style backends need cumulative"
    )
    resource_attributes: dict[str, str] = Field(
        default_factory=dict, description="override OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME"
    )
    timeout_seconds: float | None = Field(None, gt=0, description=f"per request; default {DEFAULT_TIMEOUT_SECONDS:g}")
    series_limit: int | None = Field(None, ge=1, description="deprecated, ignored: see `series.max_series`")
    series_idle_seconds: float | None = Field(None, gt=0, description="deprecated, ignored: see `series.idle_seconds`")
    max_points_per_request: int = Field(10_000, ge=1, description="larger batches are split into several requests")

    def connection(self) -> Connection:
        raise NotImplementedError

    def resource(self) -> dict[str, AttributeValue]:
        """The process resource: SDK defaults < OTEL_RESOURCE_ATTRIBUTES < OTEL_SERVICE_NAME < resource_attributes.

        Resource.create applies the spec's rules for the environment; the spec's fallback
        service name ("unknown_service...") becomes "metrics-bridge". The SDK's random
        per-process service.instance.id is left out unless the user set one: Grafana turns
        it into the `instance` label, so a random one would start new series at every
        restart; the encoder uses the source's name instead (as the Collector's Prometheus
        receiver uses the scrape target), which is stable.
        """
        # The SDK's Attributes type also allows bytes, maps and None, which none of its detectors produce.
        attributes: dict[str, AttributeValue] = dict(Resource.create(dict(self.resource_attributes)).attributes)  # type: ignore[arg-type]
        if str(attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            attributes[SERVICE_NAME] = DEFAULT_SERVICE_NAME
        generated = ServiceInstanceIdResourceDetector().detect().attributes.get(SERVICE_INSTANCE_ID)
        if attributes.get(SERVICE_INSTANCE_ID) == generated:
            del attributes[SERVICE_INSTANCE_ID]
        return attributes


class OTLPSinkConfig(OTLPCommonConfig):
    """The `otlp` sink. Every connection key falls back to its OTEL_EXPORTER_OTLP_[METRICS_]* variable."""

    protocol: Protocol | None = Field(None, description=f"grpc | http/protobuf; default {DEFAULT_PROTOCOL}")
    endpoint: str | None = Field(None, description="base URL; HTTP appends /v1/metrics (as ..._OTLP_ENDPOINT)")
    metrics_endpoint: str | None = Field(None, description="full URL, used as is (like ..._METRICS_ENDPOINT)")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="merged over the environment's, per name")
    compression: Compression | None = Field(None, description="default gzip")
    insecure: bool | None = Field(None, description="gRPC without TLS when the endpoint has no scheme")
    certificate: str | None = Field(None, description="CA bundle (PEM file) to verify the server")
    client_certificate: str | None = Field(None, description="client certificate (PEM file) for mTLS")
    client_key: str | None = Field(None, description="client private key (PEM file) for mTLS")

    @model_validator(mode="after")
    def _environment_defaults(self) -> OTLPSinkConfig:
        environ = os.environ
        if self.protocol is None:
            self.protocol = _env_choice("PROTOCOL", PROTOCOLS, environ)
        if self.endpoint is None and self.metrics_endpoint is None:
            self.metrics_endpoint = environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip() or None
            self.endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None
        env_headers = _env("HEADERS", environ)
        if env_headers is not None:
            _register_raw_headers(env_headers[1])
            parsed = parse_env_headers(env_headers[1], liberal=True)
            explicit = {name.lower() for name in self.headers}
            self.headers = {
                **{name: SecretStr(value) for name, value in parsed.items() if name.lower() not in explicit},
                **self.headers,
            }
        if self.compression is None:
            self.compression = _env_choice("COMPRESSION", COMPRESSIONS, environ)
        if self.timeout_seconds is None:
            timeout = _env("TIMEOUT", environ)
            if timeout is not None:
                self.timeout_seconds = _milliseconds(*timeout) / 1000
        if self.insecure is None:
            insecure = _env_choice("INSECURE", ("true", "false"), environ)
            self.insecure = None if insecure is None else insecure == "true"
        for key in ("certificate", "client_certificate", "client_key"):
            found = _env(key.upper(), environ)
            if getattr(self, key) is None and found is not None:
                setattr(self, key, found[1])
        for value in self.headers.values():
            register_credentials(value.get_secret_value())
        connection = self.connection()  # reject an unusable endpoint now, not at the first send
        if connection.protocol == "grpc":  # and an unusable proxy variable (h2: only for a gRPC sink)
            from bridge.sinks.otlp.unary import address, proxy_for

            proxy_for(address(connection.url)[0], environ)
        if not (connection.protocol == "grpc" and connection.plaintext):  # the transport will load these files
            check_tls_files(
                self.certificate,
                self.client_certificate,
                self.client_key,
                keys=("certificate", "client_certificate", "client_key"),
            )
        return self

    def connection(self) -> Connection:
        protocol = self.protocol or DEFAULT_PROTOCOL
        if self.metrics_endpoint:
            url = self.metrics_endpoint
        elif protocol == "http/protobuf":
            url = metrics_url(self.endpoint or DEFAULT_ENDPOINTS[protocol])
        else:
            url = self.endpoint or DEFAULT_ENDPOINTS[protocol]
        scheme = urlsplit(url).scheme if "://" in url else ""
        if protocol == "http/protobuf" and scheme not in ("http", "https"):
            raise ValueError(f"endpoint {url!r}: http/protobuf needs an http:// or https:// URL")
        if scheme not in ("", "http", "https"):
            raise ValueError(f"endpoint {url!r}: unsupported scheme {scheme!r}")
        return Connection(
            protocol=protocol,
            url=url,
            headers={name.lower(): value.get_secret_value() for name, value in self.headers.items()},
            gzip=(self.compression or "gzip") == "gzip",
            timeout_seconds=self.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
            plaintext=scheme == "http" or (scheme == "" and bool(self.insecure)),
            certificate=self.certificate,
            client_certificate=self.client_certificate,
            client_key=self.client_key,
        )


def register_credentials(header_value: str) -> None:
    """Register the credentials of "<scheme> <credentials>" (Bearer, Basic, ...) as a secret of their own.

    The loader registers whole header values; servers and error messages may echo the token alone.
    """
    scheme, _, credentials = header_value.partition(" ")
    if credentials.strip() and scheme.isalpha():
        secrets.register(credentials.strip())


def _register_raw_headers(raw: str) -> None:
    """Register each entry's value of a raw OTEL_EXPORTER_OTLP_*HEADERS, and a malformed (no `=`) entry whole.

    OpenTelemetry's parser logs a malformed entry verbatim (a typo next to a token
    prints the token), so the text must be a secret before the parser sees it.
    """
    for entry in raw.split(","):
        _, has_value, value = entry.partition("=")
        text = (value if has_value else entry).strip()
        secrets.register(text)
        register_credentials(text)


def _milliseconds(name: str, value: str) -> float:
    """OTEL_EXPORTER_OTLP_TIMEOUT is in milliseconds per the spec (the Python SDK reads seconds; we follow the spec)."""
    try:
        milliseconds = float(value)
    except ValueError:
        milliseconds = -1.0
    if not milliseconds > 0:
        raise ValueError(f"{name}={value!r} is not a positive number of milliseconds")
    return milliseconds
