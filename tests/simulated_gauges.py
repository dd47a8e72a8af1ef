"""The simulator's gauge values, window by window, for end-to-end tests to compare forwarded gauges with exactly.

Counts are checked through sums (`CerebrasSimulator.count_totals`); a gauge is
not summable, so each is compared point by point: every latency family and
statistic, cache_rate and inference_endpoint_status, every window, bit for bit
(a sink that rounded TPOT's 0.0018 s to 0.0 must fail), NaN where an endpoint is idle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from bridge.simulator import CerebrasSimulator

#: (window start in unix seconds, family, endpoint, statistic or "")
GaugeKey = tuple[int, str, str, str]


def expected_gauges(simulator: CerebrasSimulator, window_starts: Iterable[float]) -> dict[GaugeKey, float]:
    """Every gauge sample the simulator serves for these windows."""
    gauges: dict[GaugeKey, float] = {}
    for start in window_starts:
        for endpoint, values in simulator.window_values(start).endpoints.items():
            gauges[int(start), "inference_endpoint_status", endpoint, ""] = float(values.status)
            if values.cache_rate is not None:
                gauges[int(start), "cache_rate", endpoint, ""] = values.cache_rate
            for family, statistics in values.statistics.items():
                for statistic, value in statistics.items():
                    gauges[int(start), family, endpoint, statistic] = value
    return gauges


def assert_same_gauges(
    received: Mapping[GaugeKey, float], expected: Mapping[GaugeKey, float], *, nan_sent: bool
) -> None:
    """Exactly the expected gauges with exactly their values; NaN ones arrive as NaN, or (nan_sent=False) not at all.

    Also checks that the comparison covers what it claims: an idle endpoint's
    NaN, and values small enough that rounding would change them.
    """
    nan_keys = {key for key, value in expected.items() if math.isnan(value)}
    assert nan_keys, "the windows compared include an idle endpoint (NaN statistics)"
    assert any(0 < value < 0.005 for value in expected.values()), "values that rounding to 2 decimals would change"
    wanted = expected if nan_sent else {key: value for key, value in expected.items() if key not in nan_keys}
    missing, extra = sorted(wanted.keys() - received.keys()), sorted(received.keys() - wanted.keys())
    assert not missing and not extra, f"missing {missing[:5]} ({len(missing)}), unexpected {extra[:5]} ({len(extra)})"
    wrong = [
        (key, received[key], value)
        for key, value in wanted.items()
        if not (received[key] == value or (math.isnan(received[key]) and math.isnan(value)))
    ]
    assert not wrong, f"{len(wrong)} gauge values differ (key, received, served): {wrong[:5]}"
