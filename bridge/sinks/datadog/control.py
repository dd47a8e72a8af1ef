"""The control plane through datadog-api-client: API-key validation at start-up.

The data plane (series, service checks) is hand-encoded and sent with httpx,
because those go through the delivery queue, retries and spool with their
bytes fixed at prepare time; a one-off check like this one is where the
official client's convenience costs nothing. Its import does cost (the client
and urllib3 add about 3 MB resident), so it happens in the check, which only
`validate_api_key: true` runs.
"""

from __future__ import annotations

import asyncio

from bridge import secrets
from bridge.http import excerpt
from bridge.sinks.base import PermanentError, RetryableError


def _validate_blocking(base_url: str, api_key: str, timeout_seconds: float) -> None:
    from datadog_api_client import ApiClient, Configuration
    from datadog_api_client.v1.api.authentication_api import AuthenticationApi

    configuration = Configuration(host=base_url, request_timeout=timeout_seconds)
    configuration.api_key = {"apiKeyAuth": api_key}  # never forward an application key from $DD_APP_KEY
    with ApiClient(configuration) as client:
        AuthenticationApi(client).validate()


async def validate_api_key(base_url: str, api_key: str, timeout_seconds: float) -> None:
    """Ask Datadog whether the key is valid (GET /api/v1/validate).

    Raises PermanentError when Datadog rejects the key (401/403) and
    RetryableError when the answer could not be had (network, 5xx).
    """
    import urllib3
    from datadog_api_client.exceptions import ApiException

    try:
        await asyncio.to_thread(_validate_blocking, base_url, api_key, timeout_seconds)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise PermanentError(f"http_{exc.status}", "Datadog rejected the API key") from None
        reason = f"http_{exc.status}" if exc.status else "connection_error"
        raise RetryableError(reason, "API key validation failed") from None
    except urllib3.exceptions.HTTPError as exc:  # connection refused, TLS, timeouts (after the client's own retries)
        cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
        # the innermost error says what happened (refused, certificate verify failed); the key is in no message
        raise RetryableError("connection_error", secrets.redact(excerpt(f"{type(cause).__name__}: {cause}"))) from None
