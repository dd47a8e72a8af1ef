"""What components share at run time: the clock and per-organization request budgets."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.clock import Clock, SystemClock

if TYPE_CHECKING:
    from bridge.health import HealthState


class RequestBudget:
    """At most `limit` requests in any rolling `period` seconds (retries included).

    One budget per upstream organization, shared by every source and retry
    that reads it, so the bridge can never exceed the API's rate limit.
    A 429 can also close the budget until a given time (Retry-After).
    """

    def __init__(self, limit: int, period: float = 60.0) -> None:
        self.limit = limit
        self.period = period
        self._sent: deque[float] = deque()
        self._closed_until = 0.0

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.period:
            self._sent.popleft()

    def try_acquire(self, now: float) -> bool:
        self._expire(now)
        if now < self._closed_until or len(self._sent) >= self.limit:
            return False
        self._sent.append(now)
        return True

    def next_free(self, now: float) -> float:
        """Earliest time a request may be sent."""
        self._expire(now)
        at = max(now, self._closed_until)
        if len(self._sent) >= self.limit:
            at = max(at, self._sent[len(self._sent) - self.limit] + self.period)
        return at

    def close_until(self, when: float) -> None:
        self._closed_until = max(self._closed_until, when)


@dataclass
class Context:
    clock: Clock = field(default_factory=SystemClock)
    budgets: dict[str, RequestBudget] = field(default_factory=dict)
    #: last delivered window end (seconds) per upstream key; a window is forwarded once
    delivered_windows: dict[str, float] = field(default_factory=dict)
    #: readiness bookkeeping (/readyz); None when nothing serves it (tests, `once`)
    health: HealthState | None = None

    def budget(self, key: str, limit: int, period: float = 60.0) -> RequestBudget:
        if key not in self.budgets:
            self.budgets[key] = RequestBudget(limit, period)
        return self.budgets[key]
