"""One place that knows every secret value, so every output path can redact them.

Config loading registers each secret it resolves (API keys, tokens, passwords,
header values); the logging filter, error rendering and `validate` output pass
text through `redact` before it leaves the process. A secret is registered with
the forms it may be printed in: verbatim, each of its lines, and escaped as
Python and JSON escape text (an HTTP library quoting a header as
`b'Bearer csk-...\\nrotated'` prints the escaped form, not the value).

A credential travels in an HTTP header, so it must be printable ASCII on one
line: `problem` says why a value is not (without quoting it), and `read_file`
reads a secret file, refusing such contents with an error naming the file.

Test-only switch: the tests prove that each planted secret reaches an output
*and* is redacted there, so they need to see the output unredacted too.
`_disable_for_tests()` does that in-process; a subprocess does it with the
environment variable `METRICS_BRIDGE_TESTS_ONLY_DISABLE_REDACTION` set to
`secrets-will-be-printed` (any other value is ignored). Never set it in production.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

REDACTED = "***"
_MIN_LENGTH = 4  # shorter values would redact ordinary words
TEST_SWITCH = "METRICS_BRIDGE_TESTS_ONLY_DISABLE_REDACTION"
TEST_SWITCH_VALUE = "secrets-will-be-printed"  # a value nobody sets by accident
_lock = threading.Lock()
_secrets: set[str] = set()
_longest_first: tuple[str, ...] | None = ()  # what `redact` replaces, longest first (None: to be sorted)
_enabled = os.environ.get(TEST_SWITCH) != TEST_SWITCH_VALUE


def _disable_for_tests() -> None:
    """Let registered secrets through `redact` in this process: only tests call this."""
    global _enabled  # noqa: PLW0603  # one module-wide switch, read by redact() without a lock
    _enabled = False


def _enable() -> None:
    """Undo `_disable_for_tests` (tests restore the default after themselves)."""
    global _enabled  # noqa: PLW0603  # one module-wide switch, read by redact() without a lock
    _enabled = True


def _printed_forms(value: str) -> set[str]:
    """The value as output may carry it: verbatim, line by line, and escaped by repr (str and bytes) and JSON."""
    forms = {value, repr(value)[1:-1], repr(value.encode())[2:-1], json.dumps(value)[1:-1]}
    forms.update(line.strip() for line in value.splitlines())
    return forms


def register(value: str | None) -> None:
    global _longest_first  # noqa: PLW0603  # swapped whole under _lock; redact() reads it without one
    if not value:
        return
    forms = {form for form in _printed_forms(value) if len(form) >= _MIN_LENGTH}
    with _lock:
        if not forms <= _secrets:
            _secrets.update(forms)
            _longest_first = None  # sorted again by the next redact: loading 100,000 secrets stays linear


def redact(text: str) -> str:
    if not _enabled:
        return text
    ordered = _longest_first  # one tuple, replaced whole: no lock needed to read it
    for secret in ordered if ordered is not None else _sorted_secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _sorted_secrets() -> tuple[str, ...]:
    global _longest_first  # noqa: PLW0603  # see register
    with _lock:
        if _longest_first is None:
            _longest_first = tuple(sorted(_secrets, key=len, reverse=True))
        return _longest_first


def problem(value: str) -> str | None:
    """Why `value` cannot be sent as a credential in an HTTP header, in words that never quote it; None if it can."""
    if "\n" in value or "\r" in value:
        return "contains a line break"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return "contains a control character"
    if not value.isascii():
        return "contains a non-ASCII character (HTTP headers are ASCII)"
    return None


def read_file(path: str) -> str:
    """A secret kept in a file: its trimmed contents, registered.

    OSError if the file cannot be read; ValueError naming the file (never the
    value) if the contents cannot go in a header, e.g. a key file with a second line.
    """
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: is not UTF-8 text") from None
    register(value)  # even a rejected value is redacted wherever it might still show up
    found = problem(value)
    if found:
        raise ValueError(f"{path}: {found}")
    return value
