"""Window accounting: one part of a windowed source (Cerebras-style upstreams keep no history).

Each window is forwarded once, across every source reading the same upstream
(the shared ledger, persisted with `state_path`); a later scrape of a
forwarded window is a duplicate; every window never fetched is counted as a
gap and logged, never papered over.
"""

from __future__ import annotations

import logging

from bridge import telemetry
from bridge.clock import iso_utc
from bridge.context import WindowLedger

log = logging.getLogger(__name__)


class WindowAccounting:
    def __init__(self, source: str, key: str, interval: float, ledger: WindowLedger) -> None:
        self.source = source
        self.key = key  # the upstream: every source with the same key shares its windows
        self.interval = interval
        self.ledger = ledger
        self._accounted_end: float | None = None  # last window forwarded or counted as a gap

    def admit(self, end: float, now: float) -> bool:
        """Whether the window ending at `end` is to be forwarded (False: already forwarded)."""
        delivered = self.ledger.last(self.key)
        if delivered is not None and end <= delivered:
            telemetry.WINDOWS.labels(self.source, "duplicate").inc()
            return False
        self._count_gaps_before(end)
        self.ledger.record(self.key, end)
        telemetry.WINDOWS.labels(self.source, "forwarded").inc()
        telemetry.WINDOW_LAG.labels(self.source).set(now - end)
        return True

    def give_up(self, end: float) -> None:
        """The window ending at `end` could not be fetched: a gap, unless another source forwarded it."""
        delivered = self.ledger.last(self.key)
        if delivered is not None and end <= delivered:
            return
        if self._accounted_end is not None and end <= self._accounted_end:
            return
        self._count_gaps_before(end)
        telemetry.GAPS.labels(self.source).inc()
        log.info("source %s: window ending %s lost (upstream keeps no history)", self.source, iso_utc(end))

    def _count_gaps_before(self, end: float) -> None:
        if self._accounted_end is not None and end > self._accounted_end:
            missed = round((end - self._accounted_end) / self.interval) - 1
            if missed > 0:
                telemetry.GAPS.labels(self.source).inc(missed)
                log.warning("source %s: %d window(s) before %s were never fetched", self.source, missed, iso_utc(end))
        if self._accounted_end is None or end > self._accounted_end:
            self._accounted_end = end
