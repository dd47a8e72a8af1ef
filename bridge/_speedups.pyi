"""Type stub of the optional C extension bridge/_speedups.c (see bridge/speedups.py)."""

from array import array
from collections.abc import Callable, Hashable
from typing import Any

from bridge.model import Attrs
from bridge.parser import Sample as ParsedSample
from bridge.series.table import Series as Series  # re-exported: the C type has the Python class's attributes
from bridge.sinks.datadog.normalize import Sample

def recognise(
    text: str, learned: str, starts: array[int], lengths: array[int], samples: bytes, /
) -> list[float] | None: ...
def sample_run(
    lines: list[str],
    index: int,
    names: dict[str, str],
    cache: dict[str, Attrs],
    allowed: tuple[str, ...],
    samples: list[ParsedSample],
    sample_type: type[ParsedSample],
    /,
) -> int: ...
def intern_keys(members: dict[Hashable, Series], family: str, keys: list[Attrs], /) -> list[Series]: ...
def learn(text: str, /) -> tuple[bytes, bytes, bytes, list[float]] | None: ...
def frame_series(samples: list[Sample], start: int, stop: int, limit: int, /) -> tuple[bytes, int]: ...
def number_points(
    series: list[Series], values: list[float], starts: list[int], ends: list[int], slot: int, /
) -> bytes | None: ...
def own_heads(
    entries: list[Series],
    slot: int | None,
    tails: dict[Attrs, tuple[str, tuple[str, ...], str]],
    make_tail: Callable[[Attrs], tuple[str, tuple[str, ...], str]],
    prefixes: dict[str, str],
    make_prefix: Callable[[str], str],
    /,
) -> list[tuple[str, str]]: ...

class Memo:
    def get(self, slot: int, default: Any = None, /) -> Any: ...
    def pop(self, slot: int, default: Any = None, /) -> Any: ...
    def values(self) -> list[Any]: ...
    def __getitem__(self, slot: int, /) -> Any: ...
    def __setitem__(self, slot: int, value: Any, /) -> None: ...
    def __delitem__(self, slot: int, /) -> None: ...
    def __len__(self) -> int: ...
