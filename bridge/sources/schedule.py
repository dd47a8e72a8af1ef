"""When a scrape source collects: one part of a source, the same for every upstream.

Scrapes are aligned to the interval boundary plus an offset (the first runs at
once). After a failure: one retry inside the window for a timeout, a connection
error or a 5xx (after the server's requested delay, else `retry_delay`); a 429
waits for the next aligned scrape or the server's delay, whichever is later, and
closes the shared request budget until then; anything else waits for the next
aligned scrape. A server-requested wait is capped (`max_server_delay`), and a
request budget (shared by every source on one upstream) is never exceeded.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.clock import minute_floor
from bridge.context import RequestBudget
from bridge.model import NS_PER_S
from bridge.sources.classify import Window
from bridge.sources.scrape import ScrapeError

_RETRYABLE_OUTCOMES = ("timeout", "connection_error")
#: The longest server-requested wait for a source that is not windowed (or its interval, if longer).
MAX_SERVER_DELAY_SECONDS = 600.0


@dataclass
class WindowSchedule:
    interval: float
    offset: float
    windowed: bool
    lag: float
    retry_delay: float
    budget: RequestBudget | None = None

    def __post_init__(self) -> None:
        self._next_due: float | None = None
        self._attempts_this_window = 0
        self._previous_scrape: float | None = None

    def next_due(self, now: float) -> float:
        if self._next_due is None:
            self._next_due = now  # first scrape at once: the last complete window is already there
        return self._next_due

    def aligned_after(self, now: float) -> float:
        due = minute_floor(now, self.interval) + self.offset
        return due if due > now else due + self.interval

    def window_for(self, now: float) -> Window:
        """A windowed upstream's last complete interval; otherwise the time since the previous scrape."""
        if self.windowed:
            end = minute_floor(now - self.lag, self.interval)
            return Window(int((end - self.interval) * NS_PER_S), int(end * NS_PER_S))
        start = self._previous_scrape if self._previous_scrape is not None else now - self.interval
        return Window(int(start * NS_PER_S), int(now * NS_PER_S))

    def max_server_delay(self, now: float) -> float:
        """The longest wait a server may impose (Retry-After, rate-limit resets).

        A windowed source waits at most until the last second in which the next
        window can still be fetched (the API keeps no history, so a longer wait
        only loses windows); others at most MAX_SERVER_DELAY_SECONDS or one
        interval, whichever is longer.
        """
        if self.windowed:
            next_window_end = minute_floor(now - self.lag, self.interval) + self.interval
            return max(0.0, next_window_end + self.interval + self.lag - 1.0 - now)
        return max(MAX_SERVER_DELAY_SECONDS, self.interval)

    def acquire(self, now: float) -> bool:
        """Take a request from the budget (always granted without one)."""
        return self.budget is None or self.budget.try_acquire(now)

    def wait_for_budget(self, now: float) -> bool:
        """After a refused `acquire`: the next attempt when the budget frees; True when the window is given up."""
        assert self.budget is not None
        return self._reschedule(now, self.budget.next_free(now), retry_in_window=True)

    def succeeded(self, now: float) -> None:
        self._previous_scrape = now
        self._attempts_this_window = 0
        self._next_due = self.aligned_after(now)

    def failed(self, now: float, error: ScrapeError) -> bool:
        """Schedule the next attempt after a failed scrape; True when the window is given up."""
        if error.status == 429:
            wait = error.retry_after if error.retry_after is not None else 0.0
            if self.budget is not None:
                self.budget.close_until(now + wait)
            return self._reschedule(now, max(self.aligned_after(now), now + wait), retry_in_window=False)
        retry_at = None
        if error.outcome in _RETRYABLE_OUTCOMES or (error.status or 0) >= 500:
            retry_at = now + (error.retry_after or self.retry_delay)
        return self._reschedule(now, retry_at, retry_in_window=retry_at is not None)

    def _reschedule(self, now: float, retry_at: float | None, *, retry_in_window: bool) -> bool:
        """Retry once inside the window if allowed (False), else give the window up (True)."""
        self._attempts_this_window += 1
        next_aligned = self.aligned_after(now)
        if retry_in_window and retry_at is not None and self._attempts_this_window < 2 and retry_at < next_aligned:
            self._next_due = retry_at
            return False
        self._attempts_this_window = 0
        self._next_due = max(next_aligned, retry_at or 0.0)
        return True
