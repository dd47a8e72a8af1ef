"""Shared fixtures: fixture paths, the simulator, a scriptable exposition server."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import ManualClock
from bridge.simulator import CerebrasSimulator
from tests.servers import ExpositionServer

#: The project's own expositions (see fixtures/README.md): the tests need nothing outside the repository.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CEREBRAS_FIXTURES = FIXTURES / "cerebras"

#: A minute boundary far from "now", so ManualClock tests never depend on the wall clock.
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a minute boundary


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every live one, then wait for each (SIGKILL after 20 s): a test stops what it started."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll a condition on real processes or servers (20 times a second) until it holds, else fail naming it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + 5)


@pytest.fixture
def simulator(clock: ManualClock) -> Iterator[CerebrasSimulator]:
    with CerebrasSimulator(organization_id="org_test", api_key="test-key-123", clock=clock, seed=7) as sim:
        yield sim


@pytest.fixture
def exposition_server() -> Iterator[ExpositionServer]:
    with ExpositionServer() as server:
        yield server
