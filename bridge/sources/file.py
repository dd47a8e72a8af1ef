"""The `file` source: read an exposition from disk, once or on a schedule.

For replay, backfill and tests. It is the scrape source with a file fetcher,
so the same family rules and window semantics apply; `preset: cerebras` reads a
saved Cerebras payload into exactly the batch the live source made of it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from bridge import registry
from bridge.context import Context
from bridge.presets import FamilyRule
from bridge.schema import SourceConfig
from bridge.sources.fetch import FileFetcher
from bridge.sources.prometheus import PrometheusSourceConfig, ScrapeSource


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
class FileSource(ScrapeSource):
    Config: ClassVar[type[SourceConfig]] = FileSourceConfig

    def __init__(self, name: str, config: FileSourceConfig, context: Context) -> None:
        self.file_config = config
        fetcher = FileFetcher(config.path, once=config.once)
        prometheus = PrometheusSourceConfig(
            type=self.type_name,
            url=fetcher.url,
            interval_seconds=config.interval_seconds,
            offset_seconds=config.offset_seconds,
            windowed=config.windowed or config.preset == "cerebras",
            families=config.families,
            resource=config.resource,
            preset=config.preset,
            honor_timestamps=config.preset != "cerebras",  # the API has none; a saved scrape is the same
        )
        super().__init__(name, prometheus, context, fetcher=fetcher)
