"""What each answer from Datadog means for delivery, and the start-up key check through datadog-api-client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from bridge.clock import ManualClock
from bridge.context import Context
from bridge.http import MAX_SERVER_DELAY, Reply
from bridge.sinks.base import PermanentError, RetryableError
from bridge.sinks.datadog import DatadogSink, DatadogSinkConfig
from bridge.sinks.datadog.transport import (
    PayloadTooLarge,
    Transport,
    classify,
    error_text,
)
from tests.conftest import T0, run
from tests.datadog_support import API_KEY, wired
from tests.receivers.datadog_intake import VALIDATE_PATH, DatadogIntake


def response(status: int, body: str = '{"errors": ["Forbidden"]}', **headers: str) -> Reply:
    return Reply(status, httpx.Headers(headers), body.encode(), complete=True)


@pytest.mark.parametrize("status", [200, 202])
def test_success(status: int) -> None:
    assert classify(response(status, "{}"), T0) is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_answers_carry_retry_after(status: int) -> None:
    error = classify(response(status, **{"Retry-After": "12"}), T0)
    assert isinstance(error, RetryableError) and (error.reason, error.retry_after) == (f"http_{status}", 12.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_permanent_answers_carry_datadogs_text(status: int) -> None:
    error = classify(response(status, '{"errors": ["Invalid API key", "see docs"]}'), T0)
    assert isinstance(error, PermanentError) and not isinstance(error, PayloadTooLarge)
    assert (error.reason, error.detail) == (f"http_{status}", "Invalid API key; see docs")


def test_413_is_its_own_error_so_the_sink_can_split() -> None:
    error = classify(response(413, '{"errors": ["Payload too large"]}'), T0)
    assert isinstance(error, PayloadTooLarge) and error.reason == "http_413" and not error.retryable


def test_error_text_without_datadogs_json() -> None:
    assert error_text(response(502, "<html>Bad gateway</html>")) == "<html>Bad gateway</html>"
    assert error_text(response(500, '{"status": "error"}')) == '{"status": "error"}'


def test_retry_after_as_seconds_or_http_date_within_a_ceiling() -> None:
    def delay(value: str | None) -> float | None:
        error = classify(response(503, **({} if value is None else {"Retry-After": value})), T0)
        assert isinstance(error, RetryableError)
        return error.retry_after

    assert delay("7") == 7.0
    assert delay("0.5") == 0.5
    assert delay("-3") == 0.0
    assert delay(format_datetime(datetime.fromtimestamp(T0 + 90, UTC), usegmt=True)) == 90.0
    assert delay("Fri, 01 Jan 2100 00:00:00 GMT") == delay("1e12") == MAX_SERVER_DELAY
    assert delay("soon") is None
    assert delay(None) is None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_network_trouble_is_retryable(silent_port: int) -> None:
    async def post(url: str) -> RetryableError:
        transport = Transport(url, API_KEY, 0.2, ManualClock(T0))
        try:
            with pytest.raises(RetryableError) as failure:
                await transport.post("/api/v2/series", b"{}", None)
            return failure.value
        finally:
            await transport.close()

    assert run(post(f"http://127.0.0.1:{silent_port}")).reason == "timeout"
    assert run(post(f"http://127.0.0.1:{closed_port()}")).reason == "connection_error"


def test_api_key_validation_at_start() -> None:
    async def go() -> None:
        async with wired(validate_api_key=True) as w:  # a valid key: started
            assert [r.path for r in w.intake.requests] == [VALIDATE_PATH]
        clock = ManualClock(T0 + 65)
        with DatadogIntake({"the-right-key"}, clock=clock) as intake:
            with pytest.raises(PermanentError) as failure:
                async with wired(clock, intake, validate_api_key=True):
                    pass
            assert failure.value.reason == "http_403" and intake.url in failure.value.detail
            assert API_KEY not in str(failure.value)

    run(go())


def test_an_unreachable_datadog_does_not_stop_start_up(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        config = DatadogSinkConfig.model_validate(
            {
                "type": "datadog",
                "url": f"http://127.0.0.1:{closed_port()}",
                "api_key": API_KEY,
                "validate_api_key": True,
            }
        )
        sink = DatadogSink("dd", config, Context(clock=ManualClock(T0)))
        await sink.start()
        await sink.close()

    run(go())
    assert "could not validate the Datadog API key" in caplog.text
