"""The Cerebras Metrics API as a preset (docs: the README's "The Cerebras families").

- every value describes the last complete UTC minute;
- the `*_total` families are declared gauges but are per-minute counts: delta
  counters over their window. So is every `*_total` family the docs do not name
  yet (e.g. `cache_hit_tokens_total`): on this API a `_total` is a count over the
  last complete minute;
- the latency families carry a statistic label spelled `statistic` or
  `percentile`: it becomes one `statistic` attribute, the family stays a gauge;
- `organization_id` is carried once, on the resource;
- `inference_endpoint_status` is a state (1 up, 0 down, -1 unknown): a gauge
  with no unit, also shown as a service check where the backend has them.
"""

from __future__ import annotations

from typing import Literal

from bridge.presets import FamilyRule, Preset

STATISTIC_LABELS = ("statistic", "percentile")
ENDPOINT_STATUS_CHECK = "inference_endpoint.status"

#: family -> (kind, temporality, unit); the README's Cerebras table is generated from the same facts.
FAMILIES: dict[str, tuple[Literal["gauge", "counter"], Literal["cumulative", "delta"] | None, str]] = {
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
_SERVICE_CHECKS = {"inference_endpoint_status": ENDPOINT_STATUS_CHECK}


def rules(statistic_labels: list[str]) -> list[FamilyRule]:
    out = []
    for name, (kind, temporality, unit) in FAMILIES.items():
        out.append(
            FamilyRule(
                match=name,
                kind=kind,
                temporality=temporality,
                unit=unit,
                statistic_labels=statistic_labels if unit == "s" else [],
                service_check=_SERVICE_CHECKS.get(name),
            )
        )
    # Families the docs do not name yet: a `_total` is a per-minute count; the rest are gauges.
    out.append(FamilyRule(match=".*_total", kind="counter", temporality="delta", statistic_labels=statistic_labels))
    out.append(FamilyRule(match=".*_seconds", kind="gauge", unit="s", statistic_labels=statistic_labels))
    out.append(FamilyRule(match=".*", kind="gauge", statistic_labels=statistic_labels))
    return out


CEREBRAS = Preset(
    name="cerebras",
    rules=rules,
    statistic_labels=STATISTIC_LABELS,
    resource_labels={"organization_id": "cerebras.organization_id"},
    namespace="cerebras",
    known_families=frozenset(FAMILIES),
    explanations={
        401: "the API key was rejected (401) for {target}: check CEREBRAS_API_KEY or api_key; retrying each minute",
        403: "metrics are not available for {target} (403): the feature may not be enabled for this organization "
        "(dedicated endpoints, private preview) or the organization id is wrong; retrying each minute",
        404: "metrics are not available for {target} (404): the feature may not be enabled for this organization "
        "(dedicated endpoints, private preview) or the organization id is wrong; retrying each minute",
        429: "rate limited by the API for {target} (429); backing off to the next minute",
    },
)
