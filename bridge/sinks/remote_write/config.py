"""Remote write sink configuration: where to send, how to authenticate, which labels every series gets.

Auth and TLS are the scrape's models (bridge/sources/scrape.py), so a user writes
`auth:` and `tls:` the same way on both sides and credential files are re-read
for every request. Secrets are SecretStr fields, registered for redaction by the
config loader; derived forms (a basic-auth header) are registered here.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge import secrets
from bridge.auth import Auth, BasicAuth, BearerAuth, NoAuth, TLSConfig, auth_header
from bridge.schema import SinkConfig, StrictModel

DEFAULT_TIMEOUT_SECONDS = 30.0  # Prometheus' remote_timeout
DEFAULT_MAX_SAMPLES = 2_000  # Prometheus' queue_config.max_samples_per_send
#: Resource attributes that name the scraped target, in order of preference: the first present becomes `instance`.
DEFAULT_INSTANCE_ATTRIBUTES = ("service.instance.id", "cerebras.organization_id")
PUSH_PATH = "/api/prom/push"  # Grafana Cloud's (and Mimir's legacy) push path
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Connection:
    """Where and how the transport sends, resolved: `auth` is resolved per request (credential files rotate)."""

    url: str
    auth: NoAuth | BearerAuth | BasicAuth
    headers: dict[str, str] = field(repr=False)  # custom headers (X-Scope-OrgID, ...); values are secrets
    tls: TLSConfig
    timeout_seconds: float


class HALabels(StrictModel):
    """Mimir/Cortex HA de-duplication: replicas of one `cluster` send alike; the distributor keeps one replica's."""

    cluster: str = Field(min_length=1, description="the same on every replica of this bridge")
    replica: str = Field(min_length=1, description="different on each replica (e.g. the pod name)")
    cluster_label: str = Field("cluster", description="Mimir's -distributor.ha-tracker.cluster")
    replica_label: str = Field("__replica__", description="Mimir's -distributor.ha-tracker.replica")


class RemoteWriteCommonConfig(SinkConfig):
    """Keys of every remote-write sink (`remote_write` and the `grafana_cloud_prometheus` preset).

    Delivery defaults to `drain_order: oldest_first`: Prometheus, Mimir and
    VictoriaMetrics refuse (or mis-store) a series' samples out of time order.
    """

    external_labels: dict[str, str] = Field(
        default_factory=dict, description="added to every series that lacks them (Prometheus' external_labels)"
    )
    ha: HALabels | None = Field(None, description="Mimir/Cortex HA de-duplication labels")
    instance_attributes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INSTANCE_ATTRIBUTES),
        description="resource attributes tried in order for `instance`; the source's name if none is present",
    )
    max_samples_per_request: int = Field(DEFAULT_MAX_SAMPLES, ge=1, description="larger batches are split")
    send_metadata: bool = Field(True, description="type, help and unit once per family per hour")
    timeout_seconds: float = Field(DEFAULT_TIMEOUT_SECONDS, gt=0, description="bounds a whole request")

    @field_validator("external_labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a label name (letters, digits, _; not starting with a digit or __)")
        return labels

    @model_validator(mode="after")
    def _oldest_first(self) -> RemoteWriteCommonConfig:
        if "drain_order" not in self.delivery.model_fields_set:
            self.delivery.drain_order = "oldest_first"
        return self

    def extra_labels(self) -> dict[str, str]:
        """external_labels and the HA pair: what every series carries unless it already has the label."""
        labels = dict(self.external_labels)
        if self.ha is not None:
            labels[self.ha.cluster_label] = self.ha.cluster
            labels[self.ha.replica_label] = self.ha.replica
        return labels

    def connection(self) -> Connection:
        raise NotImplementedError


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url {url!r}: needs an http:// or https:// URL")
    return url


class RemoteWriteSinkConfig(RemoteWriteCommonConfig):
    """`remote_write`: any Prometheus remote write 1.0 receiver (Prometheus, Mimir, Cortex, VictoriaMetrics, Thanos)."""

    url: str = Field(description="the push URL, e.g. http://mimir:8080/api/v1/push")
    auth: Auth = Field(default_factory=NoAuth, description="none | basic | bearer, as a scrape's")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="e.g. X-Scope-OrgID; values are secrets")
    tls: TLSConfig = Field(default_factory=TLSConfig)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        return _http_url(url)

    @model_validator(mode="after")
    def _register_credentials(self) -> RemoteWriteSinkConfig:
        """An inline basic-auth password's header form is as secret as the password (files: at each request)."""
        if isinstance(self.auth, BasicAuth) and self.auth.password is not None:
            auth_header(self.auth)
        return self

    def connection(self) -> Connection:
        return Connection(
            url=self.url,
            auth=self.auth,
            headers={name: value.get_secret_value() for name, value in self.headers.items()},
            tls=self.tls,
            timeout_seconds=self.timeout_seconds,
        )


class GrafanaCloudPrometheusConfig(RemoteWriteCommonConfig):
    """`grafana_cloud_prometheus`: a stack's Prometheus endpoint, basic auth from its instance id and a token.

    The push host carries a cell number (prometheus-prod-24-prod-eu-west-2) that the
    zone alone does not give, so the URL is copied from the stack's Prometheus card.
    """

    url: str = Field(description="the Remote Write Endpoint of the stack's Prometheus card (…/api/prom/push)")
    instance_id: int | str = Field(description="the Prometheus instance id (the card's username)")
    token: SecretStr = Field(description="a Cloud access policy token with metrics:write")

    @field_validator("url")
    @classmethod
    def _push_url(cls, url: str) -> str:
        """The card's URL as is; a bare host gets the push path."""
        url = _http_url(url).rstrip("/")
        return url if url.count("/") > 2 else url + PUSH_PATH

    @model_validator(mode="after")
    def _register_credentials(self) -> GrafanaCloudPrometheusConfig:
        secrets.register(self._credentials())  # derived from the token: as secret as the token itself
        return self

    def _credentials(self) -> str:
        return base64.b64encode(f"{self.instance_id}:{self.token.get_secret_value()}".encode()).decode()

    def connection(self) -> Connection:
        return Connection(
            url=self.url,
            auth=BasicAuth(username=str(self.instance_id), password=self.token),
            headers={},
            tls=TLSConfig(),
            timeout_seconds=self.timeout_seconds,
        )
