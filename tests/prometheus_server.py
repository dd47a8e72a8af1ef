"""Debian's /usr/bin/prometheus on a free loopback port, for the tests that hold the bridge to Prometheus itself."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

PROMETHEUS = Path("/usr/bin/prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_prometheus(
    workdir: Path, config: str, *flags: str, ready: Callable[[str], bool] | None = None
) -> Iterator[str]:
    """Prometheus with this config, its base URL once `ready(url)` holds (default: /-/ready); stopped on exit."""
    (workdir / "prometheus.yml").write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
                *flags,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 90
            while not (ready or _answers_ready)(url):
                assert process.poll() is None, f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}"
                assert time.monotonic() < deadline, "prometheus never became ready"
                time.sleep(0.2)
            yield url
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill what does not end within 15 s."""
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _answers_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
