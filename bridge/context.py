"""What components share at run time: the clock and per-organization request budgets."""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.clock import Clock, SystemClock

if TYPE_CHECKING:
    from bridge.health import HealthState

log = logging.getLogger(__name__)


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


class WindowLedger:
    """The last forwarded window end per upstream, so a window is forwarded once, even across restarts.

    In memory by default; with a path (top-level `state_path`) every update is written
    to a small JSON file (write to a temporary file, fsync, rename: never half-written),
    and read back at start. Without it, a restart within a minute re-forwards that
    minute: harmless for Datadog (same timestamp, same value), but an OTLP cumulative
    sink would count it again after its restart reset.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self._ends: dict[str, float] = {}
        if self.path is not None and self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
                self._ends = {str(k): float(v) for k, v in loaded.get("delivered_window_ends", {}).items()}
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("state file %s unreadable (%s); starting without window history", self.path, exc)

    def last(self, key: str) -> float | None:
        return self._ends.get(key)

    def record(self, key: str, end: float) -> None:
        self._ends[key] = end
        if self.path is not None:
            self._save(self.path)

    def _save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".tmp")
        try:
            with open(temporary, "w") as out:
                json.dump({"delivered_window_ends": self._ends}, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("state file %s not written (%s); window history kept in memory", path, exc.strerror)


@dataclass
class Context:
    clock: Clock = field(default_factory=SystemClock)
    budgets: dict[str, RequestBudget] = field(default_factory=dict)
    #: last forwarded window end per upstream key; a window is forwarded once
    windows: WindowLedger = field(default_factory=WindowLedger)
    #: readiness bookkeeping (/readyz); None when nothing serves it (tests, `once`)
    health: HealthState | None = None

    def budget(self, key: str, limit: int, period: float = 60.0) -> RequestBudget:
        if key not in self.budgets:
            self.budgets[key] = RequestBudget(limit, period)
        return self.budgets[key]
