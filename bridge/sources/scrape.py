"""HTTP scrape of a Prometheus-format endpoint: auth, TLS, timeout, size limit, gzip.

Failures come back as a ScrapeError with a short `outcome` (used as a log
reason and a metric label) and, where the server said so, when to retry.
Nothing here ever includes a credential in a message.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

from bridge import secrets
from bridge.auth import BasicAuth, BearerAuth, NoAuth, TLSConfig, auth_header, ssl_context
from bridge.http import (
    ERROR_BODY_LIMIT,
    USER_AGENT,
    BodyTooLarge,
    ExchangeError,
    excerpt,
    exchange_errors,
    read_bounded,
    retry_after,
)


class ScrapeError(Exception):
    def __init__(
        self, outcome: str, detail: str = "", *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(secrets.redact(f"{outcome}: {detail}" if detail else outcome))
        self.outcome = outcome
        self.status = status
        self.retry_after = retry_after


@dataclass
class ScrapeResult:
    text: str
    content_type: str


class Scraper:
    def __init__(
        self, *, auth: NoAuth | BearerAuth | BasicAuth, tls: TLSConfig, timeout: float, max_body_bytes: int
    ) -> None:
        self.auth = auth
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.client = httpx.AsyncClient(
            verify=ssl_context(tls),
            timeout=timeout,
            headers={
                "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=1",
                "Accept-Encoding": "gzip",
                "User-Agent": USER_AGENT,
            },
            follow_redirects=False,
        )

    async def fetch(self, url: str, now: float, *, max_delay: float) -> ScrapeResult:
        """One GET. `timeout` bounds the whole scrape, not each read: a trickling body is cut off too.

        `max_delay` caps what the server may ask us to wait (Retry-After and friends).
        asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        that arrives as the request completes, and a stop would then wait on this source forever.
        """
        try:
            headers = auth_header(self.auth)
        except OSError as exc:
            raise ScrapeError("credentials_unreadable", str(exc.strerror)) from None
        except ValueError as exc:  # undecodable or malformed credentials: the message names the file, never the value
            raise ScrapeError("credentials_unreadable", str(exc)) from None
        try:
            async with asyncio.timeout(self.timeout):
                with exchange_errors():
                    return await self._get(url, headers, now, max_delay)
        except TimeoutError:
            raise ScrapeError("timeout", f"no complete response within {self.timeout:g} s") from None
        except ExchangeError as exc:
            raise ScrapeError(exc.reason, exc.detail) from None

    async def _get(self, url: str, headers: dict[str, str], now: float, max_delay: float) -> ScrapeResult:
        async with self.client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                body = await read_bounded(response, ERROR_BODY_LIMIT, truncate=True)
                raise ScrapeError(
                    f"http_{response.status_code}",
                    _error_text(body.decode("utf-8", "replace")),
                    status=response.status_code,
                    retry_after=retry_after(response.headers, now, ceiling=max_delay),
                )
            try:
                body = await read_bounded(response, self.max_body_bytes)
            except BodyTooLarge as exc:
                raise ScrapeError("body_too_large", str(exc)) from None
            return ScrapeResult(body.decode("utf-8", "replace"), response.headers.get("content-type", ""))

    async def close(self) -> None:
        await self.client.aclose()


def _error_text(body: str) -> str:
    """The server's own error message when the body is Cerebras-style flat JSON, else its start."""
    try:
        data = json.loads(body)
    except ValueError:
        return excerpt(body.strip().splitlines()[0]) if body.strip() else ""
    if isinstance(data, dict):
        return excerpt(str(data.get("message") or data.get("error") or data))
    return excerpt(str(data))
