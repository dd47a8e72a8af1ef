"""Per-sink delivery: bounded queue, worker, retries (and, later, the disk spool)."""

from bridge.delivery.runner import SinkRunner

__all__ = ["SinkRunner"]
