"""Fetchers: where a scrape source gets its exposition text. One part of a source, swapped by type.

- HttpFetcher: a GET through the Scraper (auth, TLS, whole-scrape timeout, bounded body);
- FileFetcher: a file on disk, read once or every interval (replay, backfill);
- the simulator's fetcher (bridge/sources/simulator.py) is an HttpFetcher whose
  server starts and stops with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bridge.auth import Auth, TLSConfig
from bridge.http import import_connection_modules
from bridge.sources.scrape import ScrapeError, Scraper, ScrapeResult


class Fetcher(Protocol):
    #: False once a finite fetcher (a file read once) has nothing more to give
    more: bool

    @property
    def url(self) -> str:
        """The URL (or file URI) a scrape reads."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, now: float, max_delay: float) -> ScrapeResult:
        """One read; raise ScrapeError (with the server's requested delay, capped at `max_delay`)."""
        ...


class HttpFetcher:
    def __init__(self, url: str, *, auth: Auth, tls: TLSConfig, timeout: float, max_body_bytes: int) -> None:
        self.url = url
        self.more = True
        self._settings = (auth, tls, timeout, max_body_bytes)
        self._scraper: Scraper | None = None

    async def start(self) -> None:
        auth, tls, timeout, max_body_bytes = self._settings
        self._scraper = Scraper(auth=auth, tls=tls, timeout=timeout, max_body_bytes=max_body_bytes)
        import_connection_modules()

    async def close(self) -> None:
        if self._scraper is not None:
            await self._scraper.close()
            self._scraper = None

    async def fetch(self, now: float, max_delay: float) -> ScrapeResult:
        if self._scraper is None:
            raise RuntimeError("start() first")
        return await self._scraper.fetch(self.url, now, max_delay=max_delay)


class FileFetcher:
    def __init__(self, path: str, *, once: bool) -> None:
        self.path = path
        self.url = Path(path).resolve().as_uri()
        self.more = True
        self._once = once

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to release."""

    async def fetch(self, now: float, max_delay: float) -> ScrapeResult:
        self.more = not self._once
        try:
            data = Path(self.path).read_bytes()  # noqa: ASYNC240  # a local replay file, read as is
        except OSError as exc:
            raise ScrapeError("file_unreadable", f"{self.path}: {exc.strerror}") from None
        text = data.decode("utf-8", "replace")
        is_om = text.rstrip().endswith("# EOF")
        return ScrapeResult(text, "application/openmetrics-text" if is_om else "text/plain")
