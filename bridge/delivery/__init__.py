"""Per-sink delivery: bounded queue, worker, retries with backoff, age limit, SQLite spool, graceful stop.

runner.py is the whole policy; pending.py orders what is owed; spool.py keeps
it on disk; backoff.py says how long to wait. docs/reliability.md shows what
the fault suite (tests/faults/) proves about it.
"""

from bridge.delivery.runner import SinkRunner

__all__ = ["SinkRunner"]
