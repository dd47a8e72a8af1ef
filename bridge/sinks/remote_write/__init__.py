"""The `remote_write` sink (Prometheus remote write 1.0) and its `grafana_cloud_prometheus` preset.

Split like the other sinks: config, normalize (what is remembered between batches:
counter totals, staleness, metadata), encode (pure, hand-written protobuf), transport
(one attempt). prepare() normalises, encodes and snappy-compresses once; the delivery
layer retries deliver() with the exact same bytes, in window order (`oldest_first`),
because receivers refuse a series' samples out of time order.
"""

from __future__ import annotations

from typing import ClassVar

import cramjam

from bridge import gcpause, registry
from bridge.context import Context
from bridge.model import Batch, Temporality
from bridge.series.temporality import TemporalityNormalizer
from bridge.sinks.base import Payload, Sink
from bridge.sinks.remote_write.config import (
    GrafanaCloudPrometheusConfig,
    RemoteWriteCommonConfig,
    RemoteWriteSinkConfig,
)
from bridge.sinks.remote_write.encode import (
    NS_PER_MS,
    RequestEncoder,
    decode,
    stale_marker,
    timestamp_tail,
    write_request,
)
from bridge.sinks.remote_write.normalize import MetadataSchedule, Staleness
from bridge.sinks.remote_write.transport import RemoteWriteTransport

__all__ = ["GrafanaCloudPrometheusSink", "RemoteWriteSink"]

_PARTS_PER_SAMPLE = 3  # framed head, value, timestamp (encode.Encoded)
DESCRIBED_SERIES = 10


def compress(body: bytes) -> bytes:
    """Snappy's block format, as remote write specifies (not the framed stream format)."""
    return bytes(cramjam.snappy.compress_raw(body))


def decompress(body: bytes) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(body))


@registry.sinks.register("remote_write")
class RemoteWriteSink(Sink):
    Config: ClassVar[type[RemoteWriteCommonConfig]] = RemoteWriteSinkConfig

    def __init__(self, name: str, config: RemoteWriteCommonConfig, context: Context) -> None:
        super().__init__(name, config, context)
        self.connection = config.connection()
        self._counters = TemporalityNormalizer(Temporality.CUMULATIVE, sink_name=name)
        self._encoder = RequestEncoder(config.instance_attributes, config.extra_labels())
        self._staleness = Staleness()
        self._metadata = MetadataSchedule()
        self._transport = RemoteWriteTransport(self.connection, context.clock)

    async def start(self) -> None:
        await self._transport.start()

    async def close(self) -> None:
        await self._transport.close()

    @gcpause.paused
    def prepare(self, batch: Batch) -> list[Payload]:
        """Counters made cumulative, every sample encoded, vanished series marked stale, cut into requests."""
        delta_sourced = {metric.name for metric in batch.metrics if metric.temporality is Temporality.DELTA}
        encoded = self._encoder.encode(self._counters.normalize(batch), from_zero=delta_sourced)
        parts = encoded.parts
        tail = timestamp_tail(batch.window_end_ns // NS_PER_MS)
        for labels in self._staleness.vanished(batch.resource, encoded.labels):
            parts += stale_marker(labels, tail)
        metadata = self._metadata.due(encoded.metadata, batch.window_end_ns) if self.config.send_metadata else []
        step = self.config.max_samples_per_request * _PARTS_PER_SAMPLE
        payloads = []
        for start in range(0, len(parts), step):
            chunk = parts[start : start + step]
            body = write_request(chunk, metadata if start == 0 else ())
            payloads.append(Payload(compress(body), batch.window_end_ns, len(chunk) // _PARTS_PER_SAMPLE))
        if not payloads and metadata:
            payloads.append(Payload(compress(write_request((), metadata)), batch.window_end_ns, 0))
        return payloads

    async def deliver(self, payload: Payload) -> None:
        await self._transport.send(payload.body)

    def describe(self, payload: Payload) -> str:
        """The request's size before and after snappy, then its first series as PromQL would print them."""
        body = decompress(payload.body)
        series, metadata = decode(body)
        samples = sum(len(s.samples) for s in series)
        lines = [
            f"POST {self.connection.url}: {len(series)} series, {samples} samples, {len(metadata)} metadata; "
            f"{len(body)} bytes, {len(payload.body)} after snappy"
        ]
        lines += [f"  {s}" for s in series[:DESCRIBED_SERIES]]
        if len(series) > DESCRIBED_SERIES:
            lines.append(f"  ... and {len(series) - DESCRIBED_SERIES} more series")
        return "\n".join(lines)

    def summary(self, payloads: list[Payload]) -> str:
        samples = sum(payload.points for payload in payloads)
        return f"{samples} samples in {len(payloads)} request(s) to {self.connection.url}"


@registry.sinks.register("grafana_cloud_prometheus")
class GrafanaCloudPrometheusSink(RemoteWriteSink):
    Config = GrafanaCloudPrometheusConfig
