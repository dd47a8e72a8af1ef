"""Configuration of the `datadog` sink: where to send, with which key, and how to shape names and tags.

The API key resolves in order: `api_key`, `api_key_file`, then `$DD_API_KEY`;
the site: `url`, `site`, then `$DD_SITE`, then datadoghq.com. The resolved key
is stored back as a SecretStr so config loading registers it for redaction.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge import secrets
from bridge.schema import SinkConfig

API_KEY_ENV = "DD_API_KEY"
SITE_ENV = "DD_SITE"
DEFAULT_SITE = "datadoghq.com"
SITES = (
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
)
AUTO = "auto"

Compression = Literal["gzip", "deflate", "zstd", "none"]


class DatadogSinkConfig(SinkConfig):
    type: Literal["datadog"] = "datadog"
    site: str | None = Field(None, description=f"one of {', '.join(SITES)}; default ${SITE_ENV} or {DEFAULT_SITE}")
    url: str | None = Field(None, description="explicit intake base URL (proxy, test intake); overrides site")
    api_key: SecretStr | None = Field(None, description=f"default: api_key_file, then ${API_KEY_ENV}")
    api_key_file: str | None = Field(None, description="file holding the API key")
    validate_api_key: bool = Field(False, description="check the key with /api/v1/validate at start-up")
    tags: list[str] = Field(default_factory=list, description="added to every series and service check")
    host: str | None = Field(None, description="host to attach to series and service checks; none if unset")
    namespace: str = Field(
        AUTO, description="metric name prefix; `auto`: the source preset's (`cerebras`), none otherwise; '' for none"
    )
    statistic_mode: Literal["tag", "suffix"] = Field(
        "tag", description="statistic-labelled gauges: one metric tagged statistic:p95, or one metric per statistic"
    )
    service_checks: bool = Field(
        True, description="send state gauges a preset marks (inference_endpoint_status) as service checks too"
    )
    flush_first_value: bool = Field(
        False, description="send a cumulative counter's first value as a count instead of only remembering it"
    )
    compression: Compression = Field(
        "zstd", description="zstd (level 1, as the Datadog Agent sends) is 14x faster than gzip here and smaller"
    )
    compression_level: int | None = Field(None, ge=1, le=19, description="codec default if unset (zstd 1, gzip 6)")
    timeout_seconds: float = Field(15.0, gt=0)
    max_series: int | None = Field(None, ge=1, description="deprecated, ignored: see `series.max_series`")

    @field_validator("site")
    @classmethod
    def _known_site(cls, site: str | None) -> str | None:
        if site is not None and site not in SITES:
            raise ValueError(f"unknown Datadog site {site!r} (known: {', '.join(SITES)}; use `url` for others)")
        return site

    @field_validator("compression")
    @classmethod
    def _codec_installed(cls, compression: str) -> str:
        if compression == "zstd":
            try:
                import zstandard  # noqa: F401
            except ImportError:
                raise ValueError("zstd needs the `zstandard` package (pip install 'metrics-bridge[zstd]')") from None
        return compression

    @model_validator(mode="after")
    def _resolve(self) -> DatadogSinkConfig:
        if self.compression in ("gzip", "deflate") and (self.compression_level or 0) > 9:
            raise ValueError(f"compression_level for {self.compression} is 1..9")
        if self.site is None and self.url is None:
            self.site = self._known_site(os.environ.get(SITE_ENV) or DEFAULT_SITE)
        if self.api_key is None:
            self.api_key = SecretStr(self._key_from_file_or_env())
        return self

    def _key_from_file_or_env(self) -> str:
        if self.api_key_file is not None:
            try:
                key = secrets.read_file(self.api_key_file)  # ValueError naming the file if unsendable
            except OSError as exc:
                raise ValueError(f"cannot read api_key_file {self.api_key_file}: {exc.strerror}") from None
            if not key:
                raise ValueError(f"api_key_file {self.api_key_file} is empty")
            return key
        key = os.environ.get(API_KEY_ENV, "").strip()
        if not key:
            raise ValueError(f"no API key: set api_key, api_key_file or ${API_KEY_ENV}")
        return key

    @property
    def resolved_api_key(self) -> str:
        if self.api_key is None:  # unreachable after validation; keeps the type honest
            raise ValueError("API key not resolved")
        return self.api_key.get_secret_value()

    @property
    def base_url(self) -> str:
        return (self.url or f"https://api.{self.site}").rstrip("/")
