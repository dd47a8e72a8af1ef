"""The `file` source: read an exposition from disk, once or on a schedule.

For replay, backfill and tests. It is the `prometheus` source with a file for
an endpoint, so the same family rules and window semantics apply; `preset:
cerebras` reads a saved Cerebras payload with the Cerebras rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from bridge import registry
from bridge.config import SourceConfig
from bridge.context import Context
from bridge.sources.classify import FamilyRule
from bridge.sources.prometheus import PrometheusSource, PrometheusSourceConfig
from bridge.sources.scrape import ScrapeError, ScrapeResult


class FileSourceConfig(SourceConfig):
    path: str = Field(description="exposition file (Prometheus text 0.0.4; OpenMetrics if it ends in `# EOF`)")
    once: bool = Field(True, description="read once and stop; false: re-read every interval")
    interval_seconds: float = Field(60.0, gt=0)
    offset_seconds: float = Field(0.0, ge=0)
    windowed: bool = Field(False, description="values describe the last complete interval")
    preset: Literal["cerebras"] | None = Field(None, description="apply a source preset's family rules")
    families: list[FamilyRule] = Field(default_factory=list)
    resource: dict[str, str] = Field(default_factory=dict)


@registry.sources.register("file")
class FileSource(PrometheusSource):
    Config = FileSourceConfig

    def __init__(self, name: str, config: FileSourceConfig, context: Context) -> None:
        self.file_config = config
        super().__init__(
            name,
            PrometheusSourceConfig(
                type=self.type_name,
                url=Path(config.path).resolve().as_uri(),
                interval_seconds=config.interval_seconds,
                offset_seconds=config.offset_seconds,
                windowed=config.windowed or config.preset == "cerebras",
                families=config.families,
                resource=config.resource,
                preset=config.preset,
                honor_timestamps=config.preset != "cerebras",  # the API has none; a saved scrape is the same
            ),
            context,
        )
        self._done = False

    async def start(self) -> None:
        """No HTTP client to open."""

    def next_due(self, now: float) -> float | None:
        return None if self._done else super().next_due(now)

    async def fetch(self, now: float) -> ScrapeResult:
        self._done = self.file_config.once
        try:
            data = Path(self.file_config.path).read_bytes()  # noqa: ASYNC240  # a local replay file, read as is
        except OSError as exc:
            raise ScrapeError("file_unreadable", f"{self.file_config.path}: {exc.strerror}") from None
        text = data.decode("utf-8", "replace")
        is_om = text.rstrip().endswith("# EOF")
        return ScrapeResult(text, "application/openmetrics-text" if is_om else "text/plain")
