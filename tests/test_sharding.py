"""Sharding: which replica runs which source (bridge/sharding.py), and N real processes sharing one config."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import sharding, telemetry
from bridge.config import ConfigError, parse_config
from bridge.context import Context
from bridge.pipeline import Pipeline
from bridge.sharding import ShardingConfig, shard_of
from tests.conftest import run, stop_processes, wait_for
from tests.servers import ExpositionServer, Response

CLI = [sys.executable, "-m", "bridge.cli"]


def _config(names: list[str], sharding_keys: dict[str, int] | None = None) -> dict[str, object]:
    data: dict[str, object] = {
        "sources": {name: {"type": "simulator"} for name in names},
        "sinks": {"out": {"type": "console"}},
    }
    if sharding_keys is not None:
        data["sharding"] = sharding_keys
    return data


@pytest.fixture
def no_shard_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The test machine's own HOSTNAME or SHARD_COUNT must not pick a shard for these tests."""
    for variable in ("SHARD_COUNT", "POD_NAME", "HOSTNAME"):
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


# ---------------------------------------------------------------- the assignment
def test_the_hash_is_prometheus_hashmod_and_pinned() -> None:
    """Pinned values: a change of hash would move every source to another replica on upgrade."""
    assert [shard_of(name, 3) for name in ("a", "b", "c", "d")] == [1, 0, 0, 2]
    assert shard_of("cerebras", 1000) == 484
    # Prometheus' hashmod: the MD5 sum's last 8 bytes as a big-endian uint64, modulo the count
    assert all(
        shard_of(name, 7) == int(hashlib.md5(name.encode()).hexdigest()[16:], 16) % 7 for name in ("x", "é", "s-1")
    )
    assert all(shard_of(f"s{i}", 1) == 0 for i in range(100))


def test_the_assignment_is_the_same_in_every_process() -> None:
    """Python's hash() is salted per process; the shard must not be."""
    script = "from bridge.sharding import shard_of; print([shard_of(f's{i}', 7) for i in range(200)])"
    answers = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "random")
    }
    assert answers == {str([shard_of(f"s{i}", 7) for i in range(200)]) + "\n"}


@pytest.mark.parametrize("count", [2, 3, 5, 16])
def test_every_source_has_exactly_one_shard_and_the_shards_are_balanced(count: int) -> None:
    names = [f"exporter-{i}" for i in range(300)]
    shares = [sharding.owned(names, ShardingConfig(count=count, index=i)) for i in range(count)]
    assert sorted(name for share in shares for name in share) == sorted(names)
    sizes = Counter(shard_of(f"exporter-{i}", count) for i in range(30_000))  # balanced within 10% (> 4 sigma)
    assert all(abs(sizes[i] - 30_000 / count) < 0.1 * 30_000 / count for i in range(count)), sizes


# ---------------------------------------------------------------- the config and the environment
def test_unsharded_by_default(no_shard_env: pytest.MonkeyPatch) -> None:
    assert parse_config(_config(["a"])).sharding == ShardingConfig(count=1, index=0)


def test_the_environment_gives_the_count_and_the_pod_name_the_index(no_shard_env: pytest.MonkeyPatch) -> None:
    no_shard_env.setenv("SHARD_COUNT", "3")
    no_shard_env.setenv("HOSTNAME", "metrics-bridge-1")
    assert parse_config(_config(["a"])).sharding == ShardingConfig(count=3, index=1)
    no_shard_env.setenv("POD_NAME", "metrics-bridge-2")  # the downward API's name wins over HOSTNAME
    assert parse_config(_config(["a"])).sharding == ShardingConfig(count=3, index=2)


def test_with_a_standby_pods_i_and_i_plus_count_share_shard_i(no_shard_env: pytest.MonkeyPatch) -> None:
    """The chart's ha mode: one StatefulSet of 2 x count pods, so a rolling update never takes a whole shard."""
    no_shard_env.setenv("SHARD_COUNT", "3")
    no_shard_env.setenv("POD_NAMESPACE", "ns")
    with_ha = {**_config(["a"]), "ha": {"enabled": True}}
    for pod, shard in (("metrics-bridge-1", 1), ("metrics-bridge-4", 1), ("metrics-bridge-5", 2)):
        no_shard_env.setenv("POD_NAME", pod)
        config = parse_config(with_ha)
        assert config.sharding == ShardingConfig(count=3, index=shard)
        assert config.ha.lease_name == f"metrics-bridge-shard-{shard}" and config.ha.identity == pod
    with pytest.raises(ConfigError) as caught:  # without a standby a 4th pod of 3 shards is a mistake, as before
        parse_config(_config(["a"]))
    assert (
        "sharding.index (from POD_NAME metrics-bridge-5): 5 is not in [0, 3) (the shard count)" in caught.value.problems
    )


def test_the_config_wins_over_the_environment(no_shard_env: pytest.MonkeyPatch) -> None:
    no_shard_env.setenv("SHARD_COUNT", "3")
    no_shard_env.setenv("POD_NAME", "metrics-bridge-2")
    assert parse_config(_config(["a"], {"count": 4, "index": 3})).sharding == ShardingConfig(count=4, index=3)
    assert parse_config(_config(["a"], {"index": 0})).sharding == ShardingConfig(count=3, index=0)


@pytest.mark.parametrize(
    ("keys", "env", "problem"),
    [
        ({"count": 3, "index": 3}, {}, "sharding.index: 3 is not in [0, 3) (the shard count)"),
        ({"count": 0}, {}, "sharding.count: Input should be greater than or equal to 1"),
        ({"count": 2, "replicas": 2}, {}, "sharding.replicas: unknown key"),
        (None, {"SHARD_COUNT": "three"}, "SHARD_COUNT: 'three' is not a whole number"),
        (
            None,
            {"SHARD_COUNT": "3", "POD_NAME": "metrics-bridge-7"},
            "sharding.index (from POD_NAME metrics-bridge-7): 7 is not in [0, 3) (the shard count)",
        ),
        (
            None,
            {"SHARD_COUNT": "3", "HOSTNAME": "laptop"},
            "sharding.index: not set, and HOSTNAME 'laptop' does not end in a StatefulSet ordinal (-<n>)",
        ),
    ],
)
def test_a_shard_that_cannot_be_is_refused_naming_where_it_came_from(
    no_shard_env: pytest.MonkeyPatch, keys: dict[str, int] | None, env: dict[str, str], problem: str
) -> None:
    for variable, value in env.items():
        no_shard_env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(["a"], keys))
    assert problem in caught.value.problems


def test_validate_shows_the_shard_and_what_it_owns(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "sources:\n" + "".join(f"  {n}:\n    type: simulator\n" for n in "abcd") + "sinks:\n  o:\n    type: console\n"
    )
    env = {**os.environ, "SHARD_COUNT": "3", "POD_NAME": "metrics-bridge-0"}
    result = subprocess.run(
        [*CLI, "validate", "-c", str(config)], capture_output=True, text=True, check=False, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "shard 0/3: runs 2 of 4 source(s): b, c" in result.stdout


# ---------------------------------------------------------------- the pipeline
def _owned_metric() -> dict[str, float]:
    return {
        sample.labels["source"]: sample.value
        for family in telemetry.REGISTRY.collect()
        if family.name == "bridge_source_owned"
        for sample in family.samples
    }


def test_the_pipeline_builds_only_its_own_sources_and_a_reload_follows_the_shard(
    no_shard_env: pytest.MonkeyPatch,
) -> None:
    names = ["a", "b", "c", "d"]
    pipeline = Pipeline(parse_config(_config(names, {"count": 3, "index": 0})), Context())
    assert list(pipeline.sources) == ["b", "c"]  # a and d are never constructed here
    assert _owned_metric() == {"b": 1.0, "c": 1.0}
    assert telemetry.SHARD_SOURCES.labels("0/3")._value.get() == 2

    async def reload() -> None:
        await pipeline.start(schedule=False)
        try:
            await pipeline.reload(parse_config(_config(names, {"count": 3, "index": 1})))
        finally:
            await pipeline.stop(grace=0)

    run(reload())
    assert list(pipeline.sources) == ["a"]
    assert _owned_metric() == {"a": 1.0}
    shards = {
        s.labels["shard"] for f in telemetry.REGISTRY.collect() if f.name == "bridge_shard_sources" for s in f.samples
    }
    assert shards == {"1/3"}


# ---------------------------------------------------------------- N real processes, one config
SHARDS = 3
SOURCES = 30


def _metrics_port(log: Path) -> int | None:
    match = re.search(r"health server listening on 127\.0\.0\.1:(\d+)", log.read_text())
    return int(match.group(1)) if match else None


def _samples(port: int, family: str) -> dict[str, float]:
    """One family of a process's /metrics, by its `source` label."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = re.compile(rf'^{family}\{{(?:outcome="ok",)?source="([^"]+)"(?:,outcome="ok")?\}} (\S+)$', re.M)
    return {source: float(value) for source, value in pattern.findall(text)}


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[ExpositionServer, list[subprocess.Popen[bytes]], list[Path]]]:
    """A loopback exposition server with a path per source, and SHARDS bridge processes on one config."""
    with ExpositionServer() as server:
        lines = ["telemetry:\n  listen: 127.0.0.1:0\nsources:\n"]
        for i in range(SOURCES):
            url = server.route(f"/s{i:02d}", Response(body=f'up{{n="{i}"}} 1\n'))
            lines.append(f"  s{i:02d}:\n    type: prometheus\n    url: {url}\n    interval_seconds: 1\n")
            lines.append("    offset_seconds: 0\n")
        lines.append("sinks:\n  out:\n    type: console\n")
        config = tmp_path / "bridge.yaml"
        config.write_text("".join(lines))
        processes: list[subprocess.Popen[bytes]] = []
        logs = [tmp_path / f"replica-{i}.log" for i in range(SHARDS)]
        try:
            for index, log in enumerate(logs):
                env = {**os.environ, "SHARD_COUNT": str(SHARDS), "POD_NAME": f"metrics-bridge-{index}"}
                with log.open("wb") as stderr:
                    processes.append(
                        subprocess.Popen(
                            [*CLI, "run", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=stderr, env=env
                        )
                    )
            yield server, processes, logs
        finally:
            stop_processes(processes)


def test_n_processes_on_one_config_scrape_each_source_exactly_once(
    replicas: tuple[ExpositionServer, list[subprocess.Popen[bytes]], list[Path]],
) -> None:
    server, processes, logs = replicas
    paths = [f"/s{i:02d}" for i in range(SOURCES)]
    wait_for(lambda: all(_metrics_port(log) for log in logs), 60, "every replica serving /metrics")
    ports = [port for log in logs if (port := _metrics_port(log)) is not None]
    wait_for(lambda: all(server.requests_to(path) >= 3 for path in paths), 60, "every source scraped 3 times")

    owned = [_samples(port, "bridge_source_owned") for port in ports]
    scrapes = [_samples(port, "bridge_scrapes_total") for port in ports]
    owners = Counter(source for share in owned for source in share)
    assert owners == Counter({path.lstrip("/"): 1 for path in paths}), "each source owned by exactly one replica"
    for index, share in enumerate(owned):
        assert all(shard_of(source, SHARDS) == index for source in share)
        assert set(scrapes[index]) == set(share), f"replica {index} scraped only its own sources"
    assert all(process.poll() is None for process in processes)

    # None by two: two replicas on one source would double its rate (interval 1 s, aligned to the second).
    before = {path: server.requests_to(path) for path in paths}
    time.sleep(3.0)
    grown = {path: server.requests_to(path) - before[path] for path in paths}
    assert all(1 <= count <= 5 for count in grown.values()), grown
