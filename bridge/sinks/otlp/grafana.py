"""Grafana Cloud: the OTLP gateway preset, and the metric names Grafana users will type in PromQL.

Grafana Cloud ingests OTLP into Mimir through Prometheus' OTLP translator
(UnderscoreEscapingWithSuffixes), so the name a user queries is not the name we
send: unit suffixes are added, `_total` is moved to the end of monotonic sums,
`_ratio` is added to unit-"1" gauges, `{...}` annotation units add nothing.
`prometheus_name` reproduces that rule (prometheus/otlptranslator, after the
OpenTelemetry spec's Prometheus compatibility document) so the README's table
is pinned by a test and `once --dry-run` can show the names.
"""

from __future__ import annotations

import base64
import re
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from bridge import secrets
from bridge.sinks.otlp.config import DEFAULT_TIMEOUT_SECONDS, Connection, OTLPCommonConfig, metrics_url

GATEWAY_URL = "https://otlp-gateway-{zone}.grafana.net/otlp"


class GrafanaCloudConfig(OTLPCommonConfig):
    """`grafana_cloud`: instance id + token -> basic auth; HTTP/protobuf, gzip, cumulative (what Mimir stores).

    Delivery defaults to `drain_order: oldest_first`: after an outage, Mimir would
    reject the backlog's older samples of a series once a newer one has landed.
    """

    instance_id: int | str = Field(description="the OTLP instance id on the stack's OpenTelemetry card (basic auth)")
    token: SecretStr = Field(description="a Cloud access policy token with metrics:write")
    zone: str | None = Field(None, pattern=r"^[a-z0-9-]+$", description="e.g. prod-eu-west-2; or give endpoint")
    endpoint: str | None = Field(None, description="the gateway URL from the OpenTelemetry card, ending in /otlp")
    temporality: Literal["cumulative"] = "cumulative"  # Mimir stores cumulative sums

    @model_validator(mode="after")
    def _one_gateway(self) -> GrafanaCloudConfig:
        if (self.zone is None) == (self.endpoint is None):
            raise ValueError("give exactly one of zone (e.g. prod-eu-west-2) or endpoint (the gateway URL)")
        if self.endpoint is not None and not self.endpoint.startswith(("https://", "http://")):
            raise ValueError(f"endpoint {self.endpoint!r}: needs an http:// or https:// URL (the gateway is https)")
        secrets.register(self._credentials())  # derived from the token: as secret as the token itself
        if "drain_order" not in self.delivery.model_fields_set:
            self.delivery.drain_order = "oldest_first"  # Mimir refuses a series' samples out of order
        return self

    def _credentials(self) -> str:
        return base64.b64encode(f"{self.instance_id}:{self.token.get_secret_value()}".encode()).decode()

    def connection(self) -> Connection:
        credentials = self._credentials()
        return Connection(
            protocol="http/protobuf",
            url=metrics_url(self.endpoint or GATEWAY_URL.format(zone=self.zone)),
            headers={"authorization": f"Basic {credentials}"},
            gzip=True,
            timeout_seconds=self.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
            plaintext=False,
        )


# ---------------------------------------------------------------- OTLP -> Prometheus names
OTLPMetricType = Literal["gauge", "monotonic_sum", "sum", "histogram", "summary"]

_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
    "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "Cel": "celsius",
    "Hz": "hertz", "1": "", "%": "percent",
}  # fmt: skip
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_INVALID = re.compile(r"[^a-zA-Z0-9:]")


def _unit_suffixes(unit: str) -> tuple[str, str]:
    """(main, per) suffixes of a UCUM unit: `s` -> seconds, `By/s` -> bytes + per_second; `{token}` -> nothing."""
    main_unit, _, per_unit = unit.partition("/")
    main_unit, per_unit = main_unit.strip(), per_unit.strip()
    main = _UNITS.get(main_unit, main_unit) if main_unit and not set(main_unit) & set("{}") else ""
    per = _PER_UNITS.get(per_unit, per_unit) if per_unit and not set(per_unit) & set("{}") else ""
    return _clean_unit(main), _clean_unit(f"per_{per}" if per else "")


def _clean_unit(unit: str) -> str:
    return re.sub(r"__+", "_", _INVALID.sub("_", unit)).removeprefix("_")


def prometheus_name(name: str, unit: str, metric_type: OTLPMetricType) -> str:
    """The metric name Prometheus' OTLP translator (with suffixes, underscore escaping) gives an OTLP metric."""
    tokens = [token for token in _INVALID.split(name) if token]
    main, per = _unit_suffixes(unit)
    if main in tokens:
        main = ""
    per = "" if per == "per_" else per.removesuffix("_")
    if per in tokens:
        per = ""
    if per:
        main = main.removesuffix("_")
    tokens += [suffix for suffix in (main, per) if suffix]
    if metric_type == "monotonic_sum":
        tokens = [token for token in tokens if token != "total"] + ["total"]
    if unit == "1" and metric_type == "gauge":
        tokens = [token for token in tokens if token != "ratio"] + ["ratio"]
    translated = "_".join(tokens)
    return f"_{translated}" if translated[:1].isdigit() else translated
