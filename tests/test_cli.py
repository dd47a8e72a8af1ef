"""The metrics-bridge command, run as users run it (a real subprocess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bridge

CLI = [sys.executable, "-m", "bridge.cli"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, check=False, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_version() -> None:
    assert cli("--version").stdout.strip() == f"metrics-bridge {bridge.__version__}"


def test_validate_ok_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "sources:\n  cb:\n    type: cerebras\n    organization_id: org_x\nsinks:\n  out:\n    type: console\n"
    )
    ok = cli("validate", "-c", str(good), env={"CEREBRAS_API_KEY": "k-validate-1"})
    assert ok.returncode == 0 and "ok (1 source(s): cb; 1 sink(s): out)" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  cb:\n    type: cerebras\n    organisation_id: org_x\nsinks: {}\n")
    result = cli("validate", "-c", str(bad))
    assert result.returncode == 1
    assert "sources.cb.organisation_id: unknown key" in result.stderr
    assert "sources.cb.organization_id: required key is missing" in result.stderr
    assert "sinks: at least one sink is required" in result.stderr
    assert "Traceback" not in result.stderr


def test_once_dry_run_prints_what_would_be_sent() -> None:
    result = cli("once", "--dry-run")  # the embedded default: simulator -> console
    assert result.returncode == 0, result.stderr
    assert "=== sink console (console): 1 payload(s)" in result.stdout
    assert "endpoint            status  requests  success  failures" in result.stdout  # the summary layout


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_run_shows_a_window_at_once_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "stdout"
    with out.open("w") as stdout:
        process = subprocess.Popen([*CLI, "run"], stdout=stdout, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: "acme-llama-3.3-70b" in out.read_text())
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            process.kill()
            process.wait()
    assert "── demo · " in out.read_text() and " · 3 endpoints · " in out.read_text()


def test_sighup_reloads_and_refuses_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    first = tmp_path / "first.jsonl"
    second = tmp_path / "second.jsonl"
    base = f"sources:\n  demo:\n    type: simulator\nsinks:\n  a:\n    type: jsonl\n    path: {first}\n"
    config.write_text(base)
    process = subprocess.Popen(
        [*CLI, "run", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: first.exists() and first.stat().st_size > 0)
        config.write_text(base + "  b:\n    type: nonsense\n")
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        config.write_text(base + f"  b:\n    type: jsonl\n    path: {second}\n")
        process.send_signal(signal.SIGHUP)
        wait_for(second.exists)  # the new sink is started (its first window comes at the next minute)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        stderr = process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert "reload refused, keeping the running config: sinks.b.type: unknown sink type 'nonsense'" in stderr
    assert "config reloaded: 1 sources, 2 sinks" in stderr
