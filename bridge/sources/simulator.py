"""The `simulator` source: an embedded Cerebras-like endpoint, scraped like the real one.

It starts bridge.simulator's HTTP server on 127.0.0.1 (random port, random
bearer key) and reads it through the `cerebras` preset, so the demo and the
tests exercise the real HTTP, auth, window and rate-limit paths.
"""

from __future__ import annotations

import secrets as pysecrets

from pydantic import Field, SecretStr

from bridge import registry
from bridge.config import SourceConfig
from bridge.context import Context
from bridge.simulator import API_PREFIX, CerebrasSimulator
from bridge.sources.cerebras import CerebrasSource, CerebrasSourceConfig


class SimulatorSourceConfig(SourceConfig):
    organization_id: str = Field("org_demo", pattern=r"^[A-Za-z0-9_\-]+$")
    seed: int = Field(0, description="same seed, same numbers for each minute")
    statistic_label: str = Field("statistic", description="`statistic` or `percentile`, as the API may print either")
    offset_seconds: float = Field(5.0, ge=0, le=55)


@registry.sources.register("simulator")
class SimulatorSource(CerebrasSource):
    Config = SimulatorSourceConfig

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
        )
        super().__init__(name, cerebras, context)

    @property
    def url(self) -> str:
        return self.simulator.url

    async def start(self) -> None:
        self.simulator.start()
        await super().start()

    async def close(self) -> None:
        await super().close()
        self.simulator.stop()
