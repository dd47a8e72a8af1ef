"""HTTP plumbing the scrape and every transport share, written once so no copy can drift.

Everything here is about containment: an upstream or a backend may answer
anything, and none of it may stall, bloat or mute the bridge.

- `retry_after`: the server's requested delay (Retry-After as seconds or an
  HTTP date, `x-ratelimit-reset*`), always a finite number of seconds between
  0 and a ceiling the caller chooses; unreadable values are ignored, never raised.
- `read_bounded`: a response body read up to a byte limit *after*
  decompression, decompressing only as far as the limit (a 1 MiB gzip bomb
  costs at most the limit, not the gigabytes it expands to).
"""

from __future__ import annotations

import email.utils
import math
import zlib
from collections.abc import Mapping

import httpx

from bridge import __version__

USER_AGENT = f"metrics-bridge/{__version__}"
#: Bytes of an error (non-2xx) body read for the log: enough for any server's message.
ERROR_BODY_LIMIT = 4096
_EPOCH_THRESHOLD = 1e9  # an x-ratelimit-reset above this is a unix time, below it a duration


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


def excerpt(text: str, limit: int = 200) -> str:
    """The start of `text` for a log line, on one line, marked when cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"
