"""One place that knows every secret value, so every output path can redact them.

Config loading registers each secret it resolves (API keys, tokens, passwords,
header values); the logging filter, error rendering and `validate` output pass
text through `redact` before it leaves the process.
"""

from __future__ import annotations

import threading

REDACTED = "***"
_MIN_LENGTH = 4  # shorter values would redact ordinary words
_lock = threading.Lock()
_secrets: set[str] = set()


def register(value: str | None) -> None:
    if value and len(value) >= _MIN_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    if not _secrets or not text:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
