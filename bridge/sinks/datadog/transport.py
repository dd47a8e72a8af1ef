"""HTTP to Datadog's intake (httpx) and what each answer means for delivery.

408, 429 and 5xx are retryable and carry Retry-After when Datadog sends it;
413 is its own error so the sink can split the body and try again; 400, 401,
403 and other 4xx are permanent and carry Datadog's error text (`errors`).
Each request is bounded as a whole by the sink's timeout, and only the start
of an answer is ever read: a backend that trickles or never ends its answer
costs one timeout, or a few KiB, never a stuck sink or the memory.
"""

from __future__ import annotations

import json

import httpx

from bridge.clock import Clock
from bridge.http import (
    ERROR_BODY_LIMIT,
    MAX_SERVER_DELAY,
    USER_AGENT,
    ExchangeError,
    Reply,
    excerpt,
    post_bounded,
    retry_after,
    tls_context,
)
from bridge.sinks.base import DeliveryError, PermanentError, RetryableError

_ERROR_TEXT_LIMIT = 500


class PayloadTooLarge(PermanentError):
    """413: permanent for this body, but its halves may go through."""


def error_text(reply: Reply) -> str:
    """Datadog's own words: `{"errors": [...]}` joined, else the start of the body."""
    try:
        errors = json.loads(reply.body).get("errors")
    except (ValueError, AttributeError):  # not JSON (or cut short), or not an object
        errors = None
    if isinstance(errors, list) and errors:
        return excerpt("; ".join(str(e) for e in errors), _ERROR_TEXT_LIMIT)
    return excerpt(reply.text, _ERROR_TEXT_LIMIT)


def classify(reply: Reply, now: float) -> DeliveryError | None:
    """None for success, else the error delivery should act on."""
    status = reply.status_code
    if reply.is_success:
        return None
    reason = f"http_{status}"
    if status == 413:
        return PayloadTooLarge(reason, error_text(reply))
    if status in (408, 429) or status >= 500:
        delay = retry_after(reply.headers, now, ceiling=MAX_SERVER_DELAY)
        return RetryableError(reason, error_text(reply), retry_after=delay)
    return PermanentError(reason, error_text(reply))


class Transport:
    """One pooled httpx client for a sink; `post` raises the classified DeliveryError."""

    def __init__(self, base_url: str, api_key: str, timeout_seconds: float, clock: Clock) -> None:
        self.base_url = base_url
        self.clock = clock
        self._headers = {"DD-API-KEY": api_key, "User-Agent": USER_AGENT, "Content-Type": "application/json"}
        self._timeout = timeout_seconds
        self._client: httpx.AsyncClient | None = None

    def _ensure_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url, headers=self._headers, timeout=self._timeout, verify=tls_context()
            )
        return self._client

    async def start(self) -> None:
        self._ensure_client()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post(self, path: str, body: bytes, content_encoding: str | None) -> None:
        """POST once, within `timeout_seconds` all told; of a 2xx, only a body small enough to keep the connection."""
        client = self._ensure_client()
        headers = {"Content-Encoding": content_encoding} if content_encoding else None
        try:
            reply = await post_bounded(
                client, path, body, headers=headers, deadline=self._timeout, success_limit=ERROR_BODY_LIMIT
            )
        except ExchangeError as exc:
            raise (RetryableError if exc.retryable else PermanentError)(exc.reason, exc.detail) from None
        error = classify(reply, self.clock.now())
        if error is not None:
            raise error
