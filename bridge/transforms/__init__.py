"""Built-in transforms; importing this module registers them."""

from bridge.transforms import filter, labels, rename  # noqa: F401
