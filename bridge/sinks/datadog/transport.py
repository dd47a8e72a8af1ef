"""HTTP to Datadog's intake (httpx) and what each answer means for delivery.

408, 429 and 5xx are retryable and carry Retry-After when Datadog sends it;
413 is its own error so the sink can split the body and try again; 400, 401,
403 and other 4xx are permanent and carry Datadog's error text (`errors`).
"""

from __future__ import annotations

import email.utils
import json

import httpx

from bridge import __version__
from bridge.clock import Clock
from bridge.sinks.base import DeliveryError, PermanentError, RetryableError

USER_AGENT = f"metrics-bridge/{__version__}"
_ERROR_TEXT_LIMIT = 500


class PayloadTooLarge(PermanentError):
    """413: permanent for this body, but its halves may go through."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def error_text(response: httpx.Response) -> str:
    """Datadog's own words: `{"errors": [...]}` joined, else the start of the body."""
    try:
        errors = response.json().get("errors")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)[:_ERROR_TEXT_LIMIT]
    return response.text[:_ERROR_TEXT_LIMIT].strip()


def classify(response: httpx.Response, now: float) -> DeliveryError | None:
    """None for success, else the error delivery should act on."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    reason = f"http_{status}"
    if status == 413:
        return PayloadTooLarge(reason, error_text(response))
    if status in (408, 429) or status >= 500:
        return RetryableError(reason, error_text(response), retry_after=parse_retry_after(
            response.headers.get("Retry-After"), now))
    return PermanentError(reason, error_text(response))


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
            self._client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout)
        return self._client

    async def start(self) -> None:
        self._ensure_client()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post(self, path: str, body: bytes, content_encoding: str | None) -> None:
        client = self._ensure_client()
        headers = {"Content-Encoding": content_encoding} if content_encoding else None
        try:
            response = await client.post(path, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetryableError("timeout", type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise RetryableError("connection_error", str(exc) or type(exc).__name__) from None
        error = classify(response, self.clock.now())
        if error is not None:
            raise error
