"""The `cerebras` source: a preset of `prometheus` that knows the Cerebras Metrics API.

Config needs only `organization_id` (the URL is derived) and the API key
(default: the CEREBRAS_API_KEY environment variable). The preset knows:
- every value describes the last complete UTC minute (windowed, 60 s);
- the `*_total` families are declared gauges but are per-minute counts:
  they become delta counters over their window;
- the latency families carry a statistic label spelled `statistic` or
  `percentile`: it becomes one `statistic` attribute, the family stays a gauge;
- at most 6 requests per minute per organization, retries included, shared by
  every source that reads the same organization.
"""

from __future__ import annotations

import logging
import os

from pydantic import Field, SecretStr, model_validator

from bridge import registry
from bridge.config import SourceConfig
from bridge.context import Context
from bridge.parser import Family
from bridge.sources.classify import FamilyRule
from bridge.sources.prometheus import PrometheusSource, PrometheusSourceConfig
from bridge.sources.scrape import BearerAuth, ScrapeError, TLSConfig

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://cloud.cerebras.ai/api/v1/metrics/organizations"
API_KEY_ENV = "CEREBRAS_API_KEY"
STATISTIC_LABELS = ["statistic", "percentile"]

#: family -> (kind, temporality, unit); the README's Cerebras table is generated from the same facts.
FAMILIES: dict[str, tuple[str, str | None, str]] = {
    "requests_count_total": ("counter", "delta", "{request}"),
    "requests_success_total": ("counter", "delta", "{request}"),
    "requests_failure_total": ("counter", "delta", "{request}"),
    "input_tokens_total": ("counter", "delta", "{token}"),
    "output_tokens_total": ("counter", "delta", "{token}"),
    "queue_time_seconds": ("gauge", None, "s"),
    "e2e_latency_seconds": ("gauge", None, "s"),
    "ttft_seconds": ("gauge", None, "s"),
    "tpot_seconds": ("gauge", None, "s"),
    "inference_endpoint_status": ("gauge", None, ""),  # a state (1 up, 0 down, -1 unknown), not a ratio
    "cache_rate": ("gauge", None, "1"),
}


def preset_rules(statistic_labels: list[str]) -> list[FamilyRule]:
    rules = []
    for name, (kind, temporality, unit) in FAMILIES.items():
        labels = statistic_labels if unit == "s" else []
        rules.append(FamilyRule(match=name, kind=kind, temporality=temporality, unit=unit, statistic_labels=labels))
    # Families the docs do not name yet (e.g. TPOT spelled differently): gauges, statistics still normalised.
    rules.append(FamilyRule(match=".*_seconds", kind="gauge", unit="s", statistic_labels=statistic_labels))
    rules.append(FamilyRule(match=".*", kind="gauge", statistic_labels=statistic_labels))
    return rules


class CerebrasSourceConfig(SourceConfig):
    organization_id: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", description="e.g. org_abc123")
    api_key: SecretStr | None = Field(None, description=f"defaults to ${API_KEY_ENV}")
    api_key_file: str | None = Field(None, description="file holding the key, re-read at every scrape")
    base_url: str = Field(DEFAULT_BASE_URL, description="override for a proxy or the simulator")
    tls: TLSConfig = Field(default_factory=TLSConfig)
    timeout_seconds: float = Field(15.0, gt=0)
    offset_seconds: float = Field(5.0, ge=0, le=55, description="scrape this long after each minute boundary")
    lag_seconds: float = Field(0.0, ge=0, description="if the API publishes a minute late, shift windows back")
    rate_limit_per_minute: int = Field(6, ge=1, le=6, description="the API allows 6 per organization")
    statistic_labels: list[str] = Field(default_factory=lambda: list(STATISTIC_LABELS))
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _key_from_env(self) -> CerebrasSourceConfig:
        if self.api_key is None and self.api_key_file is None:
            value = os.environ.get(API_KEY_ENV)
            if not value:
                raise ValueError(f"api_key is not set and ${API_KEY_ENV} is empty")
            self.api_key = SecretStr(value)
        return self

    def as_prometheus(self, type_name: str) -> PrometheusSourceConfig:
        return PrometheusSourceConfig(
            type=type_name,
            url=f"{self.base_url.rstrip('/')}/{self.organization_id}",
            auth=BearerAuth(token=self.api_key, token_file=None if self.api_key else self.api_key_file),
            tls=self.tls,
            timeout_seconds=self.timeout_seconds,
            max_body_bytes=self.max_body_bytes,
            interval_seconds=60.0,
            offset_seconds=self.offset_seconds,
            windowed=True,
            lag_seconds=self.lag_seconds,
            rate_limit_per_minute=self.rate_limit_per_minute,
            rate_limit_key=f"cerebras:{self.organization_id}",
            families=preset_rules(self.statistic_labels),
            honor_timestamps=False,
        )


@registry.sources.register("cerebras")
class CerebrasSource(PrometheusSource):
    Config = CerebrasSourceConfig  # type: ignore[assignment]

    def __init__(self, name: str, config: CerebrasSourceConfig, context: Context) -> None:
        self.cerebras = config
        self._warned_families: set[str] = set()
        super().__init__(name, config.as_prometheus(self.type_name), context)

    def extra_resource(self) -> dict[str, str]:
        return {"cerebras.organization_id": self.cerebras.organization_id}

    def dropped_labels(self) -> frozenset[str]:
        return frozenset({"organization_id"})  # carried once, on the resource

    def on_family(self, family: Family) -> None:
        if family.name not in FAMILIES and family.name not in self._warned_families:
            self._warned_families.add(family.name)
            log.warning(
                "source %s: unknown Cerebras family %r (declared %s); forwarding it as a gauge",
                self.name, family.name, family.type,
            )

    def explain(self, error: ScrapeError) -> str:
        org = self.cerebras.organization_id
        if error.status == 401:
            return f"the API key was rejected (401) for {org}: check {API_KEY_ENV} or api_key; retrying each minute"
        if error.status in (403, 404):
            return (
                f"metrics are not available for {org} ({error.status}): the feature may not be enabled for this "
                f"organization (dedicated endpoints, private preview) or the organization id is wrong; "
                f"retrying each minute"
            )
        if error.status == 429:
            return f"rate limited by the API for {org} (429); backing off to the next minute"
        return f"scrape of {org} failed: {error}"
