"""Built-in sources; importing this module registers them."""

from bridge.sources import cerebras, file, prometheus, simulator  # noqa: F401
