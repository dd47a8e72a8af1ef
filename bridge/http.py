"""HTTP plumbing the scrape and every transport share, written once so no copy can drift.

Everything here is about containment: an upstream or a backend may answer
anything, and none of it may stall, bloat or mute the bridge.

- `retry_after`: the server's requested delay (Retry-After as seconds or an
  HTTP date, `x-ratelimit-reset*`), always a finite number of seconds between
  0 and a ceiling the caller chooses; unreadable values are ignored, never raised.
- `read_bounded`: a response body read up to a byte limit *after*
  decompression, decompressing only as far as the limit (a 1 MiB gzip bomb
  costs at most the limit, not the gigabytes it expands to).
- `post_bounded`: one POST bounded in time (a total deadline, where httpx's
  timeouts are per read) and in bytes (only as much of the answer as the
  caller needs), as the sinks' transports send.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import math
import os
import ssl
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx

from bridge import __version__

USER_AGENT = f"metrics-bridge/{__version__}"
#: Bytes of an error (non-2xx) body read for the log: enough for any server's message.
ERROR_BODY_LIMIT = 4096
#: The longest wait a transport passes on, whatever a server asks (the delivery layer caps it further, at
#: the sink's retry_max_seconds): no Retry-After or RetryInfo can put a sink to sleep for years.
MAX_SERVER_DELAY = 86_400.0
_EPOCH_THRESHOLD = 1e9  # an x-ratelimit-reset above this is a unix time, below it a duration


def _file_identity(path: str | None) -> tuple[str, int] | None:
    """A file as a cache key: its path and modification time, so a rotated certificate is read again."""
    if path is None:
        return None
    try:
        return path, os.stat(path).st_mtime_ns
    except OSError:
        return path, -1  # loading it below raises the real error


def tls_context(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None, *, alpn: str | None = None
) -> ssl.SSLContext:
    """A verifying client TLS context, shared by every client with the same files (and ALPN protocol).

    Loading the CA bundle costs about 1 MB and tens of milliseconds per context: one per
    source made 1,000 sources take minutes to start and most of a gigabyte to hold.
    `alpn` is for clients that do not set it themselves (gRPC's "h2"); httpx sets its own
    on every connection, so it must never share a context with them.
    """
    return _cached_tls_context(_file_identity(ca_file), _file_identity(cert_file), _file_identity(key_file), alpn)


@functools.lru_cache(maxsize=64)
def _cached_tls_context(
    ca: tuple[str, int] | None, cert: tuple[str, int] | None, key: tuple[str, int] | None, alpn: str | None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca[0] if ca else None)
    if cert is not None:
        context.load_cert_chain(cert[0], key[0] if key else None)
    if alpn is not None:
        context.set_alpn_protocols([alpn])
    return context


def clamp_delay(seconds: float | None, ceiling: float) -> float | None:
    """A server-requested delay made safe: None stays None (and so does NaN), else within [0, ceiling]."""
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(0.0, seconds), ceiling)


def _seconds_or_date(value: str, now: float) -> float | None:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError, OverflowError, IndexError):  # what a malformed or absurd date raises
        return None


def retry_after(headers: Mapping[str, str], now: float, *, ceiling: float) -> float | None:
    """Seconds the server asked us to wait, capped at `ceiling`; None when it asked nothing readable.

    Retry-After wins; otherwise the first readable `x-ratelimit-reset*` header
    (a unix time, or a duration with an optional `s`, as several APIs send it).
    """
    value = headers.get("retry-after")
    if value:
        delay = clamp_delay(_seconds_or_date(value.strip(), now), ceiling)
        if delay is not None:
            return delay
    for name, raw in headers.items():
        if not name.lower().startswith("x-ratelimit-reset"):
            continue
        try:
            reset = float(raw.strip().rstrip("s"))
        except ValueError:
            continue
        delay = clamp_delay(reset - now if reset > _EPOCH_THRESHOLD else reset, ceiling)
        if delay is not None:
            return delay
    return None


def import_connection_modules() -> None:
    """Import now what httpcore imports at its first connection: its anyio backend, and anyio's asyncio backend
    (26 modules, 33-45 ms here: bench/RESULTS.md).

    A source calls this when it starts, so its first scrape does not wait on imports that a running bridge
    holds after that scrape anyway. Both modules are private: should a release move them, nothing is imported
    early and nothing else changes.
    """
    with contextlib.suppress(ImportError):
        import anyio._backends._asyncio  # noqa: F401
        import httpcore._backends.anyio  # noqa: F401


class BodyTooLarge(Exception):
    """A body longer than the caller's limit (after decompression)."""


def _decompressor(content_encoding: str) -> zlib._Decompress | None:
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


async def read_bounded(response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes:
    """The decoded body, at most `limit` bytes: past it, raise BodyTooLarge or (truncate=True) stop reading.

    gzip and deflate are decoded here with `max_length`, so a compressed body
    never expands in memory beyond the limit; other encodings go through
    httpx's decoders chunk by chunk.
    """
    decoder = _decompressor(response.headers.get("content-encoding", ""))
    out = bytearray()
    if decoder is None:
        async for chunk in response.aiter_bytes():
            out += chunk
            if len(out) > limit:
                return _over(out, limit, truncate)
        return bytes(out)
    async for raw in response.aiter_raw():
        data = raw
        while data:
            try:
                out += decoder.decompress(data, limit + 1 - len(out))
            except zlib.error as exc:
                raise httpx.DecodingError(f"invalid {response.headers.get('content-encoding')} body: {exc}") from None
            if len(out) > limit:
                return _over(out, limit, truncate)
            data = decoder.unconsumed_tail
        if decoder.eof:
            break
    return bytes(out)


def _over(body: bytearray, limit: int, truncate: bool) -> bytes:
    if truncate:
        return bytes(body[:limit])
    raise BodyTooLarge(f"more than {limit} bytes")


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer's status and headers, and as much of its body as the caller needed."""

    status_code: int
    headers: httpx.Headers
    body: bytes
    complete: bool  # False: the body went on past the limit, or did not decode; `body` is what was read

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class ExchangeError(Exception):
    """A request that got no usable answer. `reason` is short and safe for a log line and a metric label."""

    def __init__(self, reason: str, detail: str, *, retryable: bool) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


@contextlib.contextmanager
def exchange_errors() -> Iterator[None]:
    """httpx's exceptions as ExchangeError, with the reasons every source and sink reports.

    timeout and connection_error are worth a retry; bad_encoding (a body that does
    not decode) is too, the next answer may be whole; bad_request (a URL or header
    httpx cannot send, e.g. a non-ASCII token) never is.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ExchangeError("timeout", type(exc).__name__, retryable=True) from None
    except httpx.DecodingError as exc:
        raise ExchangeError("bad_encoding", str(exc), retryable=True) from None
    except httpx.TransportError as exc:
        raise ExchangeError("connection_error", str(exc) or type(exc).__name__, retryable=True) from None
    except (httpx.InvalidURL, UnicodeEncodeError) as exc:  # never str(exc): it may quote the header value
        raise ExchangeError("bad_request", type(exc).__name__, retryable=False) from None


async def post_bounded(
    client: httpx.AsyncClient,
    url: str,
    content: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    deadline: float,
    success_limit: int,
) -> Reply:
    """POST and read the answer, the whole exchange within `deadline` seconds; ExchangeError when there is none.

    httpx's timeouts bound each read, so a server sending a byte every few
    seconds never trips them; the deadline bounds the lot. Of the body, at most
    `success_limit` bytes of a 2xx and ERROR_BODY_LIMIT of anything else are
    read: the rest never is (the connection is closed instead), so an endless
    body costs no more than the limit. asyncio.timeout, not wait_for: on Python
    3.11 wait_for can swallow a cancellation that arrives as the request completes.
    """
    try:
        async with asyncio.timeout(deadline):
            with exchange_errors():
                async with client.stream("POST", url, content=content, headers=headers) as response:
                    limit = success_limit if response.is_success else ERROR_BODY_LIMIT
                    try:
                        body = await read_bounded(response, limit + 1, truncate=True)
                    except httpx.DecodingError:
                        body = None
    except TimeoutError:
        raise ExchangeError("timeout", f"no complete answer within {deadline:g} s", retryable=True) from None
    if body is None:
        return Reply(response.status_code, response.headers, b"", complete=False)
    return Reply(response.status_code, response.headers, body[:limit], complete=len(body) <= limit)


def excerpt(text: str, limit: int = 200) -> str:
    """The start of `text` for a log line, on one line, marked when cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"
