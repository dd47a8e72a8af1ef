"""PromQL for the Cerebras families, shared by the Grafana dashboard and the Prometheus rules.

Names are computed with the bridge's own OTLP -> Prometheus translation (the rule
the README's PromQL table pins), so the dashboard and the rules query exactly what
Grafana Cloud / Mimir stores. One builder per ratio: the dashboard evaluates it
with its variables, the rules record it, so the two can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.presets.cerebras import FAMILIES
from bridge.promnames import prometheus_name


def _promql_name(family: str) -> str:
    kind, _, unit = FAMILIES[family]
    return prometheus_name(family, unit, "monotonic_sum" if kind == "counter" else "gauge")


#: Cerebras family -> the name PromQL queries (e.g. `cache_rate` -> `cache_rate_ratio`).
NAME = {family: _promql_name(family) for family in FAMILIES}
PERCENTILES = ("p50", "p95", "p99")


@dataclass(frozen=True)
class Scope:
    """Where a query runs: label matchers on every Cerebras selector, the grouping, and an organization filter.

    Organization ids live on the OTLP resource, so Mimir keeps them in `target_info`
    (joined on job and instance), not on the points.
    """

    matchers: str = ""
    by: str = "job, instance, endpoint"
    organization: str | None = None

    def select(self, family: str, extra: str = "") -> str:
        matchers = ", ".join(m for m in (self.matchers, extra) if m)
        return f"{NAME[family]}{{{matchers}}}" if matchers else NAME[family]

    def per_org(self, expr: str) -> str:
        """`expr` kept only for the selected organizations (the dashboard's variable), untouched otherwise."""
        if self.organization is None:
            return expr
        return (
            f"{expr} * on (job, instance) group_left () "
            f'group by (job, instance) (target_info{{cerebras_organization_id=~"{self.organization}"}})'
        )

    def rate(self, family: str, window: str, extra: str = "") -> str:
        return f"sum by ({self.by}) ({self.per_org(f'rate({self.select(family, extra)}[{window}])')})"

    def gauge(self, family: str, extra: str = "", how: str = "max") -> str:
        return f"{how} by ({self.by}) ({self.per_org(self.select(family, extra))})"


#: The rules' scope: every series, kept apart by bridge instance (one per organization) and endpoint.
RULES = Scope()


def ratio(scope: Scope, numerator: str, denominator: str, window: str, *, when_idle: float) -> str:
    """numerator / denominator over `window`; an endpoint with no traffic gets `when_idle` instead of NaN (0/0)."""
    num, den = scope.rate(numerator, window), scope.rate(denominator, window)
    return f"({num} / ({den} > 0)) or ({den} * 0 + {when_idle:g})"


def failure_ratio(scope: Scope, window: str) -> str:
    """Failed / all requests; 0 without traffic (nothing failed), which is also what the burn rate needs."""
    return ratio(scope, "requests_failure_total", "requests_count_total", window, when_idle=0)


def success_ratio(scope: Scope, window: str) -> str:
    """HTTP 200 / all requests, as the simulator and the API count them; 1 without traffic (nothing failed)."""
    return ratio(scope, "requests_success_total", "requests_count_total", window, when_idle=1)


def output_tokens_per_request(scope: Scope, window: str) -> str:
    """Output tokens per successful request; 0 without traffic."""
    return ratio(scope, "output_tokens_total", "requests_success_total", window, when_idle=0)
