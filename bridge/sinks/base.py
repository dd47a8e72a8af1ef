"""The sink contract: normalise + encode once per batch, deliver (with retries) many times.

`prepare` runs once per batch, in window order, and may keep per-series state
(cumulative accumulation, cumulative->delta). Its output, a list of Payloads,
is final: the delivery layer queues, spools and re-sends those exact bytes, so
a retry or a restart re-sends the same points with the same timestamps.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bridge.context import Context
from bridge.model import Batch
from bridge.schema import SinkConfig


@dataclass(slots=True)
class Payload:
    """One request's worth of encoded data for one sink."""

    body: bytes
    window_end_ns: int  # the newest point's window end: age limits and newest-first draining
    points: int
    meta: dict[str, str] = field(default_factory=dict)  # sink-specific (content type, endpoint path, ...)


class DeliveryError(Exception):
    """A failed delivery. `reason` is short and safe to log and to use as a metric label."""

    retryable: ClassVar[bool] = False

    def __init__(self, reason: str, detail: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class RetryableError(DeliveryError):
    retryable = True


class PermanentError(DeliveryError):
    retryable = False


class Sink(abc.ABC):
    Config: ClassVar[type[SinkConfig]] = SinkConfig
    type_name: ClassVar[str]
    #: points older than this cannot be accepted by the backend (None: no limit)
    default_max_age_seconds: ClassVar[float | None] = None

    def __init__(self, name: str, config: Any, context: Context) -> None:
        self.name = name
        self.config = config
        self.context = context

    async def start(self) -> None:  # noqa: B027  # an optional hook: nothing to do by default
        """Open connections; called once before the first delivery."""

    async def close(self) -> None:  # noqa: B027  # an optional hook: nothing to do by default
        """Release connections."""

    @abc.abstractmethod
    def prepare(self, batch: Batch) -> list[Payload]:
        """Normalise and encode one batch. No I/O."""

    @abc.abstractmethod
    async def deliver(self, payload: Payload) -> int | None:
        """Send one payload; raise RetryableError or PermanentError on failure.

        May return how many of its points the backend refused while accepting the
        request (OTLP partial success), so they are not counted as delivered.
        With `delivery.max_in_flight` above 1, calls for payloads of different
        sources run at the same time: keep no per-call state on the sink.
        """

    def describe(self, payload: Payload) -> str:
        """What `once --dry-run` prints for a payload."""
        return payload.body.decode("utf-8", "replace")

    def summary(self, payloads: list[Payload]) -> str:
        """Optional extra dry-run line (e.g. billing-relevant counts)."""
        return ""
