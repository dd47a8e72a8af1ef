"""What components share at run time: the clock and per-organization request budgets."""

from __future__ import annotations

import json
import logging
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import telemetry
from bridge.clock import Clock, SystemClock, iso_utc
from bridge.schema import SeriesConfig
from bridge.series.table import SeriesTable

if TYPE_CHECKING:
    from bridge.health import HealthState

log = logging.getLogger(__name__)

#: A window end further ahead of the clock than this was recorded while the clock ran ahead (or the file
#: was edited): trusting it would drop every window until then as already forwarded. One Cerebras interval.
FUTURE_TOLERANCE_SECONDS = 60.0


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

    A bad entry never mutes a source: one that is not a finite time is ignored at load,
    one ahead of `clock` when read; each with a warning, counted in
    bridge_state_entries_ignored_total. Context sets `clock` to the sources' clock.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.clock: Clock = SystemClock()
        self._save_failing = False  # warn once per bad spell, not at every window
        self._ends: dict[str, float] = self._load(self.path) if self.path is not None and self.path.exists() else {}
        #: awaited after a record and before its window is forwarded (bridge/ha.py: the active replica
        #: writes the ends into its Lease first, so a replica taking over never forwards that window again)
        self.publisher: Callable[[], Awaitable[None]] | None = None

    @staticmethod
    def _load(path: Path) -> dict[str, float]:
        try:
            entries = json.loads(path.read_text())["delivered_window_ends"].items()
        except (OSError, ValueError) as exc:
            return _unreadable(path, str(exc))
        except (KeyError, TypeError, AttributeError):
            return _unreadable(path, "no delivered_window_ends mapping")
        ends = {}
        for key, value in entries:
            end = _finite_float(value)
            if end is None:
                log.warning("state file %s: window end %r of %r is not a time; ignored", path, value, key)
                telemetry.STATE_ENTRIES_IGNORED.labels("invalid").inc()
            else:
                ends[str(key)] = end
        return ends

    def last(self, key: str) -> float | None:
        end = self._ends.get(key)
        if end is not None and end > self.clock.now() + FUTURE_TOLERANCE_SECONDS:
            log.warning(
                "window history: %s last forwarded a window ending %s, ahead of the clock (recorded while "
                "the clock ran ahead?); ignored, so its windows are forwarded again",
                key,
                iso_utc(end),
            )
            telemetry.STATE_ENTRIES_IGNORED.labels("future").inc()
            del self._ends[key]
            return None
        return end

    def record(self, key: str, end: float) -> None:
        self._ends[key] = end
        if self.path is not None:
            self._save(self.path)

    async def published(self) -> None:
        """Return once the ends recorded so far are where a standby reads them (at once without one)."""
        if self.publisher is not None:
            await self.publisher()

    def snapshot(self) -> dict[str, float]:
        """Every upstream's last forwarded window end (what a warm standby needs to take over)."""
        return dict(self._ends)

    def merge(self, ends: dict[str, float]) -> None:
        """Take over another replica's history: per upstream the later end wins; bad entries are skipped."""
        changed = False
        for key, value in ends.items():
            end = _finite_float(value)
            if end is None:
                log.warning("window history from the Lease: end %r of %r is not a time; ignored", value, key)
                telemetry.STATE_ENTRIES_IGNORED.labels("invalid").inc()
                continue
            if end > self._ends.get(str(key), float("-inf")):
                self._ends[str(key)] = end
                changed = True
        if changed and self.path is not None:
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
            if not self._save_failing:
                log.warning("state file %s not written (%s); window history kept in memory", path, exc.strerror)
            self._save_failing = True
            return
        if self._save_failing:
            log.info("state file %s written again", path)
        self._save_failing = False


def _unreadable(path: Path, problem: str) -> dict[str, float]:
    log.warning("state file %s unreadable (%s); starting without window history", path, problem)
    telemetry.STATE_ENTRIES_IGNORED.labels("unreadable").inc()
    return {}


def _finite_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass
class Context:
    clock: Clock = field(default_factory=SystemClock)
    budgets: dict[str, RequestBudget] = field(default_factory=dict)
    #: last forwarded window end per upstream key; a window is forwarded once
    windows: WindowLedger = field(default_factory=WindowLedger)
    #: readiness bookkeeping (/readyz); None when nothing serves it (tests, `once`)
    health: HealthState | None = None
    #: the bound every series table keeps (the config's `series:`)
    series: SeriesConfig = field(default_factory=SeriesConfig)

    def __post_init__(self) -> None:
        self.windows.clock = self.clock  # "ahead of the clock" means the clock the sources stamp windows with

    def series_table(self, owner: str) -> SeriesTable:
        """A new series table for one owner (a source), held to the configured bound."""
        return SeriesTable(owner, max_series=self.series.max_series, idle_seconds=self.series.idle_seconds)

    def budget(self, key: str, limit: int, period: float = 60.0) -> RequestBudget:
        if key not in self.budgets:
            self.budgets[key] = RequestBudget(limit, period)
        return self.budgets[key]
