"""Time as the scheduler and delivery see it: injectable so tests run simulated hours in seconds."""

from __future__ import annotations

import asyncio
import datetime
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds."""

    async def sleep_until(self, when: float) -> None:
        """Return once now() >= when."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)


class ManualClock:
    """A clock that moves only when a test calls `advance` or `set`.

    Sleepers wake in time order as the clock passes their deadline, each given a
    chance to run before the clock moves past the next deadline.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (when, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        await self.set(self._now + seconds)

    async def set(self, when: float) -> None:
        while self._waiters and self._waiters[0][0] <= when:
            deadline, _, future = heapq.heappop(self._waiters)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            for _ in range(5):  # let the woken task run up to its next await
                await asyncio.sleep(0)
        self._now = max(self._now, when)


def iso_utc(t: float) -> str:
    """Unix seconds as `2027-01-15T08:00:00Z` for log lines; a time past year 9999 (a hand-edited file) as a number."""
    try:
        return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{t:.0f} (unix time)"


def minute_floor(t: float, period: float = 60.0) -> float:
    """The period boundary at or before t (UTC-aligned for period dividing a day)."""
    return t - (t % period)
