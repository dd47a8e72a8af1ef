"""Run bulk work (a scrape turned into series, a batch into payloads) with the cyclic collector paused.

Why: CPython 3.11 runs a full collection whenever the objects that survived younger
collections grow by a quarter of the old generation. A first scrape of 100k series
allocates about 300k long-lived objects, so it set off four or five full passes over
the whole heap, 0.35 s of a 1.5 s first cycle, none of which found garbage
(bench/RESULTS.md). This work makes no reference cycles to reclaim; the collector
resumes when it returns and runs as usual between cycles.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


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
            gc.enable()

    return wrapper
