"""Built-in sinks; importing this module registers them."""

from bridge.sinks import (  # noqa: F401
    console,
    datadog,
    jsonl,
    otlp,
)
