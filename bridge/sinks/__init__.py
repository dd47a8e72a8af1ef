"""Built-in sinks; importing this module registers them."""

from bridge.sinks import console, jsonl  # noqa: F401
