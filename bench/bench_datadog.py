"""Datadog encode throughput: the sink's hand-built v2 series bodies vs datadog-api-client's models.

Run: python bench/bench_datadog.py [--samples 100000]

Same Cerebras-shaped samples for every contender, in one run:
- encode (steady state): cached series identity -> one JSON fragment per point, framed under the size
  limits; what `prepare` spends on encoding once the series are known (the target: >= 90k series/s);
- prepare (steady state / first sight): the sink's whole prepare, normalise + encode + gzip;
- official models: MetricPayload / MetricSeries / MetricPoint built per point, then serialised to JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datadog_api_client.model_utils import data_to_dict
from datadog_api_client.v2.model.metric_intake_type import MetricIntakeType
from datadog_api_client.v2.model.metric_payload import MetricPayload
from datadog_api_client.v2.model.metric_point import MetricPoint
from datadog_api_client.v2.model.metric_series import MetricSeries

from bridge.clock import ManualClock
from bridge.context import Context
from bridge.model import NS_PER_S, Attrs, Batch, Kind, Metric, Point, Temporality
from bridge.sinks.datadog import DatadogSink, DatadogSinkConfig, encode
from bridge.sinks.datadog.normalize import Sample

WINDOW_START = 1_800_000_000
STATISTICS = ("avg", "p50", "p90", "p95", "p99")
COUNTS = ("requests_count_total", "requests_success_total", "input_tokens_total", "output_tokens_total")
LATENCIES = ("queue_time_seconds", "e2e_latency_seconds", "ttft_seconds", "tpot_seconds")
SAMPLES_PER_ENDPOINT = len(COUNTS) + 2 + len(LATENCIES) * len(STATISTICS) + 2


def cerebras_batch(samples: int, window_start: int) -> Batch:
    """Every Cerebras family for enough endpoints to make `samples` points."""
    start, end = window_start * NS_PER_S, (window_start + 60) * NS_PER_S
    endpoints = [f"acme-endpoint-{i:05d}" for i in range(-(-samples // SAMPLES_PER_ENDPOINT))]
    per_family: dict[str, list[tuple[Attrs, float]]] = {}
    for n, name in enumerate(endpoints):
        ep: Attrs = (("endpoint", name),)
        for family in COUNTS:
            per_family.setdefault(family, []).append((ep, 100.0 + n))
        per_family.setdefault("requests_failure_total", []).extend(
            [((*ep, ("http_code", "429")), 3.0), ((*ep, ("http_code", "503")), 1.0)]
        )
        for family in LATENCIES:
            per_family.setdefault(family, []).extend(
                ((*ep, ("statistic", s)), 0.01 * (k + 1) + n / 1e6) for k, s in enumerate(STATISTICS)
            )
        per_family.setdefault("inference_endpoint_status", []).append((ep, 1.0))
        per_family.setdefault("cache_rate", []).append((ep, 0.42))
    metrics = []
    for family, points in per_family.items():
        is_count = family.endswith("_total")
        unit = "s" if family in LATENCIES else "1" if not is_count else "{token}" if "tokens" in family else "{request}"
        metrics.append(
            Metric(
                family,
                Kind.COUNTER if is_count else Kind.GAUGE,
                [Point(a, v, start, end) for a, v in points],
                Temporality.DELTA if is_count else None,
                unit,
            )
        )
    resource = (("bridge.source", "cerebras"), ("cerebras.organization_id", "org_bench"))
    return Batch("cerebras", resource, start, end, metrics)


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


def official_models_body(samples: list[Sample], identities: dict[str, dict[str, Any]]) -> bytes:
    """What building the body through datadog-api-client costs: one model per series and point."""
    series = []
    for head, timestamp, value, interval in samples:
        identity = identities[head]
        extra: dict[str, Any] = {"interval": interval} if interval is not None else {}
        if "unit" in identity:
            extra["unit"] = identity["unit"]
        series.append(
            MetricSeries(
                metric=identity["metric"],
                type=MetricIntakeType(identity["type"]),
                tags=identity.get("tags", []),
                points=[MetricPoint(timestamp=timestamp, value=value)],
                **extra,
            )
        )
    payload = MetricPayload(series=series)
    return json.dumps(data_to_dict(payload)).encode()  # as the client's REST layer serialises a body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=100_000)
    args = parser.parse_args()

    clock = ManualClock(WINDOW_START + 65)
    config = DatadogSinkConfig.model_validate({"type": "datadog", "url": "http://127.0.0.1:9", "api_key": "bench-key"})
    batch = cerebras_batch(args.samples, WINDOW_START)
    n = batch.point_count()

    cold_sink = DatadogSink("bench", config, Context(clock=clock))
    cold = best_of(1, lambda: cold_sink.prepare(batch))
    sink = DatadogSink("bench", config, Context(clock=clock))
    sink.prepare(batch)  # first sight: identities cached from here on
    steady = best_of(3, lambda: sink.prepare(batch))

    samples = sink.normalizer.normalize(batch).samples

    def encode_only() -> object:
        return encode.pack_series([encode.series_fragment(*s) for s in samples], "none")

    encoded = best_of(3, encode_only)
    identities = {head: json.loads(head[:-1] + "}") for head, *_ in samples}
    official = best_of(1, lambda: official_models_body(samples, identities))

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"machine: {cpu}, {platform.system()} {platform.machine()}, Python {platform.python_version()}")
    print(f"samples: {n} Cerebras-shaped points ({len(samples)} series sent; NaN none)")
    rows = [
        ("encode, steady state (fragments + framing)", encoded),
        ("prepare, steady state (normalise + encode + gzip)", steady),
        ("prepare, first sight (identities built)", cold),
        ("datadog-api-client models (build + serialise)", official),
    ]
    for label, seconds in rows:
        print(f"{label:<52} {len(samples) / seconds:>12,.0f} series/s  ({seconds * 1000:,.0f} ms)")
    print(f"ratio encode / official models: {official / encoded:.1f}x; prepare / official: {official / steady:.1f}x")


if __name__ == "__main__":
    main()
