"""The series table: every series interned once, with everything known about it.

A series is keyed by its family and its label text as it appeared on the wire
(or, for series a plug-in builds from points, its sorted attributes), so in
steady state a sample costs one dict lookup. The entry carries the parsed
attributes, the source's cumulative start time and last observation, and a
`memo` where each consumer (a sink's plan, a transform) keeps what it derived
once for this series: encoded identity, counter state, a filter verdict. When
the table evicts an entry, all of that goes with it, so one bound covers every
per-series cache in the process.

Bound: at most `max_series` entries (the least recently seen are evicted
first) and none idle for longer than `idle_seconds` of window time (so replays
and simulated clocks agree). Metered as `bridge_series_tracked{owner}` and
`bridge_series_evicted_total{owner,reason}`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Protocol

from bridge import speedups

#: Attributes (labels) of a point: sorted (key, value) pairs, hashable.
Attrs = tuple[tuple[str, str], ...]

NS_PER_S = 1_000_000_000
DEFAULT_MAX_SERIES = 200_000
DEFAULT_IDLE_SECONDS = 3600.0

_slots = itertools.count(1)


def new_slot() -> int:
    """A key no other consumer uses, for what a consumer keeps in `Series.memo`."""
    return next(_slots)


class Memo(Protocol):
    """What consumers may do with a series' memo: the dict methods they use, keyed by their slots."""

    def get(self, slot: int, default: Any = None, /) -> Any: ...
    def pop(self, slot: int, default: Any = None, /) -> Any: ...
    def values(self) -> Any: ...
    def __getitem__(self, slot: int, /) -> Any: ...
    def __setitem__(self, slot: int, value: Any, /) -> None: ...
    def __len__(self) -> int: ...


#: A new series' memo: the C extension's Memo (a quarter of a dict's memory: 14 MB at 100k series), else a dict.
new_memo: Callable[[], Memo] = speedups.native.Memo if speedups.native is not None else dict


class Series:
    """One series: identity plus what the source and every consumer remember about it."""

    __slots__ = ("attributes", "family", "key", "last", "lifted", "members", "memo", "seen_ns")

    def __init__(
        self,
        family: str,
        key: Hashable,
        attributes: Attrs,
        lifted: Attrs = (),
        members: dict[Hashable, Series] | None = None,
    ) -> None:
        self.family = family
        self.key = key
        self.attributes = attributes
        #: resource labels taken off the attributes (the Cerebras organization), put back if they differ
        self.lifted = lifted
        self.seen_ns = 0  # window end of the last observation
        #: cumulative series: the source's counter state (bridge/series/counter.py; its start is the series' start)
        self.last: Any = None
        self.memo: Memo = new_memo()
        #: the family's live members, shared by every series of the family (carry-forward walks it)
        self.members: dict[Hashable, Series] = {} if members is None else members

    def __repr__(self) -> str:
        return f"Series({self.family!r}, {self.attributes!r})"


#: The Python class: what runs without the C extension, and the reference its Series is held equal to.
PythonSeries = Series
if speedups.native is not None:  # the same attributes in C, made without running Python code (tests/test_speedups.py)
    Series = speedups.native.Series  # type: ignore[misc]


def python_memo_fill(entries: list[Series], slot: int, cache: dict[Attrs, Any], make: Callable[[Attrs], Any]) -> bool:
    """Where an entry's memo has nothing at `slot`, keep there the value its attributes give: what `cache` holds
    for them, made by `make` and cached on a miss. Whether any entry had nothing. For what a consumer derives
    from attributes alone (an encoded identity), made once per label set however many series share it. The
    reference of the C extension's memo_fill, and what runs without it."""
    new = [entry for entry in entries if entry.memo.get(slot) is None]
    for entry in new:
        value = cache.get(entry.attributes)
        if value is None:
            value = cache[entry.attributes] = make(entry.attributes)
        entry.memo[slot] = value
    return bool(new)


memo_fill: Callable[[list[Series], int, dict[Attrs, Any], Callable[[Attrs], Any]], bool] = (
    speedups.native.memo_fill if speedups.native is not None else python_memo_fill
)


def python_mark_seen(entries: list[Series], end_ns: int) -> None:
    """Each entry observed at `end_ns` (a scrape's window end): the reference of the C extension's mark_seen,
    and what runs without it. A call per scrape and family, where a loop per series cost 0.02 s at 100k."""
    for entry in entries:
        entry.seen_ns = end_ns


mark_seen: Callable[[list[Series], int], None] = (
    speedups.native.mark_seen if speedups.native is not None else python_mark_seen
)


class SeriesTable:
    """Interned series of one owner (a source, or the shared table for series built from points)."""

    def __init__(
        self, owner: str, *, max_series: int = DEFAULT_MAX_SERIES, idle_seconds: float = DEFAULT_IDLE_SECONDS
    ) -> None:
        self.owner = owner
        self.bound(max_series, idle_seconds)
        self._families: dict[str, dict[Hashable, Series]] = {}
        self._size = 0
        self._last_sweep_ns = 0
        self.evictions = 0  # grows with every eviction: who keeps references to entries checks it

    def bound(self, max_series: int, idle_seconds: float) -> None:
        self.max_series = max_series
        self.idle_ns = int(idle_seconds * NS_PER_S)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Series]:
        for members in self._families.values():
            yield from members.values()

    def get(self, family: str, key: Hashable) -> Series | None:
        members = self._families.get(family)
        return members.get(key) if members is not None else None

    def intern_all(self, family: str, keys: list[Attrs]) -> list[Series]:
        """The entries of a family's label sets, each new one with its labels as they came as its attributes."""
        members = self._families.get(family)
        if members is None:
            members = self._families[family] = {}
        if speedups.native is None:
            found = members.get
            return [found(key) or self.intern(family, key, key) for key in keys]
        before = len(members)
        series = speedups.native.intern_keys(members, family, keys)
        self._size += len(members) - before
        return series

    def intern(self, family: str, key: Hashable, attributes: Attrs, lifted: Attrs = ()) -> Series:
        """The entry for (family, key), created with these attributes if new."""
        members = self._families.get(family)
        if members is None:
            members = self._families[family] = {}
        series = members.get(key)
        if series is None:
            series = members[key] = Series(family, key, attributes, lifted, members)
            self._size += 1
        return series

    def sweep(self, now_ns: int) -> None:
        """Expire idle series, then evict the least recently seen past the bound; meter both.

        Idle expiry runs at most once per 1/10 of the idle time, so a scrape pays for it rarely.
        """
        from bridge import telemetry  # late: telemetry is heavy and the model imports this module

        if now_ns - self._last_sweep_ns >= self.idle_ns // 10:
            self._last_sweep_ns = now_ns
            expired = self._remove(seen_before=now_ns - self.idle_ns)
            if expired:
                telemetry.SERIES_EVICTED.labels(self.owner, "idle").inc(expired)
        excess = self._size - self.max_series
        if excess > 0:
            oldest = sorted(s.seen_ns for s in self)[excess - 1]
            evicted = self._remove(seen_before=oldest + 1, limit=excess)
            telemetry.SERIES_EVICTED.labels(self.owner, "limit").inc(evicted)
        telemetry.SERIES_TRACKED.labels(self.owner).set(self._size)

    def _remove(self, seen_before: int, limit: int | None = None) -> int:
        """Remove series last seen before `seen_before` (at most `limit`): a comprehension, not a predicate called
        per series, which made a first cycle's scan of 100k series cost 0.04 s."""
        removed = 0
        for name, members in list(self._families.items()):
            for key in [key for key, series in members.items() if series.seen_ns < seen_before]:
                if limit is not None and removed >= limit:
                    break
                del members[key]
                removed += 1
            if not members:
                del self._families[name]
        self._size -= removed
        self.evictions += removed
        return removed

    def clear(self) -> None:
        self.evictions += self._size
        self._families.clear()
        self._size = 0


#: Series of metrics built from points (plug-ins, tests, transforms that change attributes): interned by
#: their family name and sorted attributes, so consumers' memos survive from one batch to the next.
shared = SeriesTable("shared")
