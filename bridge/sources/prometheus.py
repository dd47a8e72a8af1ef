"""The `prometheus` source: scrape any Prometheus-format endpoint on an aligned schedule.

Two modes. Ordinary exporters (`windowed: false`) expose running values:
counters are cumulative, each scrape is stamped with its own time. Windowed
endpoints such as Cerebras (`windowed: true`) describe the last complete
interval: every point is stamped with that window, a window is forwarded
once, and a window that could not be fetched is counted as a gap.

Every scrape source (`prometheus`, `cerebras`, `file`, `simulator`) is one
ScrapeSource assembled from parts: a fetcher (bridge/sources/fetch.py), a
window schedule (schedule.py), window accounting (windows.py) and a classifier
built from the family rules and the preset (bridge/presets). The types differ
only in how their config builds those parts.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

from pydantic import Field

from bridge import presets, registry, telemetry
from bridge.auth import Auth, NoAuth, TLSConfig
from bridge.context import Context, RequestBudget
from bridge.http import excerpt
from bridge.model import NS_PER_S, Batch, attrs_from
from bridge.parser import Family, is_openmetrics
from bridge.presets import FamilyRule
from bridge.schema import SourceConfig
from bridge.sources.base import Source
from bridge.sources.classify import Classifier, Window
from bridge.sources.fetch import Fetcher, HttpFetcher
from bridge.sources.schedule import WindowSchedule
from bridge.sources.scrape import ScrapeError, ScrapeResult
from bridge.sources.windows import WindowAccounting

log = logging.getLogger(__name__)


class PrometheusSourceConfig(SourceConfig):
    url: str = Field(description="the endpoint to scrape")
    auth: Auth = Field(default_factory=NoAuth)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    timeout_seconds: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(50 * 1024 * 1024, gt=0, description="abort scrapes whose (decompressed) body is larger")
    interval_seconds: float = Field(60.0, gt=0)
    offset_seconds: float = Field(5.0, ge=0, description="scrape this long after each interval boundary")
    windowed: bool = Field(False, description="values describe the last complete interval (Cerebras-style)")
    lag_seconds: float = Field(0.0, ge=0, description="windowed: the upstream publishes a window this late")
    retry_delay_seconds: float = Field(10.0, gt=0, description="delay before the one retry after a 5xx or timeout")
    rate_limit_per_minute: int | None = Field(
        None, ge=1, description="request budget shared by sources with the same rate_limit_key"
    )
    rate_limit_key: str | None = Field(None, description="defaults to the url")
    families: list[FamilyRule] = Field(default_factory=list, description="per-family kind/temporality/unit overrides")
    resource: dict[str, str] = Field(default_factory=dict, description="extra resource attributes")
    honor_timestamps: bool = True
    preset: Literal["cerebras"] | None = Field(
        None,
        description="what an upstream is known to mean: family rules (after `families`), resource labels, "
        "namespace, error explanations (bridge/presets)",
    )


def http_fetcher(config: PrometheusSourceConfig) -> HttpFetcher:
    return HttpFetcher(
        config.url,
        auth=config.auth,
        tls=config.tls,
        timeout=config.timeout_seconds,
        max_body_bytes=config.max_body_bytes,
    )


class ScrapeSource(Source):
    """A source assembled from parts; never raises from collect (see `collect`)."""

    config: PrometheusSourceConfig

    def __init__(
        self,
        name: str,
        config: PrometheusSourceConfig,
        context: Context,
        *,
        fetcher: Fetcher | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(name, config, context)
        self.fetcher: Fetcher = fetcher or http_fetcher(config)
        self._target = target
        self.preset = presets.get(config.preset) if config.preset else None
        rules = list(config.families)
        if self.preset is not None:
            rules += self.preset.rules(list(self.preset.statistic_labels))
        self.classifier = Classifier(
            rules=rules,
            resource_labels=frozenset(self.preset.resource_labels if self.preset else ()),
            on_family=self._warn_unknown if self.preset else None,
            table=context.series_table(name),
        )
        self._warned_families: set[str] = set()
        self.budget_key = config.rate_limit_key or config.url
        budget = context.budget(self.budget_key, config.rate_limit_per_minute) if config.rate_limit_per_minute else None
        self.schedule = WindowSchedule(
            config.interval_seconds,
            config.offset_seconds,
            config.windowed,
            config.lag_seconds,
            config.retry_delay_seconds,
            budget,
        )
        self.windows = (
            WindowAccounting(name, self.budget_key, config.interval_seconds, context.windows)
            if config.windowed
            else None
        )
        self.resource = {"bridge.source": name, **config.resource}
        self._state = "starting"  # last logged state, so each change is logged once

    @property
    def interval_seconds(self) -> float:
        return self.config.interval_seconds

    @property
    def budget(self) -> RequestBudget | None:
        return self.schedule.budget

    @property
    def url(self) -> str:
        return self.fetcher.url

    @property
    def target(self) -> str:
        """What an error explanation names: the URL, or the organization for Cerebras."""
        return self._target or self.url

    def explain(self, error: ScrapeError) -> str:
        template = self.preset.explanations.get(error.status or 0) if self.preset else None
        return template.format(target=self.target) if template else f"scrape of {self.target} failed: {error}"

    # -- lifecycle and schedule ------------------------------------------------------------
    async def start(self) -> None:
        await self.fetcher.start()

    async def close(self) -> None:
        await self.fetcher.close()

    def next_due(self, now: float) -> float | None:
        return self.schedule.next_due(now) if self.fetcher.more else None

    # -- collect ------------------------------------------------------------------
    async def collect(self, now: float) -> Batch | None:
        """Never raises: whatever happens, the next attempt is scheduled by the normal rules."""
        window = self.schedule.window_for(now)
        if not self.schedule.acquire(now):
            telemetry.SCRAPES.labels(self.name, "rate_limited_locally").inc()
            if self.schedule.wait_for_budget(now):
                self._give_up(window)
            return None
        try:
            result = await self.fetcher.fetch(now, self.schedule.max_server_delay(now))
            batch = self._batch(result, window, now)
        except ScrapeError as error:
            self._failed(now, window, error)
            return None
        except Exception as exc:  # a bug, or an input nobody foresaw: contained like any failed scrape
            if self._state != "internal_error":
                log.exception("source %s: unexpected error; scraping continues on schedule", self.name)
            self._failed(now, window, ScrapeError("internal_error", type(exc).__name__))
            return None
        self._succeeded(now)
        if self.windows is None:
            return batch
        forwarded = self.windows.admit(window.end_ns / NS_PER_S, now)
        self.last_window = "forwarded" if forwarded else "duplicate"
        if not forwarded:
            return None
        await self.windows.ledger.published()
        return batch

    async def probe(self, now: float) -> tuple[Batch, Window]:
        """One request for `metrics-bridge check`: from the budget like any scrape; failures raised, not scheduled."""
        window = self.schedule.window_for(now)
        if not self.schedule.acquire(now):
            raise ScrapeError("rate_limited_locally", "the request budget of this source is spent for now")
        return self._batch(await self.fetcher.fetch(now, self.schedule.max_server_delay(now)), window, now), window

    def _batch(self, result: ScrapeResult, window: Window, now: float) -> Batch:
        ingested = self.classifier.ingest(
            result.text,
            window,
            openmetrics=is_openmetrics(result.content_type),
            timestamps=self.config.honor_timestamps,
        )
        samples = ingested.samples
        if ingested.parse_errors:
            telemetry.PARSE_ERRORS.labels(self.name).inc(ingested.parse_errors)
        if not samples and (ingested.parse_errors or self.config.windowed):
            raise ScrapeError("not_prometheus", _not_prometheus(result))
        if ingested.first_error is not None:
            line, reason = ingested.first_error
            log.warning(
                "source %s: skipped %d malformed lines (first: line %d: %s)",
                self.name,
                ingested.parse_errors,
                line,
                excerpt(reason),
            )
        metrics = ingested.metrics
        skipped = self.classifier.skipped
        if skipped.count:
            telemetry.PARSE_ERRORS.labels(self.name).inc(skipped.count)
            log.warning(
                "source %s: skipped %d unusable samples (first: %s)", self.name, skipped.count, excerpt(skipped.first)
            )
        telemetry.SCRAPE_DURATION.labels(self.name).observe(max(0.0, self.context.clock.now() - now))
        telemetry.SCRAPES.labels(self.name, "ok").inc()
        telemetry.SAMPLES_IN.labels(self.name).inc(samples)
        resource = self.resource
        if self.classifier.lifted:
            assert self.preset is not None
            lifted = {self.preset.resource_labels[k]: v for k, v in self.classifier.lifted.items()}
            resource = {**resource, **lifted}
        return Batch(
            self.name,
            attrs_from(resource),
            window.start_ns,
            window.end_ns,
            metrics,
            namespace=self.preset.namespace if self.preset else "",
        )

    def _warn_unknown(self, family: Family) -> None:
        """Once per family the preset does not document: how it is forwarded, so a new family is noticed."""
        assert self.preset is not None
        if family.name in self.preset.known_families or family.name in self._warned_families:
            return
        self._warned_families.add(family.name)
        rule = self.classifier.rule_for(family.name)
        kind = (rule.kind if rule and rule.kind else family.type) or "gauge"
        temporality = f"{rule.temporality} " if rule and rule.temporality else ""
        log.warning(
            "source %s: unknown %s family %r (declared %s); forwarding it as a %s%s",
            self.name,
            self.preset.name,
            family.name,
            family.type,
            temporality,
            kind,
        )

    # -- status ---------------------------------------------------------------------
    def _succeeded(self, now: float) -> None:
        self.last_success = now
        self.last_error = None
        telemetry.LAST_SCRAPE_SUCCESS.labels(self.name).set(now)
        self.schedule.succeeded(now)
        if self._state != "ok":
            if self._state != "starting":
                log.info("source %s: scraping again", self.name)
            self._state = "ok"

    def _failed(self, now: float, window: Window, error: ScrapeError) -> None:
        telemetry.SCRAPES.labels(self.name, error.outcome).inc()
        self.last_error = error.outcome
        if self._state != error.outcome:
            log.warning("source %s: %s", self.name, self.explain(error))
            self._state = error.outcome
        if self.schedule.failed(now, error):
            self._give_up(window)

    def _give_up(self, window: Window) -> None:
        if self.windows is not None:
            self.windows.give_up(window.end_ns / NS_PER_S)


@registry.sources.register("prometheus")
class PrometheusSource(ScrapeSource):
    Config: ClassVar[type[SourceConfig]] = PrometheusSourceConfig


def _not_prometheus(result: ScrapeResult) -> str:
    """Why a 200 with no usable sample is a failed scrape (a proxy's login page, an empty body)."""
    content_type = result.content_type.split(";", 1)[0].strip() or "no content type"
    if not result.text.strip():
        return f"the body is empty ({content_type})"
    return f"the body is not Prometheus text: {content_type}, starting {excerpt(result.text, 60)!r}"
