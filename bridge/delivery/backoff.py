"""How long a sink waits after a retryable failure.

Exponential backoff with *full* jitter (a uniform draw between 0 and the
capped exponential): many bridges that lost the same backend at the same
moment spread their retries instead of returning in lockstep. A server's
Retry-After is a floor, never shortened by the jitter: the server knows when
it will take traffic again. But it is capped like the rest, so no server can
put a sink to sleep for longer than the cap (a Retry-After in the year 2100
would otherwise be honoured to the letter).
"""

from __future__ import annotations

import random

_MAX_DOUBLINGS = 62  # a day-long outage counts thousands of failures; 2.0 ** 1024 would overflow


def retry_delay(failures: int, initial: float, cap: float, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait after the `failures`-th consecutive failure (1 for the first); never more than `cap`."""
    ceiling = min(cap, initial * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
    return max(rng.uniform(0.0, ceiling), min(retry_after or 0.0, cap))
