"""The `grafana_cloud` preset and the PromQL names Grafana users will type."""

from __future__ import annotations

import base64
import os
import re
from typing import Any

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from bridge import registry, secrets
from bridge.config import validate_component
from bridge.context import Context
from bridge.presets.cerebras import FAMILIES
from bridge.promnames import prometheus_name
from bridge.sinks.otlp import GrafanaCloudSink
from tests.conftest import run
from tests.readme_tables import table_under
from tests.receivers.otlp import HttpReceiver
from tests.test_otlp_wire import cerebras_batch, send

#: Cerebras family -> the name in Grafana, from README.md's table. Unit and type come from the source preset.
PROMQL_TABLE = table_under("What a Grafana user types in PromQL")
CEREBRAS_PROMQL_NAMES = {row["Cerebras family"]: row["PromQL name"] for row in PROMQL_TABLE}


def test_every_cerebras_family_is_pinned() -> None:
    assert set(CEREBRAS_PROMQL_NAMES) == set(FAMILIES)
    assert len(PROMQL_TABLE) == len(FAMILIES), "one row per family"


@pytest.mark.parametrize("row", [row for row in PROMQL_TABLE if row["example"]], ids=lambda row: row["PromQL name"])
def test_each_promql_example_queries_its_rows_name(row: dict[str, str]) -> None:
    assert re.search(rf"\b{row['PromQL name']}\b", row["example"]), row


@pytest.mark.parametrize(("family", "promql"), CEREBRAS_PROMQL_NAMES.items())
def test_cerebras_families_in_promql(family: str, promql: str) -> None:
    kind, _, unit = FAMILIES[family]
    assert prometheus_name(family, unit, "monotonic_sum" if kind == "counter" else "gauge") == promql


@pytest.mark.parametrize(
    ("name", "unit", "metric_type", "promql"),
    [
        # prometheus/otlptranslator's documented examples
        ("http.server.duration", "s", "histogram", "http_server_duration_seconds"),
        ("requests.count", "1", "monotonic_sum", "requests_count_total"),
        ("memory.usage", "By", "gauge", "memory_usage_bytes"),
        # the rule's corners
        ("system.network.io", "By/s", "monotonic_sum", "system_network_io_bytes_per_second_total"),
        ("queue.depth", "{request}", "sum", "queue_depth"),  # annotations add nothing; no _total when not monotonic
        ("tokens_total_by_model", "{token}", "monotonic_sum", "tokens_by_model_total"),  # `total` moves to the end
        ("cpu__ratio", "1", "gauge", "cpu_ratio"),  # runs of invalid characters collapse; no doubled suffix
        ("utilization", "1", "sum", "utilization"),  # _ratio is for gauges only
        ("temperature", "Cel", "gauge", "temperature_celsius"),
        ("requests", "{request}/s", "gauge", "requests_per_second"),
        ("5xx.errors", "", "monotonic_sum", "_5xx_errors_total"),
        ("api-latency", "ms", "summary", "api_latency_milliseconds"),
    ],
)
def test_the_otlp_to_prometheus_translation_rule(name: str, unit: str, metric_type: Any, promql: str) -> None:
    assert prometheus_name(name, unit, metric_type) == promql


def grafana(config: dict[str, Any]) -> tuple[Any, list[str]]:
    registry.load_builtins()
    problems: list[str] = []
    return validate_component(registry.sinks, {"type": "grafana_cloud", **config}, "sinks.grafana", problems), problems


def test_four_lines_of_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318")  # the preset is explicit
    config, problems = grafana({"zone": "prod-eu-west-2", "instance_id": 123456, "token": "glc_secret-token"})
    assert problems == []
    connection = config.connection()
    assert connection.url == "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp/v1/metrics"
    assert (connection.protocol, connection.gzip, connection.plaintext) == ("http/protobuf", True, False)
    credentials = base64.b64encode(b"123456:glc_secret-token").decode()
    assert connection.headers == {"authorization": f"Basic {credentials}"}
    assert secrets.redact(f"token glc_secret-token, header {credentials}") == "token ***, header ***"
    assert config.temporality == "cumulative"
    assert config.delivery.drain_order == "oldest_first"  # Mimir refuses out-of-order samples
    explicit, _ = grafana({"zone": "prod-eu-west-2", "instance_id": 1, "token": "t0ken",
                           "delivery": {"drain_order": "newest_first"}})  # fmt: skip
    assert explicit.delivery.drain_order == "newest_first"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"instance_id": 1, "token": "t0ken"}, "give exactly one of zone"),
        ({"instance_id": 1, "token": "t0ken", "zone": "prod-us-east-0", "endpoint": "https://x/otlp"}, "exactly one"),
        ({"instance_id": 1, "token": "t0ken", "zone": "prod-us-east-0", "temporality": "delta"}, "temporality"),
        ({"zone": "prod-us-east-0", "token": "t0ken"}, "instance_id: required key is missing"),
        ({"instance_id": 1, "token": "t0ken", "endpoint": "gateway/otlp"}, "needs an http:// or https:// URL"),
    ],
)
def test_preset_mistakes_are_config_errors(config: dict[str, Any], message: str) -> None:
    _, problems = grafana(config)
    assert len(problems) == 1 and problems[0].startswith("sinks.grafana") and message in problems[0]


def test_the_preset_sends_cumulative_sums_with_basic_auth_to_the_gateway_path() -> None:
    async def go() -> tuple[HttpReceiver, str]:
        async with HttpReceiver(path="/otlp/v1/metrics") as gateway:
            config, _ = grafana({"endpoint": f"{gateway.endpoint}/otlp", "instance_id": "42", "token": "tok-123"})
            sink = GrafanaCloudSink("grafana", config, Context())
            await sink.start()
            await send(sink, cerebras_batch(0, 100), cerebras_batch(1, 20))
            await sink.close()
            return gateway, sink.summary(sink.prepare(cerebras_batch(2)))

    gateway, summary = run(go())
    assert len(gateway.accepted) == 2 and all(r.compressed for r in gateway.received)
    assert gateway.received[0].headers["authorization"] == "Basic " + base64.b64encode(b"42:tok-123").decode()
    [first, second] = gateway.metrics("requests_count_total")
    assert second.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert second.sum.data_points[0].as_double == 120.0
    assert second.sum.data_points[0].start_time_unix_nano == first.sum.data_points[0].start_time_unix_nano
    assert "PromQL names: cache_rate_ratio, inference_endpoint_status, input_tokens_total" in summary


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
