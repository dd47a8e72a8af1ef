"""The `prometheus` source: scrape any Prometheus-format endpoint on an aligned schedule.

Two modes. Ordinary exporters (`windowed: false`) expose running values:
counters are cumulative, each scrape is stamped with its own time. Windowed
endpoints such as Cerebras (`windowed: true`) describe the last complete
interval: every point is stamped with that window, a window is forwarded
once, and a window that could not be fetched is counted as a gap.
"""

from __future__ import annotations

import datetime
import logging
from typing import ClassVar, Literal

from pydantic import Field

from bridge import presets, registry, telemetry
from bridge.clock import minute_floor
from bridge.config import SourceConfig
from bridge.context import Context, RequestBudget
from bridge.http import excerpt
from bridge.model import NS_PER_S, Batch, attrs_from
from bridge.parser import Family, is_openmetrics, parse
from bridge.sources.base import Source
from bridge.sources.classify import Classifier, FamilyRule, Window
from bridge.sources.scrape import (
    Auth,
    NoAuth,
    ScrapeError,
    Scraper,
    ScrapeResult,
    TLSConfig,
)

log = logging.getLogger(__name__)

_RETRYABLE_OUTCOMES = ("timeout", "connection_error")
#: The longest server-requested wait for a source that is not windowed (or its interval, if longer).
MAX_SERVER_DELAY_SECONDS = 600.0


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


@registry.sources.register("prometheus")
class PrometheusSource(Source):
    Config: ClassVar[type[SourceConfig]] = PrometheusSourceConfig
    config: PrometheusSourceConfig

    def __init__(self, name: str, config: PrometheusSourceConfig, context: Context) -> None:
        super().__init__(name, config, context)
        self.preset = presets.get(config.preset) if config.preset else None
        rules = list(config.families)
        if self.preset is not None:
            rules += self.preset.rules(list(self.preset.statistic_labels))
        self.classifier = Classifier(
            rules=rules,
            resource_labels=frozenset(self.preset.resource_labels if self.preset else ()),
            on_family=self._warn_unknown if self.preset else None,
        )
        self._warned_families: set[str] = set()
        self.budget: RequestBudget | None = (
            context.budget(self.budget_key, config.rate_limit_per_minute) if config.rate_limit_per_minute else None
        )
        self.scraper: Scraper | None = None
        self.resource = {"bridge.source": name, **config.resource}
        self._next_due: float | None = None
        self._attempts_this_window = 0
        self._accounted_end: float | None = None  # last window forwarded or counted as a gap
        self._previous_scrape: float | None = None
        self._state = "starting"  # last logged state, so each change is logged once
        self.last_success: float | None = None
        self.last_error: str | None = None

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def budget_key(self) -> str:
        return self.config.rate_limit_key or self.url

    @property
    def target(self) -> str:
        """What an error explanation names: the URL here, the organization for Cerebras."""
        return self.url

    def explain(self, error: ScrapeError) -> str:
        template = self.preset.explanations.get(error.status or 0) if self.preset else None
        return template.format(target=self.target) if template else f"scrape of {self.target} failed: {error}"

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

    async def fetch(self, now: float) -> ScrapeResult:
        assert self.scraper is not None, "start() first"
        return await self.scraper.fetch(self.url, now, max_delay=self.max_server_delay(now))

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        config = self.config
        self.scraper = Scraper(
            auth=config.auth, tls=config.tls, timeout=config.timeout_seconds, max_body_bytes=config.max_body_bytes
        )

    async def close(self) -> None:
        if self.scraper is not None:
            await self.scraper.close()
            self.scraper = None

    # -- scheduling -------------------------------------------------------------
    def _aligned_after(self, now: float) -> float:
        interval = self.config.interval_seconds
        due = minute_floor(now, interval) + self.config.offset_seconds
        return due if due > now else due + interval

    def next_due(self, now: float) -> float | None:
        if self._next_due is None:
            self._next_due = now  # first scrape at once: the last complete window is already there
        return self._next_due

    def _window_for(self, now: float) -> Window:
        interval = self.config.interval_seconds
        if self.config.windowed:
            end = minute_floor(now - self.config.lag_seconds, interval)
            return Window(int((end - interval) * NS_PER_S), int(end * NS_PER_S))
        start = self._previous_scrape if self._previous_scrape is not None else now - interval
        return Window(int(start * NS_PER_S), int(now * NS_PER_S))

    # -- collect ------------------------------------------------------------------
    async def collect(self, now: float) -> Batch | None:
        """Never raises: whatever happens, the next attempt is scheduled by the normal rules."""
        window = self._window_for(now)
        if self.budget is not None and not self.budget.try_acquire(now):
            telemetry.SCRAPES.labels(self.name, "rate_limited_locally").inc()
            self._reschedule_after_failure(now, window, self.budget.next_free(now), retry_in_window=True)
            return None
        try:
            batch = self._batch(await self.fetch(now), window, now)
        except ScrapeError as error:
            self._on_failure(now, window, error)
            return None
        except Exception as exc:  # a bug, or an input nobody foresaw: contained like any failed scrape
            if self._state != "internal_error":
                log.exception("source %s: unexpected error; scraping continues on schedule", self.name)
            self._on_failure(now, window, ScrapeError("internal_error", type(exc).__name__))
            return None
        self._on_success(now)
        return self._admit(batch, now)

    def max_server_delay(self, now: float) -> float:
        """The longest wait a server may impose (Retry-After, rate-limit resets).

        A windowed source waits at most until the last second in which the next
        window can still be fetched (the API keeps no history, so a longer wait
        only loses windows); others at most MAX_SERVER_DELAY_SECONDS or one
        interval, whichever is longer.
        """
        interval = self.config.interval_seconds
        if self.config.windowed:
            lag = self.config.lag_seconds
            next_window_end = minute_floor(now - lag, interval) + interval
            return max(0.0, next_window_end + interval + lag - 1.0 - now)
        return max(MAX_SERVER_DELAY_SECONDS, interval)

    def _batch(self, result: ScrapeResult, window: Window, now: float) -> Batch:
        parsed = parse(result.text, openmetrics=is_openmetrics(result.content_type))
        samples = sum(len(f.samples) for f in parsed.families)
        if parsed.errors:
            telemetry.PARSE_ERRORS.labels(self.name).inc(parsed.errors)
        if not samples and (parsed.errors or self.config.windowed):
            raise ScrapeError("not_prometheus", _not_prometheus(result))
        if parsed.errors:
            line, reason = parsed.error_samples[0]
            log.warning(
                "source %s: skipped %d malformed lines (first: line %d: %s)",
                self.name,
                parsed.errors,
                line,
                excerpt(reason),
            )
        families = parsed.families if self.config.honor_timestamps else _without_timestamps(parsed.families)
        metrics = self.classifier.classify(families, window)
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

    def _admit(self, batch: Batch, now: float) -> Batch | None:
        """Windowed sources forward each window once and count the windows that were lost."""
        self._previous_scrape = now
        if not self.config.windowed:
            return batch
        end = batch.window_end_ns / NS_PER_S
        key = self.budget_key
        delivered = self.context.windows.last(key)
        if delivered is not None and end <= delivered:
            telemetry.WINDOWS.labels(self.name, "duplicate").inc()
            return None
        self._count_gaps_before(end)
        self.context.windows.record(key, end)
        telemetry.WINDOWS.labels(self.name, "forwarded").inc()
        telemetry.WINDOW_LAG.labels(self.name).set(now - end)
        return batch

    def _count_gaps_before(self, end: float) -> None:
        interval = self.config.interval_seconds
        if self._accounted_end is not None and end > self._accounted_end:
            missed = round((end - self._accounted_end) / interval) - 1
            if missed > 0:
                telemetry.GAPS.labels(self.name).inc(missed)
                log.warning("source %s: %d window(s) before %s were never fetched", self.name, missed, _iso(end))
        if self._accounted_end is None or end > self._accounted_end:
            self._accounted_end = end

    def _on_success(self, now: float) -> None:
        self.last_success = now
        self.last_error = None
        telemetry.LAST_SCRAPE_SUCCESS.labels(self.name).set(now)
        self._attempts_this_window = 0
        self._next_due = self._aligned_after(now)
        if self._state != "ok":
            if self._state != "starting":
                log.info("source %s: scraping again", self.name)
            self._state = "ok"

    def _on_failure(self, now: float, window: Window, error: ScrapeError) -> None:
        telemetry.SCRAPES.labels(self.name, error.outcome).inc()
        self.last_error = error.outcome
        if self._state != error.outcome:
            log.warning("source %s: %s", self.name, self.explain(error))
            self._state = error.outcome
        retry_at = None
        if error.status == 429:
            wait = error.retry_after if error.retry_after is not None else 0.0
            if self.budget is not None:
                self.budget.close_until(now + wait)
            retry_at = max(self._aligned_after(now), now + wait)
            self._reschedule_after_failure(now, window, retry_at, retry_in_window=False)
            return
        if error.outcome in _RETRYABLE_OUTCOMES or (error.status or 0) >= 500:
            retry_at = now + (error.retry_after or self.config.retry_delay_seconds)
        self._reschedule_after_failure(now, window, retry_at, retry_in_window=retry_at is not None)

    def _reschedule_after_failure(
        self, now: float, window: Window, retry_at: float | None, *, retry_in_window: bool
    ) -> None:
        """Retry once inside the window if allowed, else give the window up as a gap."""
        self._attempts_this_window += 1
        next_aligned = self._aligned_after(now)
        if retry_in_window and retry_at is not None and self._attempts_this_window < 2 and retry_at < next_aligned:
            self._next_due = retry_at
            return
        if self.config.windowed:
            self._give_up_window(window)
        self._attempts_this_window = 0
        self._next_due = max(next_aligned, retry_at or 0.0)

    def _give_up_window(self, window: Window) -> None:
        end = window.end_ns / NS_PER_S
        delivered = self.context.windows.last(self.budget_key)
        if delivered is not None and end <= delivered:
            return  # another source already forwarded it
        if self._accounted_end is not None and end <= self._accounted_end:
            return
        self._count_gaps_before(end)
        telemetry.GAPS.labels(self.name).inc()
        log.info("source %s: window ending %s lost (upstream keeps no history)", self.name, _iso(end))


def _not_prometheus(result: ScrapeResult) -> str:
    """Why a 200 with no usable sample is a failed scrape (a proxy's login page, an empty body)."""
    content_type = result.content_type.split(";", 1)[0].strip() or "no content type"
    if not result.text.strip():
        return f"the body is empty ({content_type})"
    return f"the body is not Prometheus text: {content_type}, starting {excerpt(result.text, 60)!r}"


def _without_timestamps(families: list[Family]) -> list[Family]:
    for family in families:
        for sample in family.samples:
            sample.timestamp = None
    return families


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
