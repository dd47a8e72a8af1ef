"""The source contract: say when the next scrape is due, then produce a batch for a window."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from bridge.context import Context
from bridge.model import Batch
from bridge.schema import SourceConfig


class Source(abc.ABC):
    Config: ClassVar[type[SourceConfig]] = SourceConfig
    type_name: ClassVar[str]

    def __init__(self, name: str, config: Any, context: Context) -> None:
        self.name = name
        self.config = config
        self.context = context
        #: status the pipeline reports to /readyz: when the last collect succeeded, and why the last one failed
        self.last_success: float | None = None
        self.last_error: str | None = None
        #: what became of the last successful collect's window: "forwarded", "duplicate", None if not windowed
        self.last_window: str | None = None

    @property
    def interval_seconds(self) -> float:
        """How often it collects: readiness allows two intervals without a success."""
        return 60.0

    async def start(self) -> None:  # noqa: B027  # an optional hook: nothing to do by default
        """Open clients or servers; called once before the first collect."""

    async def close(self) -> None:  # noqa: B027  # an optional hook: nothing to do by default
        """Release everything start() opened."""

    @abc.abstractmethod
    def next_due(self, now: float) -> float | None:
        """When the next collect should run (unix seconds); None when the source is exhausted."""

    @abc.abstractmethod
    async def collect(self, now: float) -> Batch | None:
        """Produce the batch due at `now`, or None if there is nothing new to forward.

        Never raises for upstream trouble: failures are logged, counted and
        reflected in health; the scheduler simply asks again at next_due.
        """
