"""Type stub of the optional C extension bridge/_speedups.c (see bridge/speedups.py)."""

from array import array

from bridge.model import Series
from bridge.sinks.datadog.normalize import Sample

def recognise(
    text: str, learned: str, starts: array[int], lengths: array[int], samples: bytes, /
) -> list[float] | None: ...
def frame_series(samples: list[Sample], start: int, stop: int, limit: int, /) -> tuple[bytes, int]: ...
def number_points(
    series: list[Series], values: list[float], starts: list[int], ends: list[int], slot: int, /
) -> bytes | None: ...
