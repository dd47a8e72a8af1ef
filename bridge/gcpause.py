"""Run bulk work (a scrape turned into series, a batch into payloads) with the cyclic collector paused.

Why: CPython 3.11 runs a full collection whenever the objects that survived younger
collections grow by a quarter of the old generation. A first scrape of 100k series
allocates about 300k long-lived objects, so it set off four or five full passes over
the whole heap, 0.35 s of a 1.5 s first cycle, none of which found garbage
(bench/RESULTS.md). This work makes no reference cycles to reclaim; the collector
resumes when it returns and runs as usual between cycles.

What such work leaves behind is the series table: state that lives as long as its
series. Left in the young generation, it is walked by the next young collection and
again by the middle one before it reaches the old generation, 0.05-0.07 s at 100k
series, finding nothing. So when the work left more than `PROMOTE_AFTER` objects, they
go straight to the old generation (`gc.freeze()` then `gc.unfreeze()`, two list splices):
they stay collectable there, by the full collections the collector's own rule calls.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: New tracked objects (the young generation's count) past which paused work's survivors are promoted:
#: fourteen young collections' worth at CPython's default threshold of 700. A steady cycle, or a Cerebras
#: organisation's first scrape (about 30 series), leaves far fewer.
PROMOTE_AFTER = 10_000


def paused(function: Callable[P, R]) -> Callable[P, R]:
    """`function` with automatic collection off while it runs (left off if it already was)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return function(*args, **kwargs)
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            promote_survivors()
            gc.enable()

    return wrapper


def promote_survivors() -> None:
    """Move every tracked object to the old generation if the young one holds more than PROMOTE_AFTER.

    Skipped when anything is frozen already: `gc.unfreeze()` would thaw what its owner froze on purpose
    (before a fork, say).
    """
    if gc.get_count()[0] > PROMOTE_AFTER and not gc.get_freeze_count():
        gc.freeze()
        gc.unfreeze()
