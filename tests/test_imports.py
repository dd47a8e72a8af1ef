"""An opt-in feature costs no import until a config names it (issue #10: idle memory).

Each case is a fresh interpreter that loads a config and builds the pipeline as
`run` does, without starting anything (no socket is opened), then reports
sys.modules: what an earlier test imported cannot hide a regression. Memory
itself is measured by bench/bench_idle.py, not here (the machine is shared).
zstandard is not checked: httpx imports it whenever it is installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

#: What `run` imports and builds before it starts the pipeline (bridge/cli.py: main, _run).
PROBE = """
import json, sys

import bridge
import bridge.cli
from bridge.config import load_config
from bridge.context import Context, WindowLedger
from bridge.health import HealthState
from bridge.pipeline import Pipeline

config = load_config(sys.argv[1])
context = Context(windows=WindowLedger(config.state_path))
context.health = HealthState(context.clock)
Pipeline(config, context)
print(json.dumps({"bridge": bridge.__file__, "modules": sorted(sys.modules)}))
"""

SOURCE = {"scrape": {"type": "prometheus", "url": "http://127.0.0.1:9/metrics"}}
JSONL = {"out": {"type": "jsonl", "path": "/dev/null"}}
OTLP_HTTP = {"collector": {"type": "otlp", "protocol": "http/protobuf", "endpoint": "http://127.0.0.1:9"}}
OTLP_GRPC = {"collector": {"type": "otlp", "protocol": "grpc", "endpoint": "http://127.0.0.1:9"}}
DATADOG = {"dd": {"type": "datadog", "url": "http://127.0.0.1:9", "api_key": "test-dd-key"}}

#: The heavy packages of each opt-in feature.
GRPCIO = "grpc"  # never: OTLP/gRPC is spoken on h2 (bridge/sinks/otlp/unary.py)
H2 = "h2"
PROTOBUF = "google.protobuf"  # only for histograms, summaries and the CLI's views of a request
DATADOG_CLIENT = ("datadog_api_client", "urllib3")  # the API-key check's client, and its HTTP library
OTLP = ("opentelemetry", "bridge.sinks.otlp", H2)


def imported(tmp_path: Path, sinks: dict[str, Any]) -> set[str]:
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump({"sources": SOURCE, "sinks": sinks}))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)], capture_output=True, text=True, check=False, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["bridge"]).is_relative_to(REPO), report["bridge"]  # this checkout, not an installed copy
    modules = set(report["modules"])
    assert "bridge.sources.prometheus" in modules
    return modules


def test_a_prometheus_to_jsonl_bridge_imports_no_sink_it_does_not_use(tmp_path: Path) -> None:
    modules = imported(tmp_path, JSONL)
    assert "bridge.sinks.jsonl" in modules
    unused = [GRPCIO, PROTOBUF, *DATADOG_CLIENT, *OTLP, "bridge.sinks.datadog", "bridge.sinks.console"]
    unused.append("bridge.sources.simulator")
    assert [name for name in unused if name in modules] == []


@pytest.mark.parametrize(("sinks", "with_h2"), [(OTLP_HTTP, False), (OTLP_GRPC, True)], ids=["http", "grpc"])
def test_an_otlp_sink_loads_neither_grpcio_nor_protobuf_and_h2_only_for_grpc(
    tmp_path: Path, sinks: dict[str, Any], with_h2: bool
) -> None:
    modules = imported(tmp_path, sinks)
    assert "bridge.sinks.otlp" in modules  # the OTLP sink itself is there either way
    assert (H2 in modules) is with_h2
    assert [name for name in (GRPCIO, PROTOBUF, *DATADOG_CLIENT) if name in modules] == []


def test_the_datadog_sink_leaves_its_api_client_to_the_key_check(tmp_path: Path) -> None:
    """datadog-api-client is only for `validate_api_key: true`, at start-up, which this does not reach."""
    modules = imported(tmp_path, DATADOG)
    assert "bridge.sinks.datadog" in modules
    assert [name for name in [*DATADOG_CLIENT, GRPCIO, PROTOBUF, *OTLP] if name in modules] == []


#: A scrape source started, as `run` starts it, with nothing fetched yet.
STARTED = """
import asyncio, json, sys

from bridge.auth import NoAuth, TLSConfig
from bridge.sources.fetch import HttpFetcher

fetcher = HttpFetcher("http://127.0.0.1:9/metrics", auth=NoAuth(), tls=TLSConfig(), timeout=1.0, max_body_bytes=1)
before = set(sys.modules)
asyncio.run(fetcher.start())
print(json.dumps(sorted(set(sys.modules) - before)))
asyncio.run(fetcher.close())
"""


def test_a_scrape_source_imports_its_connection_modules_when_it_starts() -> None:
    """httpcore imports anyio's asyncio backend at its first connection: at start, not in the first scrape."""
    result = subprocess.run(
        [sys.executable, "-c", STARTED], capture_output=True, text=True, check=False, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert {"anyio._backends._asyncio", "httpcore._backends.anyio"} <= set(json.loads(result.stdout))


def test_each_builtin_type_lives_in_the_module_the_registry_imports_for_it() -> None:
    """The registry's table agrees with the decorators: each name gives its class, and no decorator adds a name."""
    probe = """
import json
from bridge import registry

kinds = (registry.sources, registry.transforms, registry.sinks)
listed = {kind.kind: kind.names() for kind in kinds}
found = {kind.kind: {name: kind.require(name).type_name for name in kind.names()} for kind in kinds}
registry.load_builtins()
print(json.dumps([listed, found, {kind.kind: kind.names() for kind in kinds}]))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    listed, found, after_loading_all = json.loads(result.stdout)
    assert listed == after_loading_all
    assert listed["sink"] == [
        "console", "datadog", "grafana_cloud", "grafana_cloud_prometheus", "jsonl", "otlp", "remote_write",
    ]  # fmt: skip
    assert all(name == type_name for names in found.values() for name, type_name in names.items())
