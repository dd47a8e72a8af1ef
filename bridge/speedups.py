"""The optional C extension (bridge/_speedups.c) for the per-line and per-sample loops, or None where it is not built.

`pip install` compiles it when a C compiler is there and goes on without it otherwise (the extension is
`optional` in setup.py); the Python code it mirrors stays the reference, and tests/test_speedups.py
holds the two equal. `METRICS_BRIDGE_NO_SPEEDUPS=1` runs the Python code even where it is built.
"""

from __future__ import annotations

import os

__all__ = ["native"]

if os.environ.get("METRICS_BRIDGE_NO_SPEEDUPS", "") in ("", "0"):
    try:
        from bridge import _speedups as native
    except ImportError:  # not built (no compiler at install time): the Python code runs
        native = None  # type: ignore[assignment]  # the module or None; the stub types the module
else:
    native = None  # type: ignore[assignment]
