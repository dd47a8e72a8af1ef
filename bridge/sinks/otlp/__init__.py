"""The `otlp` sink (OTLP/gRPC and OTLP/HTTP) and its `grafana_cloud` preset.

Split like the OpenTelemetry exporters and Vector's sinks: config (keys and
OTEL_* environment defaults), normalize (stateful temporality), encode (pure,
shared by both transports), transport (one attempt, classified outcome).
prepare() normalises and encodes once; the delivery layer retries deliver()
with the exact same bytes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from bridge import __version__, gcpause, registry, telemetry
from bridge.context import Context
from bridge.http import excerpt
from bridge.model import Batch, Temporality
from bridge.promnames import OTLPMetricType, prometheus_name
from bridge.series.temporality import TemporalityNormalizer
from bridge.sinks.base import Payload, Sink
from bridge.sinks.otlp.config import OTLPCommonConfig, OTLPSinkConfig
from bridge.sinks.otlp.encode import RequestEncoder, split_batch
from bridge.sinks.otlp.grafana import GrafanaCloudConfig
from bridge.sinks.otlp.transport import open_transport

if TYPE_CHECKING:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.metrics.v1 import metrics_pb2

log = logging.getLogger(__name__)


@registry.sinks.register("otlp")
class OTLPSink(Sink):
    Config: ClassVar[type[OTLPCommonConfig]] = OTLPSinkConfig

    def __init__(self, name: str, config: OTLPCommonConfig, context: Context) -> None:
        super().__init__(name, config, context)
        self.connection = config.connection()
        self.temporality = Temporality(config.temporality)
        self._normalizer = TemporalityNormalizer(self.temporality, sink_name=name)
        if config.series_limit is not None or config.series_idle_seconds is not None:
            log.warning(
                "sink %s: series_limit and series_idle_seconds are no longer used; see series: in the README", name
            )
        self._encoder = RequestEncoder(config.resource(), scope_version=__version__)
        self._transport = open_transport(self.connection, context.clock)
        self._last_partial: tuple[int, str] = (0, "")  # (sign of the rejected count, message): log each change once

    async def start(self) -> None:
        await self._transport.start()

    async def close(self) -> None:
        await self._transport.close()

    @gcpause.paused
    def prepare(self, batch: Batch) -> list[Payload]:
        normalized = self._normalizer.normalize(batch)
        return [
            Payload(
                body=self._encoder.encode(chunk),
                window_end_ns=batch.window_end_ns,
                points=chunk.point_count(),
            )
            for chunk in split_batch(normalized, self.config.max_points_per_request)
        ]

    async def deliver(self, payload: Payload) -> int:
        """One attempt. Failures are counted and logged by the delivery layer; partial success is ours to report.

        A partial success is logged when its message changes (not every minute) and its
        rejected points are counted as dropped, and returned so they are not counted as sent.
        A count no payload can have (negative, or more than it holds) is logged and
        clamped: the request was accepted either way.
        """
        reported, error_message = await self._transport.send(payload.body)
        rejected = min(max(0, reported), payload.points)
        if rejected:
            telemetry.DROPPED_POINTS.labels(self.name, "partial_success").inc(rejected)
        message = excerpt(error_message)
        outcome = ((reported > 0) - (reported < 0), message)
        if outcome != self._last_partial:
            self._last_partial = outcome
            if reported < 0:
                log.warning(
                    "sink %s: backend accepted the request reporting %d rejected points, counted as 0: %s",
                    self.name,
                    reported,
                    message or "(no message)",
                )
            elif reported:
                log.warning(
                    "sink %s: backend rejected %d of %d points: %s",
                    self.name,
                    reported,
                    payload.points,
                    message or "(no message)",
                )
            elif message:
                log.warning("sink %s: backend accepted the request with a warning: %s", self.name, message)
        return rejected

    def describe(self, payload: Payload) -> str:
        """The request in the protobuf JSON mapping (what OTLP/JSON would carry)."""
        from google.protobuf.json_format import MessageToJson  # protobuf only for the CLI's views

        return MessageToJson(_request(payload), indent=2)

    def summary(self, payloads: list[Payload]) -> str:
        points = sum(payload.points for payload in payloads)
        return (
            f"{points} points in {len(payloads)} request(s) to {self.connection.url} "
            f"({self.connection.protocol}, {self.temporality.value})"
        )


@registry.sinks.register("grafana_cloud")
class GrafanaCloudSink(OTLPSink):
    Config = GrafanaCloudConfig

    def summary(self, payloads: list[Payload]) -> str:
        """Adds the names Grafana users query, after Grafana's OTLP -> Prometheus translation."""
        names = sorted({_promql_name(metric) for payload in payloads for metric in _metrics(payload)})
        return f"{super().summary(payloads)}\nPromQL names: {', '.join(names)}"


def _request(payload: Payload) -> ExportMetricsServiceRequest:
    """The payload as generated classes: for `dry-run` and `validate` views, never on the delivery path."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    return ExportMetricsServiceRequest.FromString(payload.body)


def _metrics(payload: Payload) -> list[metrics_pb2.Metric]:
    request = _request(payload)
    return [m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]


def _promql_name(metric: metrics_pb2.Metric) -> str:
    data = metric.WhichOneof("data")
    metric_type: OTLPMetricType
    if data == "sum":
        metric_type = "monotonic_sum" if metric.sum.is_monotonic else "sum"
    elif data == "gauge" or data == "summary":
        metric_type = data
    else:  # a histogram (the encoder writes no exponential ones): named like a summary, with no suffix
        metric_type = "histogram"
    return prometheus_name(metric.name, metric.unit, metric_type)
