"""The alerts every backend gets, with their documented default thresholds.

One list, so the Prometheus rules, the Datadog monitors and the README's alert
table name the same conditions with the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Documented defaults (README, "Dashboards and alerts"); edit here and `make dashboards`."""

    not_up_minutes: int = 3
    failure_ratio: float = 0.05
    failure_minutes: int = 10
    ttft_p95_seconds: float = 2.0
    ttft_minutes: int = 10
    success_slo: float = 0.99  # over 30 days
    fast_burn: float = 14.4  # 2% of a 30-day budget in 1 h (Google SRE workbook)
    slow_burn: float = 6.0  # 5% of a 30-day budget in 6 h
    gap_windows: int = 3  # lost windows in 10 minutes
    send_failure_minutes: int = 15
    queue_age_seconds: int = 900
    no_delivery_seconds: int = 600
    lease_minutes: int = 2  # a takeover takes 15-20 s; longer without exactly one active replica is not one

    @property
    def error_budget(self) -> float:
        return round(1 - self.success_slo, 10)


DEFAULTS = Thresholds()


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str  # critical pages, warning opens a ticket
    summary: str


def alerts(t: Thresholds = DEFAULTS) -> tuple[Alert, ...]:
    return (
        Alert("CerebrasEndpointNotUp", "critical", f"endpoint down (0) or unknown (-1) for {t.not_up_minutes} min"),
        Alert(
            "CerebrasHighFailureRatio",
            "warning",
            f"failed / all requests above {t.failure_ratio:.0%} (5 min rate) for {t.failure_minutes} min",
        ),
        Alert("CerebrasTTFTAboveSLO", "warning", f"TTFT p95 above {t.ttft_p95_seconds:g} s for {t.ttft_minutes} min"),
        Alert(
            "CerebrasErrorBudgetFastBurn",
            "critical",
            f"{t.success_slo:.1%} success SLO: error budget burning {t.fast_burn:g}x over 1 h and 5 min",
        ),
        Alert(
            "CerebrasErrorBudgetSlowBurn",
            "warning",
            f"{t.success_slo:.1%} success SLO: error budget burning {t.slow_burn:g}x over 6 h and 30 min",
        ),
        Alert("CerebrasNoDataFromAPI", "critical", f"{t.gap_windows} or more windows lost (bridge gaps) in 10 min"),
        Alert(
            "CerebrasBridgeSendFailing",
            "critical",
            f"a sink's deliveries failed and none succeeded for {t.send_failure_minutes} min",
        ),
        Alert(
            "CerebrasBridgeQueueStale",
            "warning",
            f"a sink's oldest waiting window older than {t.queue_age_seconds // 60} min",
        ),
        Alert(
            "CerebrasBridgeNoRecentDelivery",
            "warning",
            f"no delivery acknowledged for {t.no_delivery_seconds // 60} min",
        ),
        Alert(
            "CerebrasBridgeNoActiveReplica",
            "critical",
            f"warm standby: not exactly one replica holding a shard's Lease for {t.lease_minutes} min",
        ),
    )
