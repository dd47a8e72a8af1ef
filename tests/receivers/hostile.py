"""Hostile ways to send an answer, shared by the HTTP receivers (OTLP/HTTP, the Datadog intake).

The receiver decides *what* it answers (status, headers, body) as usual; a
Manner decides *how* it goes out:

    trickle(0.2)                 one byte every 0.2 s, from the status line on
    trickle(0.2, head=False)     the head at once, then the body one byte every 0.2 s
    endless()                    the answer as a chunked body, then filler chunks that never end

Every manner stops by itself: when the client hangs up, after `seconds`, or
(endless) after `max_bytes` of filler, so no test leaves a server thread
busy for long. The connection is closed afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Literal

_FILLER = b"filler of an answer that never ends\n" * 1820  # ~64 KiB per chunk


@dataclass(frozen=True)
class Manner:
    kind: Literal["trickle", "endless"]
    interval: float = 0.0  # trickle: seconds between bytes
    head: bool = True  # trickle: the head trickles too (else only the body)
    seconds: float = 30.0  # give up after this long, whatever the client does
    max_bytes: int = 512 * 2**20  # endless: filler bytes before giving up


def trickle(interval: float = 0.2, *, head: bool = True, seconds: float = 30.0) -> Manner:
    return Manner("trickle", interval=interval, head=head, seconds=seconds)


def endless(*, seconds: float = 30.0, max_bytes: int = 512 * 2**20) -> Manner:
    return Manner("endless", seconds=seconds, max_bytes=max_bytes)


def send(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes, manner: Manner) -> int:
    """Send the answer `manner`'s way on `handler`'s connection; the bytes that went out before it stopped."""
    handler.close_connection = True
    give_up = time.monotonic() + manner.seconds
    if manner.kind == "trickle":
        data = _head(status, {**headers, "Content-Length": str(len(body))}) + body
        at_once = 0 if manner.head else len(data) - len(body)
        return _trickle(handler, data, at_once, manner.interval, give_up)
    first = _head(status, {**headers, "Transfer-Encoding": "chunked"}) + (_chunk(body) if body else b"")
    return _endless(handler, first, manner.max_bytes, give_up)


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _trickle(handler: BaseHTTPRequestHandler, data: bytes, at_once: int, interval: float, give_up: float) -> int:
    sent = 0
    try:
        handler.wfile.write(data[:at_once])
        sent = at_once
        while sent < len(data) and time.monotonic() < give_up:
            time.sleep(interval)
            handler.wfile.write(data[sent : sent + 1])
            sent += 1
    except OSError:  # the client gave up
        pass
    return sent


def _endless(handler: BaseHTTPRequestHandler, first: bytes, max_bytes: int, give_up: float) -> int:
    chunk = _chunk(_FILLER)
    sent = 0
    try:
        handler.wfile.write(first)
        sent = len(first)
        while sent < max_bytes and time.monotonic() < give_up:
            handler.wfile.write(chunk)
            sent += len(chunk)
        handler.wfile.write(b"0\r\n\r\n")
    except OSError:  # the client stopped reading and closed
        pass
    return sent
