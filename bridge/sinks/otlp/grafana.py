"""Grafana Cloud: the OTLP gateway preset (the names Grafana users type: bridge/promnames.py)."""

from __future__ import annotations

import base64
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
