"""The `cerebras` source: the `prometheus` source with the Cerebras preset and its API's shape.

Config needs only `organization_id` (the URL is derived) and the API key
(default: the CEREBRAS_API_KEY environment variable). What the families mean
is the preset's (bridge/presets/cerebras.py); what this module adds is the
API's shape: every value describes the last complete UTC minute (windowed,
60 s), and at most 6 requests per minute per organization, retries included,
shared by every source that reads the same organization.
"""

from __future__ import annotations

import logging
import os
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from bridge import registry
from bridge.auth import BearerAuth, TLSConfig
from bridge.context import Context
from bridge.presets.cerebras import STATISTIC_LABELS, rules
from bridge.schema import SourceConfig
from bridge.sources.prometheus import PrometheusSourceConfig, ScrapeSource

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://cloud.cerebras.ai/api/v1/metrics/organizations"
API_KEY_ENV = "CEREBRAS_API_KEY"


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
            families=[] if tuple(self.statistic_labels) == STATISTIC_LABELS else rules(self.statistic_labels),
            resource={"cerebras.organization_id": self.organization_id},
            honor_timestamps=False,
            preset="cerebras",
        )


@registry.sources.register("cerebras")
class CerebrasSource(ScrapeSource):
    Config: ClassVar[type[SourceConfig]] = CerebrasSourceConfig

    def __init__(self, name: str, config: CerebrasSourceConfig, context: Context) -> None:
        self.cerebras = config
        super().__init__(name, config.as_prometheus(self.type_name), context, target=config.organization_id)
