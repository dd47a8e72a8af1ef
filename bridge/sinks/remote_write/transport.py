"""One attempt to POST one snappy-compressed WriteRequest, and what its answer means.

As Prometheus' own remote-write client: 5xx and 429 are retried (honouring
Retry-After, capped), and so are timeouts and connection errors; every other
answer is permanent. A 400 is how receivers refuse samples they will never take
(out of order, too old, a duplicate timestamp with another value): retrying it
would stall the queue behind it forever, so the delivery layer logs it once with
the receiver's text, counts its samples as dropped and moves on.
"""

from __future__ import annotations

import httpx

from bridge.auth import auth_header, ssl_context
from bridge.clock import Clock
from bridge.http import MAX_SERVER_DELAY, USER_AGENT, ExchangeError, excerpt, post_bounded, retry_after
from bridge.sinks.base import DeliveryError, PermanentError, RetryableError
from bridge.sinks.remote_write.config import Connection

PROTOCOL_HEADERS = {
    "content-encoding": "snappy",
    "content-type": "application/x-protobuf",
    "x-prometheus-remote-write-version": "0.1.0",
    "user-agent": USER_AGENT,
}
_DETAIL_LIMIT = 300


def retryable_status(status_code: int) -> bool:
    return status_code == 429 or status_code >= 500


class RemoteWriteTransport:
    def __init__(self, connection: Connection, clock: Clock) -> None:
        self.connection = connection
        self.clock = clock  # for Retry-After as an HTTP date
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            verify=ssl_context(self.connection.tls), timeout=self.connection.timeout_seconds
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def headers(self) -> dict[str, str]:
        """Protocol headers, then the credentials (files re-read now), then the custom headers."""
        try:
            credentials = auth_header(self.connection.auth)
        except (OSError, ValueError) as exc:  # the messages name the file, never its contents
            raise RetryableError("credentials_unreadable", str(exc)) from None
        return {**PROTOCOL_HEADERS, **credentials, **self.connection.headers}

    async def send(self, body: bytes) -> None:
        """Send one compressed WriteRequest; raise RetryableError or PermanentError."""
        if self._client is None:
            raise RuntimeError("transport not started")
        try:
            reply = await post_bounded(
                self._client,
                self.connection.url,
                body,
                headers=self.headers(),
                deadline=self.connection.timeout_seconds,
                success_limit=0,  # a 2xx body carries nothing remote write 1.0 reads
            )
        except ExchangeError as error:
            raise _failure(error.reason, error.detail, retryable=error.retryable) from None
        if not reply.is_success:
            delay = retry_after(reply.headers, self.clock.now(), ceiling=MAX_SERVER_DELAY)
            retryable = retryable_status(reply.status_code)
            raise _failure(f"http_{reply.status_code}", reply.text, retryable=retryable, retry_after=delay)


def _failure(reason: str, detail: str, *, retryable: bool, retry_after: float | None = None) -> DeliveryError:
    error_type = RetryableError if retryable else PermanentError
    return error_type(reason, excerpt(detail, _DETAIL_LIMIT), retry_after=retry_after if retryable else None)
