"""The optional C extension (bridge/_speedups.c) for the per-sample loops and the series memo, or None where
it is not built.

`pip install` compiles it when a C compiler is there and goes on without it otherwise (the extension is
`optional` in setup.py); the Python code it mirrors stays the reference, and tests/test_speedups.py
holds the two equal. `METRICS_BRIDGE_NO_SPEEDUPS=1` runs the Python code even where it is built.
"""

from __future__ import annotations

import os

__all__ = ["keep_large_blocks_mapped", "native"]

#: glibc's default mmap threshold, before it starts moving it
MMAP_THRESHOLD = 128 * 1024

if os.environ.get("METRICS_BRIDGE_NO_SPEEDUPS", "") in ("", "0"):
    try:
        from bridge import _speedups as native
    except ImportError:  # not built (no compiler at install time): the Python code runs
        native = None  # type: ignore[assignment]  # the module or None; the stub types the module
else:
    native = None  # type: ignore[assignment]


def keep_large_blocks_mapped() -> bool:
    """Fix glibc's mmap threshold at its default, so large blocks are returned to the system when freed.

    glibc raises the threshold to the largest mapped block freed so far (up to 32 MB). After the first big
    scrape, scrape bodies and request buffers of several MB come from the heap instead, whose freed pages
    it keeps: at 100k series, peak RSS settles about 20 MB above what is live (bench/RESULTS.md). A threshold
    the user set (MALLOC_MMAP_THRESHOLD_) is left alone; without the extension or glibc, nothing changes.
    """
    if native is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return native.fix_mmap_threshold(MMAP_THRESHOLD)
