"""The `simulator` source: an embedded Cerebras-like endpoint, scraped like the real one.

It starts bridge.simulator's HTTP server on 127.0.0.1 (random port, random
bearer key) and reads it as the `cerebras` source reads the API (the same
config, preset and parts, with a fetcher that owns the server), so the demo and
the tests exercise the real HTTP, auth, window and rate-limit paths.
"""

from __future__ import annotations

import secrets as pysecrets
from typing import ClassVar

from pydantic import Field, SecretStr

from bridge import registry
from bridge.context import Context
from bridge.schema import SourceConfig
from bridge.simulator import API_PREFIX, CerebrasSimulator
from bridge.sources.cerebras import CerebrasSourceConfig
from bridge.sources.fetch import HttpFetcher
from bridge.sources.prometheus import ScrapeSource, http_fetcher
from bridge.sources.scrape import ScrapeResult


class SimulatorSourceConfig(SourceConfig):
    organization_id: str = Field("org_demo", pattern=r"^[A-Za-z0-9_\-]+$")
    seed: int = Field(0, description="same seed, same numbers for each minute")
    statistic_label: str = Field("statistic", description="`statistic` or `percentile`, as the API may print either")
    offset_seconds: float = Field(5.0, ge=0, le=55)


class _SimulatorFetcher:
    """Scrapes the embedded server over real HTTP; the server starts and stops with the fetcher."""

    def __init__(self, simulator: CerebrasSimulator, http: HttpFetcher) -> None:
        self.simulator = simulator
        self.http = http
        self.more = True

    @property
    def url(self) -> str:
        return self.http.url

    async def start(self) -> None:
        self.simulator.start()
        self.http.url = self.simulator.url  # its port is known now
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()
        self.simulator.stop()

    async def fetch(self, now: float, max_delay: float) -> ScrapeResult:
        return await self.http.fetch(now, max_delay)


@registry.sources.register("simulator")
class SimulatorSource(ScrapeSource):
    Config: ClassVar[type[SourceConfig]] = SimulatorSourceConfig

    def __init__(self, name: str, config: SimulatorSourceConfig, context: Context) -> None:
        key = pysecrets.token_urlsafe(16)
        self.simulator = CerebrasSimulator(
            organization_id=config.organization_id,
            api_key=key,
            clock=context.clock,
            seed=config.seed,
            statistic_label=config.statistic_label,
        )
        cerebras = CerebrasSourceConfig(
            type="cerebras",
            organization_id=config.organization_id,
            api_key=SecretStr(key),
            base_url="http://127.0.0.1/" + API_PREFIX.strip("/"),  # the port is known after start()
            offset_seconds=config.offset_seconds,
        ).as_prometheus(self.type_name)
        fetcher = _SimulatorFetcher(self.simulator, http_fetcher(cerebras))
        super().__init__(name, cerebras, context, fetcher=fetcher, target=config.organization_id)
