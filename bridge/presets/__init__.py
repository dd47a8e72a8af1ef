"""What is special about an upstream, as data: a preset.

A source that names a preset (`cerebras` does always; `prometheus` and `file`
with `preset:`) gets its family rules, the labels that belong on the resource,
the explanations of its errors, and the hints a sink needs: the metric
namespace (a batch hint) and service-check names (a metric hint). So the live
source and a replay of a saved scrape produce the same batch, and no sink ever
recognises a vendor by its metric names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from bridge.schema import Regex, StrictModel


class FamilyRule(StrictModel):
    """Overrides for families whose name fully matches `match` (a regex)."""

    match: Regex = Field(description="regular expression matched against the whole family name")
    kind: Literal["gauge", "counter"] | None = None
    temporality: Literal["cumulative", "delta"] | None = None
    unit: str | None = None
    statistic_labels: list[str] = Field(
        default_factory=list, description="labels that carry a statistic (p95, avg, ...); renamed to `statistic`"
    )
    service_check: str | None = Field(
        None, description="a gauge that is a state (1 ok, 0 critical, -1 unknown): also sent as this service check"
    )


@dataclass(frozen=True)
class Preset:
    name: str
    #: statistic label spellings -> the family rules (first full match wins)
    rules: Callable[[list[str]], list[FamilyRule]]
    statistic_labels: tuple[str, ...] = ()
    #: point label -> resource attribute it moves to (carried once per batch, not on every point)
    resource_labels: dict[str, str] = field(default_factory=dict)
    #: a batch hint: the backend-side metric namespace (Datadog prefixes names with it)
    namespace: str = ""
    #: families the upstream documents; others are forwarded by the catch-all rules, with one warning
    known_families: frozenset[str] = frozenset()
    #: HTTP status -> what it means for this upstream ({target} is the organization or URL)
    explanations: dict[int, str] = field(default_factory=dict)


def get(name: str) -> Preset:
    from bridge.presets.cerebras import CEREBRAS  # on first use: a preset module may be large

    presets = {CEREBRAS.name: CEREBRAS}
    return presets[name]
