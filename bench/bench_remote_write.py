"""Benchmark the remote write sink's prepare (encode + snappy) against generated protobuf classes, and two snappys.

Run from the repo root: `python bench/bench_remote_write.py`. The input is bench_otlp's
Cerebras-like windows (100 endpoints, 29 series each) until at least 100k samples, after one
window that warms the caches, as in a running bridge (steady state). Lines:

- sink prepare: RemoteWriteSink.prepare(batch): cumulative normalisation, the hand encoder,
  staleness tracking, snappy;
- encode + snappy: the same batches, already normalised, through the hand encoder and snappy;
- reference: the same normalised batches through message classes built from prompb's .proto
  (tests/remote_write_proto.py: a TimeSeries added per sample, its labels cached per series as
  (name, value) pairs), SerializeToString, the same snappy. Both produce the same request (checked);
- cramjam against python-snappy (0.7, which calls cramjam) on the same request bodies.

Best of REPEATS runs.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cramjam
import snappy

from bench.bench_otlp import window_batch
from bridge.context import Context
from bridge.model import Batch, Series, Temporality
from bridge.series.temporality import TemporalityNormalizer
from bridge.sinks.remote_write import RemoteWriteSink, compress
from bridge.sinks.remote_write.config import RemoteWriteSinkConfig
from bridge.sinks.remote_write.encode import NS_PER_MS, RequestEncoder, make_target, metric_name, write_request
from tests.remote_write_proto import WriteRequest

TARGET_SAMPLES = 100_000
REPEATS = 3
CONFIG = RemoteWriteSinkConfig(type="remote_write", url="http://127.0.0.1:9090/api/v1/write")


def best_seconds(run: Callable[[], None]) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def reference_body(batch: Batch, labels_of: dict[tuple[str, Series], list[tuple[str, str]]]) -> bytes:
    """The request through generated classes: one TimeSeries per sample, labels cached per series."""
    target = make_target(batch.resource, CONFIG.instance_attributes, CONFIG.extra_labels())
    request: Any = WriteRequest()
    for metric in batch.metrics:
        name = metric_name(metric.name, metric.unit, metric.kind, metric.monotonic)
        for series, value, end_ns in zip(metric.series, metric.values, metric.ends, strict=True):
            labels = labels_of.get((name, series))
            if labels is None:
                labels = labels_of[(name, series)] = sorted(
                    {**target.series_labels(series.attributes), "__name__": name}.items()
                )
            timeseries = request.timeseries.add()
            for label_name, label_value in labels:
                timeseries.labels.add(name=label_name, value=label_value)
            timeseries.samples.add(value=value, timestamp=end_ns // NS_PER_MS)
    return bytes(request.SerializeToString())


def main() -> None:
    warm = window_batch(0)
    windows = -(-TARGET_SAMPLES // warm.point_count())
    batches = [window_batch(i) for i in range(1, windows + 1)]
    normalizer = TemporalityNormalizer(Temporality.CUMULATIVE, sink_name="bench")
    normalizer.normalize(warm)
    normalized = [normalizer.normalize(batch) for batch in batches]
    samples = sum(batch.point_count() for batch in normalized)

    encoder = RequestEncoder(CONFIG.instance_attributes, CONFIG.extra_labels())
    encoder.encode(normalizer.normalize(window_batch(0)))
    bodies = [write_request(encoder.encode(batch).parts) for batch in normalized]
    labels_of: dict[tuple[str, Series], list[tuple[str, str]]] = {}
    reference_bodies = [reference_body(batch, labels_of) for batch in normalized]
    ours_parsed, reference_parsed = WriteRequest(), WriteRequest()
    ours_parsed.ParseFromString(bodies[0])
    reference_parsed.ParseFromString(reference_bodies[0])
    assert ours_parsed == reference_parsed, "the two encoders disagree"

    def prepare_seconds() -> float:
        """Each run on a fresh sink, warmed by one window outside the timing (its counters then have a baseline)."""
        timings = []
        for _ in range(REPEATS):
            sink = RemoteWriteSink("bench", CONFIG, Context())
            sink.prepare(warm)
            started = time.perf_counter()
            for batch in batches:
                sink.prepare(batch)
            timings.append(time.perf_counter() - started)
        return min(timings)

    def ours() -> None:
        for batch in normalized:
            compress(write_request(encoder.encode(batch).parts))

    def reference() -> None:
        for batch in normalized:
            bytes(cramjam.snappy.compress_raw(reference_body(batch, labels_of)))

    ours_rate, reference_rate = samples / best_seconds(ours), samples / best_seconds(reference)
    size = sum(len(body) for body in bodies)
    codecs = {
        "cramjam.snappy.compress_raw": lambda body: bytes(cramjam.snappy.compress_raw(body)),
        "python-snappy snappy.compress": snappy.compress,
    }
    outputs = {name: [codec(body) for body in bodies] for name, codec in codecs.items()}
    assert len({tuple(out) for out in outputs.values()}) == 1, "the two snappys compress differently"
    compressed = sum(len(body) for body in next(iter(outputs.values())))

    print(f"input: {samples:,} samples = {len(batches)} windows x {warm.point_count():,} series after a warm-up "
          f"window; {size / len(bodies):,.0f} bytes per request, {compressed / len(bodies):,.0f} after snappy; "
          f"best of {REPEATS}")  # fmt: skip
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"sink prepare (normalise + encode + snappy)  {samples / prepare_seconds():>12,.0f} samples/s")
    print(f"hand encoder + snappy                       {ours_rate:>12,.0f} samples/s")
    print(f"generated classes + snappy (reference)      {reference_rate:>12,.0f} samples/s")
    print(f"ratio hand / generated                      {ours_rate / reference_rate:>12.2f}x")
    for name, codec in codecs.items():
        seconds = best_seconds(lambda codec=codec: [codec(body) for body in bodies])  # type: ignore[misc]
        print(f"{name:<44}{size / seconds / 1e6:>12,.0f} MB/s ({samples / seconds:,.0f} samples/s)")


if __name__ == "__main__":
    main()
