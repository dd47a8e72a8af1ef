"""Hostile files and state never take the bridge down: damaged spools, window history from the future.

The spool cases run the real `metrics-bridge run` (a subprocess) on the embedded simulator with two
jsonl sinks, `durable` on the hostile spool_path and `plain` without a spool, and assert on what each
sink wrote, on the files, the log, /metrics and /readyz. The window-history cases read real state
files; readiness is driven through the real pipeline on a ManualClock.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge import telemetry
from bridge.clock import ManualClock
from bridge.config import parse_config
from bridge.context import Context, WindowLedger
from bridge.delivery.pending import Entry
from bridge.delivery.spool import Spool
from bridge.health import HealthState
from bridge.pipeline import Pipeline
from bridge.sinks.base import Payload
from tests.conftest import T0, run

ORG = "org_hostile"
KEY = f"cerebras:{ORG}"  # the simulator's key in the window history
YEAR_2100 = 4_102_444_800.0
MARKER = b'{"name":"recovered_marker","value":1}\n'


# ------------------------------------------------------------------ the real process
class Bridge:
    """`metrics-bridge run` in a subprocess, its log in a file, its health port read from that log."""

    def __init__(self, tmp: Path, spool_path: Path | None = None, state_path: Path | None = None) -> None:
        self.tmp = tmp
        durable: dict[str, Any] = {"type": "jsonl", "path": str(tmp / "durable.jsonl")}
        if spool_path is not None:
            durable["delivery"] = {"spool_path": str(spool_path)}
        config: dict[str, Any] = {
            "telemetry": {"listen": "127.0.0.1:0"},
            "sources": {"sim": {"type": "simulator", "organization_id": ORG}},
            "sinks": {"durable": durable, "plain": {"type": "jsonl", "path": str(tmp / "plain.jsonl")}},
        }
        if state_path is not None:
            config["state_path"] = str(state_path)
        self.config = tmp / "bridge.yaml"
        self.config.write_text(json.dumps(config))  # JSON is YAML
        self.log_path = tmp / "bridge.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> Self:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge.cli", "run", "-c", str(self.config), "--grace", "2"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_for(lambda: re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log()), "the health port in the log")
        self.port = int(re.findall(r"listening on 127\.0\.0\.1:(\d+)", self.log())[0])
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> int:
        """SIGTERM and wait, as an orchestrator does; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def running(self) -> bool:
        assert self.process is not None
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def points(self, sink: str) -> list[dict[str, Any]]:
        path = self.tmp / f"{sink}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def wait_for_points(self) -> None:
        """Both sinks wrote the first window (the simulator is scraped at start-up)."""
        wait_for(lambda: self.points("durable") and self.points("plain"), "points at both sinks")

    def metric(self, name: str, **labels: str) -> float | None:
        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return None


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def spool_with(path: Path, sink: str, sink_type: str, bodies: list[bytes]) -> None:
    """A real spool written by the bridge's own Spool, one payload per body, windows a minute apart."""

    async def write() -> None:
        spool = Spool(str(path), sink, sink_type)
        await spool.open()
        now_ns = int(time.time()) // 60 * 60 * 10**9
        for minute, body in enumerate(bodies):
            end_ns = now_ns - (len(bodies) - minute) * 60 * 10**9
            spool.add(Entry(minute, end_ns, 1, len(body), None), Payload(body, end_ns, 1))
        await spool.close()

    asyncio.run(write())


def rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM owner").fetchall() + db.execute("SELECT * FROM payloads").fetchall()


def memory_only_lines(log: str) -> list[str]:
    """The sink's one error line about running memory-only, up to the reason."""
    return re.findall(r"ERROR +bridge\.delivery\.runner: (.*?); running memory-only: ", log)


def moved_aside(spool: Path) -> list[Path]:
    """The damaged copies of the database (their -wal and -shm sit next to each)."""
    return sorted(p for p in spool.parent.glob(spool.name + ".damaged-*") if not p.name.endswith(("-wal", "-shm")))


# ------------------------------------------------------------------ a damaged spool
def truncated_spool(spool: Path) -> dict[str, bytes]:
    spool_with(spool, "durable", "jsonl", [random.Random(1).randbytes(3000) for _ in range(20)])
    spool.write_bytes(spool.read_bytes()[: spool.stat().st_size // 2])
    return {"": spool.read_bytes(), "-shm": b""}


def random_bytes_spool(spool: Path) -> dict[str, bytes]:
    """Not a database, with a write-ahead log and shared-memory file next to it."""
    noise = random.Random(2)
    files = {suffix: noise.randbytes(5000) for suffix in ("", "-wal", "-shm")}
    for suffix, data in files.items():
        spool.with_name(spool.name + suffix).write_bytes(data)
    return files


@pytest.mark.parametrize("damage", [truncated_spool, random_bytes_spool], ids=["truncated", "random_bytes"])
def test_a_damaged_spool_is_moved_aside_and_the_sink_starts_on_an_empty_one(
    tmp_path: Path, damage: Callable[[Path], dict[str, bytes]]
) -> None:
    spool = tmp_path / "spool" / "durable.db"
    spool.parent.mkdir()
    original = damage(spool)
    with Bridge(tmp_path, spool_path=spool) as bridge:
        bridge.wait_for_points()
        assert bridge.running()
        assert bridge.metric("bridge_delivery_spool_failures_total", sink="durable", reason="damaged") == 1
        readyz = bridge.get("/readyz")
        assert readyz.status_code == 200, "the sink is durable again: a note, not a reason to be unready"
        assert re.search(
            r"^sink durable: spool \S+ was damaged \(.+\); moved aside to \S+, started empty$",
            readyz.text,
            re.MULTILINE,
        ), readyz.text
        assert bridge.stop() == 0
    [copy] = moved_aside(spool)
    moved = {suffix: copy.with_name(copy.name + suffix).read_bytes() for suffix in original}
    del moved["-shm"], original["-shm"]  # every file moved; the -shm is an index SQLite rebuilds, no data of its own
    assert moved == original
    assert rows(spool)[:1] == [("durable", "jsonl")], "a sound spool of this sink took its place"
    assert bridge.points("durable") == bridge.points("plain")
    log = bridge.log()
    assert log.count("was damaged") == 1 and f"moved aside to {copy}" in log
    assert "Traceback" not in log


# ------------------------------------------------------------------ a spool that cannot be used
def directory_spool(tmp: Path) -> tuple[Path, str]:
    spool = tmp / "spool-dir"
    spool.mkdir()
    (spool / "keep.txt").write_text("an operator's file")
    return spool, f"spool {spool} is a directory, not a file"


def spool_under_a_file(tmp: Path) -> tuple[Path, str]:
    """Fails for root too, unlike a chmod."""
    (tmp / "afile").write_text("a regular file")
    return tmp / "afile" / "spool.db", f"spool {tmp}/afile/spool.db cannot be created ({tmp}/afile is a file)"


@pytest.mark.parametrize("hostile", [directory_spool, spool_under_a_file], ids=["a_directory", "under_a_file"])
def test_a_spool_that_cannot_be_opened_leaves_its_sink_delivering_memory_only_and_the_bridge_unready(
    tmp_path: Path, hostile: Callable[[Path], tuple[Path, str]]
) -> None:
    spool, problem = hostile(tmp_path)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    with Bridge(tmp_path, spool_path=spool) as bridge:
        bridge.wait_for_points()
        assert bridge.running()
        assert bridge.metric("bridge_delivery_spool_failures_total", sink="durable", reason="unusable") == 1
        readyz = bridge.get("/readyz")
        assert readyz.status_code == 503
        assert readyz.text == f"sink durable: spool unusable ({problem}), running memory-only\n"
        assert bridge.stop() == 0
    assert bridge.points("durable") == bridge.points("plain")
    after = sorted(
        (p.name, p.read_bytes())
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix != ".jsonl" and p.name not in ("bridge.yaml", "bridge.log")
    )
    assert after == before, "nothing of the operator's was moved or written"
    log = bridge.log()
    assert memory_only_lines(log) == [f"sink durable: {problem}"] and "Traceback" not in log


@pytest.fixture
def unwritable_directory(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can rename in: chmod for a normal user; for root (tests run as root), chattr +i."""
    directory = tmp_path / "locked"
    directory.mkdir()
    (directory / "durable.db").write_bytes(b"not a database" * 400)
    if os.geteuid() != 0:
        directory.chmod(0o555)
    elif (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False).returncode != 0
    ):
        pytest.skip("root, and no chattr +i here: nothing makes a directory unwritable")
    try:
        yield directory
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


def test_a_damaged_spool_that_cannot_be_moved_aside_is_left_alone_and_the_sink_runs_memory_only(
    tmp_path: Path, unwritable_directory: Path
) -> None:
    spool = unwritable_directory / "durable.db"
    with Bridge(tmp_path, spool_path=spool) as bridge:
        bridge.wait_for_points()
        assert bridge.metric("bridge_delivery_spool_failures_total", sink="durable", reason="damaged") == 1
        readyz = bridge.get("/readyz")
        assert readyz.status_code == 503
        assert re.search(
            r"^sink durable: spool unusable \(spool \S+ is damaged \(file is not a database\) and could "
            r"not be moved aside \(.+\)\), running memory-only$",
            readyz.text,
            re.MULTILINE,
        ), readyz.text
        assert bridge.stop() == 0
    assert [p.name for p in unwritable_directory.iterdir()] == ["durable.db"]
    assert spool.read_bytes() == b"not a database" * 400
    assert bridge.points("durable") == bridge.points("plain")


def test_another_sinks_spool_is_left_untouched_and_this_sink_runs_memory_only(tmp_path: Path) -> None:
    """A renamed sink, or two sinks on one spool_path: moving another sink's payloads aside would lose them."""
    spool = tmp_path / "shared.db"
    spool_with(spool, "datadog", "datadog", [b"a payload datadog still owes"])
    before = rows(spool)
    with Bridge(tmp_path, spool_path=spool) as bridge:
        bridge.wait_for_points()
        assert bridge.metric("bridge_delivery_spool_failures_total", sink="durable", reason="other_sink") == 1
        readyz = bridge.get("/readyz")
        assert readyz.status_code == 503
        assert "holds payloads of sink 'datadog' (datadog), not of 'durable' (jsonl)" in readyz.text
        assert bridge.stop() == 0
    assert rows(spool) == before and not moved_aside(spool)
    assert bridge.points("durable") == bridge.points("plain")
    assert memory_only_lines(bridge.log()) == [
        (
            f"sink durable: spool {spool} holds payloads of sink 'datadog' "
            "(datadog), not of 'durable' (jsonl): give each sink its own spool_path"
        )
    ]


def test_unreadable_rows_are_dropped_and_counted_once_each_and_later_payloads_still_use_the_spool(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "durable.db"
    spool_with(spool, "durable", "jsonl", [b"tampered one\n", MARKER, b"tampered two\n"])
    with sqlite3.connect(spool) as db:
        assert db.execute("UPDATE payloads SET meta = 'not json' WHERE body != ?", (MARKER,)).rowcount == 2
    with Bridge(tmp_path, spool_path=spool) as bridge:
        wait_for(
            lambda: bridge.metric("bridge_delivery_spool_failures_total", sink="durable", reason="corrupt_row") == 2,
            "both unreadable rows",
        )
        wait_for(lambda: MARKER in (tmp_path / "durable.jsonl").read_bytes(), "the readable recovered payload")
        assert bridge.metric("bridge_delivery_evicted_payloads_total", sink="durable", reason="spool_error") == 2
        assert bridge.metric("bridge_delivery_spool_failures_total", sink="durable", reason="write_error") is None
        assert bridge.get("/readyz").status_code == 200
        assert bridge.stop() == 0
    durable = (tmp_path / "durable.jsonl").read_bytes()
    assert MARKER in durable and b"tampered" not in durable
    assert durable.replace(MARKER, b"") == (tmp_path / "plain.jsonl").read_bytes()
    assert rows(spool) == [("durable", "jsonl")], "every row, read or unreadable, is gone from the spool"
    log = bridge.log()
    assert log.count("a stored payload is unreadable") == 1
    assert "evicted (spool_error)" not in log and "Traceback" not in log


# ------------------------------------------------------------------ window history from the future
def test_a_window_history_from_the_future_is_ignored_and_windows_are_forwarded(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"delivered_window_ends": {KEY: YEAR_2100}}))
    with Bridge(tmp_path, state_path=state) as bridge:
        bridge.wait_for_points()
        assert bridge.metric("bridge_state_entries_ignored_total", reason="future") == 1
        assert bridge.metric("bridge_windows_total", source="sim", outcome="forwarded")
        assert bridge.get("/readyz").text == "ready\n"
        assert bridge.stop() == 0
    assert all(p["end_ns"] / 1e9 <= time.time() for p in bridge.points("plain"))
    assert json.loads(state.read_text())["delivered_window_ends"][KEY] <= time.time()
    warnings = [line for line in bridge.log().splitlines() if "ahead of the clock" in line]
    assert len(warnings) == 1 and KEY in warnings[0] and "2100-01-01T00:00:00Z" in warnings[0]


def test_an_entry_ahead_of_the_sources_clock_is_ignored_and_one_within_a_minute_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Judged by the Context's clock (here T0, weeks past the wall clock), not the wall clock."""
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"delivered_window_ends": {"near": T0 + 30, "far": T0 + 3600}}))
    context = Context(clock=ManualClock(T0), windows=WindowLedger(str(state)))
    assert context.windows.last("near") == T0 + 30
    assert context.windows.last("far") is None
    assert "far last forwarded a window ending 2027-01-15T09:00:00Z, ahead of the clock" in caplog.text
    context.windows.record("near", T0)
    assert json.loads(state.read_text()) == {"delivered_window_ends": {"near": T0}}, "the bad entry is not kept"


def test_each_bad_entry_is_ignored_on_its_own_and_the_rest_of_the_file_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.json"
    bad = {"text": "soon", "nan": math.nan, "inf": math.inf, "list": [60], "null": None, "huge": "1e999"}
    state.write_text(json.dumps({"delivered_window_ends": {"good": 120.0, **bad}}))  # NaN, Infinity as Python writes
    invalid_before = sample("bridge_state_entries_ignored_total", reason="invalid")
    ledger = WindowLedger(str(state))
    assert ledger.last("good") == 120.0
    assert [ledger.last(key) for key in bad] == [None] * len(bad)
    assert sample("bridge_state_entries_ignored_total", reason="invalid") - invalid_before == len(bad)
    for key in bad:
        assert f"of {key!r} is not a time; ignored" in caplog.text


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe not text", b"{not json", b"[1, 2]", b'{"delivered_window_ends": 5}', b"{}"],
    ids=["binary", "not_json", "a_list", "not_a_mapping", "empty"],
)
def test_a_state_file_that_is_not_a_window_history_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    state = tmp_path / "state.json"
    state.write_bytes(content)
    unreadable_before = sample("bridge_state_entries_ignored_total", reason="unreadable")
    ledger = WindowLedger(str(state))
    assert ledger.last("x") is None
    assert caplog.text.count("unreadable") == 1
    assert sample("bridge_state_entries_ignored_total", reason="unreadable") - unreadable_before == 1
    ledger.record("x", 60.0)
    assert WindowLedger(str(state)).last("x") == 60.0


def test_a_state_file_that_cannot_be_written_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "afile").write_text("a regular file")
    ledger = WindowLedger(str(tmp_path / "afile" / "state.json"))
    for end in (60.0, 120.0, 180.0):
        ledger.record("x", end)
    assert ledger.last("x") == 180.0, "kept in memory"
    assert caplog.text.count("not written") == 1


def sample(name: str, **labels: str) -> float:
    return telemetry.REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------ readiness when windows are all duplicates
def simulator_pipeline(tmp_path: Path, clock: ManualClock, sources: list[str]) -> Pipeline:
    config = parse_config(
        {
            "sources": {name: {"type": "simulator", "organization_id": ORG} for name in sources},
            "sinks": {"file": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")}},
        }
    )
    context = Context(clock=clock)
    context.health = HealthState(clock)
    return Pipeline(config, context)


def test_a_source_whose_windows_are_all_duplicates_makes_the_bridge_unready(tmp_path: Path) -> None:
    clock = ManualClock(T0 + 5)
    pipeline = simulator_pipeline(tmp_path, clock, ["muted"])
    health = pipeline.context.health
    assert health is not None

    async def go() -> list[tuple[bool, list[str]]]:
        await pipeline.start(schedule=False)
        states = []
        try:
            for _ in range(4):  # the first forwards the window; then the same window again and again
                await pipeline.collect(pipeline.sources["muted"])
                states.append(health.ready())
            await clock.advance(60)
            await pipeline.collect(pipeline.sources["muted"])
            states.append(health.ready())
        finally:
            await pipeline.stop()
        return states

    states = run(go())
    assert [ready for ready, _ in states] == [True, True, True, False, True]
    assert states[3][1] == [
        (
            "source muted: its last 3 windows were all dropped as already forwarded, and no source "
            "forwarded one meanwhile (is the window history in state_path ahead of the clock?)"
        )
    ]


def test_two_sources_on_one_organization_share_its_windows_without_looking_muted(tmp_path: Path) -> None:
    clock = ManualClock(T0 + 5)
    pipeline = simulator_pipeline(tmp_path, clock, ["first", "second"])
    health = pipeline.context.health
    assert health is not None
    duplicates_before = sample("bridge_windows_total", source="second", outcome="duplicate")

    async def go() -> list[bool]:
        await pipeline.start(schedule=False)
        readiness = []
        try:
            for _ in range(5):
                await pipeline.collect_all()
                readiness.append(health.ready()[0])
                await clock.advance(60)
        finally:
            await pipeline.stop()
        return readiness

    assert run(go()) == [True] * 5
    assert sample("bridge_windows_total", source="second", outcome="duplicate") - duplicates_before == 5
