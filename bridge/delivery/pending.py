"""The payloads a sink still owes its backend, ordered by window so both ends are cheap.

Eviction and expiry take from the oldest end; draining takes from the newest
window (or the oldest, by configuration). An entry always carries what
ordering, caps and metrics need; its bytes are in memory, or only in the
spool when the sink has one.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from bridge.sinks.base import Payload


@dataclass(eq=False, slots=True)
class Entry:
    seq: int  # arrival order within this process: breaks ties between payloads of one window
    window_end_ns: int
    points: int
    size: int  # body bytes
    payload: Payload | None  # None when the bytes live only in the spool
    row_id: int | None = None  # the spool's row, assigned on the spool's thread
    source: str = ""  # the batch's source ("" when recovered from the spool): its payloads go one at a time


def _order(entry: Entry) -> tuple[int, int]:
    return entry.window_end_ns, entry.seq


class PendingQueue:
    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries))

    def add(self, entry: Entry) -> None:
        bisect.insort(self._entries, entry, key=_order)
        self.bytes += entry.size

    def remove(self, entry: Entry) -> None:
        index = bisect.bisect_left(self._entries, _order(entry), key=_order)
        if index < len(self._entries) and self._entries[index] is entry:
            del self._entries[index]
            self.bytes -= entry.size

    def oldest(self, skip: Collection[Entry] = ()) -> Entry | None:
        """The entry with the oldest window that is not in `skip` (the ones being delivered)."""
        for entry in self._entries[: len(skip) + 1]:
            if entry not in skip:
                return entry
        return None

    def next_to_send(
        self, newest_first: bool, busy: Collection[Entry] = (), busy_sources: Collection[str] = ()
    ) -> Entry | None:
        """The newest window's first payload, or the oldest payload, among those not being delivered (`busy`)
        whose source has none being delivered (`busy_sources`): one source's payloads go one at a time."""
        if not newest_first:
            return next((e for e in self._entries if e not in busy and e.source not in busy_sources), None)
        end = len(self._entries)
        while end:  # window by window from the newest, each in arrival order
            start = bisect.bisect_left(self._entries, (self._entries[end - 1].window_end_ns, -1), key=_order)
            for entry in self._entries[start:end]:
                if entry not in busy and entry.source not in busy_sources:
                    return entry
            end = start
        return None

    def ending_before(self, cutoff_ns: int) -> list[Entry]:
        """Entries whose window ended before cutoff_ns, oldest first."""
        index = bisect.bisect_left(self._entries, (cutoff_ns, -1), key=_order)
        return self._entries[:index]
