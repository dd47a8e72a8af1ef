"""Built-in sinks; importing this module registers them."""

from bridge.sinks import console, jsonl  # noqa: F401
from bridge.sinks import datadog  # noqa: F401
from bridge.sinks import otlp  # noqa: F401
