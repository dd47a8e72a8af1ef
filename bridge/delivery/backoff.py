"""How long a sink waits after a retryable failure.

Exponential backoff with *full* jitter (a uniform draw between 0 and the
capped exponential): many bridges that lost the same backend at the same
moment spread their retries instead of returning in lockstep. A server's
Retry-After is a floor, never shortened by the jitter or the cap: the
server knows when it will take traffic again.
"""

from __future__ import annotations

import random

_MAX_DOUBLINGS = 62  # a day-long outage counts thousands of failures; 2.0 ** 1024 would overflow


def retry_delay(
    failures: int, initial: float, cap: float, retry_after: float | None, rng: random.Random
) -> float:
    """Seconds to wait after the `failures`-th consecutive failure (1 for the first)."""
    ceiling = min(cap, initial * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
    return max(rng.uniform(0.0, ceiling), retry_after or 0.0)
