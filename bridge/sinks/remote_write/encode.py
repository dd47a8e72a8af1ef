"""Model -> Prometheus remote write 1.0 `WriteRequest` bytes, written by hand from the series table.

Field numbers from prometheus/prompb (remote.proto, types.proto): WriteRequest{timeseries = 1,
metadata = 3}, TimeSeries{labels = 1, samples = 2}, Label{name = 1, value = 2}, Sample{value = 1
(double), timestamp = 2 (int64 ms)}, MetricMetadata{type = 1, metric_family_name = 2, help = 4,
unit = 5}. Each output series' labels are encoded once and kept in its series-table entry's memo,
already framed as a TimeSeries holding one sample up to the sample's value, so a steady-state
sample costs one struct pack. tests/test_remote_write_encode.py decodes the bytes with message
classes built from the real .proto; bench/bench_remote_write.py measures both.

Names and labels (README "Mapping to Prometheus remote write"):
- metric names are those Prometheus' OTLP translator gives (`prometheus_name`), so this sink and the
  `grafana_cloud` OTLP path store the same names; histograms add `_bucket{le}`, `_sum`, `_count`;
  summaries `{quantile}`, `_sum`, `_count`
- point attributes become labels with valid names (an invalid character -> `_`, a leading digit ->
  `key_`, a leading `__`, reserved for Prometheus, -> `key__`); two that end up alike are joined by `;`;
  an empty value is left out (Prometheus has no empty labels)
- target labels: `job` (the source's name), `instance` (the first of `instance_attributes` on the
  resource, else the source's name) and every other resource attribute; a point attribute with one of
  their names is kept as `exported_<name>`, as a scrape without honor_labels does
- external and HA labels go on every series that lacks them; labels are sorted by name, in byte order
"""

from __future__ import annotations

import enum
import math
import re
import struct
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from bridge.model import Attrs, Batch, HistogramValue, Kind, Metric, SummaryValue
from bridge.promnames import OTLPMetricType, prometheus_name
from bridge.protowire import LEN, VARINT, field, varint
from bridge.series import new_slot

NS_PER_MS = 1_000_000
#: Prometheus' staleness marker (value.StaleNaN), written as bytes: a float need not keep a signalling NaN's bits.
STALE_NAN = struct.pack("<Q", 0x7FF0000000000002)
_pack_double = struct.Struct("<d").pack
_ZERO = _pack_double(0.0)
_INVALID_LABEL_CHARACTER = re.compile(r"[^a-zA-Z0-9_]")


class MetricType(enum.IntEnum):
    """prometheus.MetricMetadata.MetricType."""

    UNKNOWN = 0
    COUNTER = 1
    GAUGE = 2
    HISTOGRAM = 3
    GAUGEHISTOGRAM = 4
    SUMMARY = 5
    INFO = 6
    STATESET = 7


# ---------------------------------------------------------------- wire format
def encode_labels(labels: Iterable[tuple[str, str]]) -> bytes:
    """TimeSeries.labels fields (= 1), each Label{name = 1, value = 2}, in the order given."""
    return b"".join(field(1, field(1, name.encode()) + field(2, value.encode())) for name, value in labels)


def timestamp_tail(timestamp_ms: int) -> bytes:
    """Sample.timestamp (= 2, varint): the end of a sample."""
    return b"\x10" + varint(timestamp_ms)


def sample_head(labels: bytes, tail_size: int) -> bytes:
    """WriteRequest.timeseries (= 1) framing a TimeSeries with these labels and one sample, up to its value.

    What follows is the value (8 bytes, Sample.value = 1 is a double) and a timestamp tail
    of `tail_size` bytes, whose size the framing includes.
    """
    sample_size = 9 + tail_size
    sample = b"\x12" + varint(sample_size)  # TimeSeries.samples = 2
    return b"\x0a" + varint(len(labels) + len(sample) + sample_size) + labels + sample + b"\x09"


def encode_metadata(metric_type: MetricType, family: str, help_text: str, unit: str) -> bytes:
    """WriteRequest.metadata (= 3): one MetricMetadata, empty strings left out as protobuf does."""
    body = bytes((1 << 3 | VARINT, metric_type)) if metric_type else b""
    for number, text in ((2, family), (4, help_text), (5, unit)):
        if text:
            body += field(number, text.encode())
    return field(3, body)


# ---------------------------------------------------------------- names and labels
def format_float(value: float) -> str:
    """A bound or quantile as Go's FormatFloat(v, 'f', -1, 64), as the OTLP translator writes them: 0.005, 1, +Inf."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@lru_cache(maxsize=16_384)  # a few label names, made valid once each
def label_name(key: str) -> str:
    """A valid Prometheus label name for an attribute key."""
    name = _INVALID_LABEL_CHARACTER.sub("_", key)
    if name[:1].isdigit():
        return f"key_{name}"
    if name.startswith("__"):
        return f"key{name}"
    return name


def attribute_labels(attributes: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Attributes as labels: names made valid, values of names that end up alike joined by `;`, empty ones left out."""
    labels: dict[str, str] = {}
    for key, value in attributes:
        if value == "":
            continue
        name = label_name(key)
        labels[name] = f"{labels[name]};{value}" if name in labels else value
    return labels


_NAME_TYPES: dict[Kind, OTLPMetricType] = {Kind.GAUGE: "gauge", Kind.HISTOGRAM: "histogram", Kind.SUMMARY: "summary"}
_METADATA_TYPES = {Kind.GAUGE: MetricType.GAUGE, Kind.HISTOGRAM: MetricType.HISTOGRAM, Kind.SUMMARY: MetricType.SUMMARY}


def _name_type(kind: Kind, monotonic: bool) -> OTLPMetricType:
    if kind is Kind.COUNTER:
        return "monotonic_sum" if monotonic else "sum"
    return _NAME_TYPES[kind]


@lru_cache(maxsize=16_384)
def metric_name(name: str, unit: str, kind: Kind, monotonic: bool) -> str:
    """The family name a PromQL user types: the same as Grafana's OTLP translation of this metric."""
    return prometheus_name(name, unit, _name_type(kind, monotonic))


@lru_cache(maxsize=16_384)
def family_metadata(name: str, unit: str, kind: Kind, monotonic: bool, description: str) -> bytes:
    """The family's MetricMetadata; a non-monotonic counter is a gauge to Prometheus (as the OTLP translator says)."""
    if kind is Kind.COUNTER:
        metric_type = MetricType.COUNTER if monotonic else MetricType.GAUGE
    else:
        metric_type = _METADATA_TYPES[kind]
    return encode_metadata(metric_type, metric_name(name, unit, kind, monotonic), description, unit)


@dataclass(frozen=True, slots=True)
class Target:
    """What one source's resource puts on its series: labels that win, and labels added where absent."""

    labels: dict[str, str]  # job, instance, the other resource attributes
    defaults: dict[str, str]  # external_labels and the HA pair

    def series_labels(self, attributes: Attrs) -> dict[str, str]:
        """A point's labels (without __name__): its attributes under the target's labels."""
        labels = {
            f"exported_{name}" if name in self.labels else name: value
            for name, value in attribute_labels(attributes).items()
        }
        labels.update(self.labels)
        for name, value in self.defaults.items():
            labels.setdefault(name, value)
        return labels


def make_target(resource: Attrs, instance_attributes: Sequence[str], extra_labels: dict[str, str]) -> Target:
    """A source's resource as Prometheus would label a scrape target: `job`, `instance`, the rest as labels."""
    attributes = dict(resource)
    job = attributes.pop("bridge.source", "")
    instance_key = next((key for key in instance_attributes if attributes.get(key)), None)
    instance = attributes.pop(instance_key) if instance_key is not None else job
    labels = attribute_labels(attributes.items())
    labels.update(attribute_labels((("job", job), ("instance", instance))))
    return Target(labels, dict(extra_labels))


def sorted_labels(labels: dict[str, str]) -> list[tuple[str, str]]:
    """By name in byte order (the names are ASCII), as Prometheus and Mimir require."""
    return sorted(labels.items())


# ---------------------------------------------------------------- the encoder
@dataclass(slots=True)
class Encoded:
    """A batch's samples: three `parts` per sample (framed head, value, timestamp), `labels` one per sample."""

    parts: list[bytes]
    labels: list[bytes]  # each sample's series, as its encoded labels: what staleness tracking compares
    metadata: dict[str, bytes]  # family name -> its MetricMetadata


#: A number series' memo: (encoded labels, timestamp tail size, framed head)
_NumberCode = tuple[bytes, int, bytes]
#: A histogram's or summary's memo: (bucket bounds or quantiles, tail size, (labels, head) per output series)
_CompositeCode = tuple[tuple[float, ...], int, tuple[tuple[bytes, bytes], ...]]


class RequestEncoder:
    """Turns normalised batches into samples; holds only caches, so a batch always encodes to the same bytes."""

    def __init__(self, instance_attributes: Sequence[str], extra_labels: dict[str, str]) -> None:
        self.instance_attributes = tuple(instance_attributes)
        self.extra_labels = dict(extra_labels)
        self._targets: dict[Attrs, Target] = {}  # one per source resource: as bounded as the config
        self._slots: dict[tuple[Attrs, str], int] = {}  # (resource, metric name) -> memo slot of its series' code

    def encode(self, batch: Batch, from_zero: Collection[str] = ()) -> Encoded:
        """The batch's samples. Metrics named in `from_zero` are running totals this process started at zero
        (delta counters made cumulative): a life that begins in this batch's window first gets a zero sample.

        Remote write 1.0 has no start time, and without that zero Prometheus would never count the first
        window (a counter's first sample is only its baseline). The zero goes 1 ms after the life's start,
        so it never collides with a sample an earlier run wrote at that instant (a 400 for the whole request).
        """
        target = self._targets.get(batch.resource)
        if target is None:
            target = self._targets[batch.resource] = make_target(
                batch.resource, self.instance_attributes, self.extra_labels
            )
        encoded = Encoded([], [], {})
        for metric in batch.metrics:
            if not metric.values:
                continue
            name = metric_name(metric.name, metric.unit, metric.kind, metric.monotonic)
            encoded.metadata[name] = family_metadata(
                metric.name, metric.unit, metric.kind, metric.monotonic, metric.description
            )
            slot = self._slot(batch.resource, metric.name)
            life_starts = batch.window_start_ns if metric.name in from_zero else None
            if metric.kind is Kind.GAUGE or metric.kind is Kind.COUNTER:
                _number_samples(metric, name, target, slot, encoded, life_starts)
            else:
                _composite_samples(metric, name, target, slot, encoded, life_starts)
        return encoded

    def _slot(self, resource: Attrs, name: str) -> int:
        slot = self._slots.get((resource, name))
        if slot is None:
            slot = self._slots[(resource, name)] = new_slot()
        return slot


def _number_samples(
    metric: Metric, name: str, target: Target, slot: int, encoded: Encoded, life_starts: int | None
) -> None:
    """Gauges and counters: one sample per point; `life_starts`: see _zero_first. The hot loop: locals only."""
    add_part, add_labels, pack = encoded.parts.append, encoded.labels.append, _pack_double
    zero_from = math.inf if life_starts is None else life_starts
    last_end, tail, size = -1, b"", 0  # a batch's points share one or two window ends: the last tail is kept
    for series, value, start_ns, end_ns in zip(metric.series, metric.values, metric.starts, metric.ends, strict=True):
        if end_ns != last_end:
            last_end, tail = end_ns, timestamp_tail(end_ns // NS_PER_MS)
            size = len(tail)
        code: _NumberCode | None = series.memo.get(slot)
        if code is None or code[1] != size:
            labels = code[0] if code is not None else _series_labels(target, series.attributes, name)
            code = series.memo[slot] = (labels, size, sample_head(labels, size))
        if start_ns >= zero_from and value == value:
            _zero_first(code[0], start_ns, end_ns, encoded)
        add_part(code[2])
        add_part(pack(value))  # a gauge's or counter's value: a float
        add_part(tail)
        add_labels(code[0])


def _zero_first(labels: bytes, start_ns: int, end_ns: int, encoded: Encoded) -> None:
    """A zero 1 ms after a running total's start (when that is before its first sample): see RequestEncoder.encode."""
    zero_ms = start_ns // NS_PER_MS + 1
    if zero_ms < end_ns // NS_PER_MS:
        tail = timestamp_tail(zero_ms)
        encoded.parts += (sample_head(labels, len(tail)), _ZERO, tail)
        encoded.labels.append(labels)


def _series_labels(target: Target, attributes: Attrs, name: str, extra: tuple[str, str] | None = None) -> bytes:
    labels = target.series_labels(attributes)
    labels["__name__"] = name
    if extra is not None:
        labels[extra[0]] = extra[1]
    return encode_labels(sorted_labels(labels))


def _shape_and_values(value: HistogramValue | SummaryValue) -> tuple[tuple[float, ...], list[float]]:
    """(bucket bounds or quantiles, values of every output series: buckets or quantiles, then sum, count)."""
    pairs = value.buckets if isinstance(value, HistogramValue) else value.quantiles
    return tuple(key for key, _ in pairs), [v for _, v in pairs] + [value.sum, value.count]


def _composite_codes(
    target: Target, attributes: Attrs, name: str, kind: Kind, shape: tuple[float, ...], tail_size: int
) -> tuple[tuple[bytes, bytes], ...]:
    if kind is Kind.HISTOGRAM:
        keyed = [(f"{name}_bucket", ("le", format_float(bound))) for bound in shape]
    else:
        keyed = [(name, ("quantile", format_float(quantile))) for quantile in shape]
    outputs = [*keyed, (f"{name}_sum", None), (f"{name}_count", None)]
    codes = []
    for output_name, extra in outputs:
        labels = _series_labels(target, attributes, output_name, extra)
        codes.append((labels, sample_head(labels, tail_size)))
    return tuple(codes)


def _composite_samples(
    metric: Metric, name: str, target: Target, slot: int, encoded: Encoded, life_starts: int | None
) -> None:
    """Histograms and summaries: one sample per bucket or quantile, then `_sum` and `_count`."""
    parts, labels_out = encoded.parts, encoded.labels
    for series, value, start_ns, end_ns in zip(metric.series, metric.values, metric.starts, metric.ends, strict=True):
        tail = timestamp_tail(end_ns // NS_PER_MS)
        assert isinstance(value, HistogramValue | SummaryValue)  # the metric's kind says so
        shape, values = _shape_and_values(value)
        code: _CompositeCode | None = series.memo.get(slot)
        if code is None or code[0] != shape or code[1] != len(tail):
            codes = _composite_codes(target, series.attributes, name, metric.kind, shape, len(tail))
            code = series.memo[slot] = (shape, len(tail), codes)
        if life_starts is not None and start_ns >= life_starts and value.count == value.count:
            for labels, _ in code[2]:
                _zero_first(labels, start_ns, end_ns, encoded)
        for (labels, head), output_value in zip(code[2], values, strict=True):
            parts += (head, _pack_double(output_value), tail)
            labels_out.append(labels)


def stale_marker(labels: bytes, tail: bytes) -> tuple[bytes, bytes, bytes]:
    """The three parts of a staleness-marker sample for the series with these labels."""
    return sample_head(labels, len(tail)), STALE_NAN, tail


def write_request(parts: Sequence[bytes], metadata: Iterable[bytes] = ()) -> bytes:
    """A serialized WriteRequest: the samples' TimeSeries, then the MetricMetadata."""
    return b"".join(parts) + b"".join(metadata)


# ---------------------------------------------------------------- reading it back (dry runs)
def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a message: varints as ints, LEN and fixed64 fields as bytes."""
    position = 0
    while position < len(data):
        key, position = _read_varint(data, position)
        wire_type = key & 7
        if wire_type == VARINT:
            number, position = _read_varint(data, position)
            yield key >> 3, wire_type, number
        elif wire_type == 1:
            yield key >> 3, wire_type, data[position : position + 8]
            position += 8
        elif wire_type == LEN:
            size, position = _read_varint(data, position)
            yield key >> 3, wire_type, data[position : position + size]
            position += size
        else:
            raise ValueError(f"wire type {wire_type} is not used by remote write")


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, position


@dataclass(frozen=True, slots=True)
class DecodedSeries:
    labels: list[tuple[str, str]]
    samples: list[tuple[float, int]]  # (value, timestamp ms)

    def __str__(self) -> str:
        labels = dict(self.labels)
        name = labels.pop("__name__", "")
        text = ",".join(f'{key}="{value}"' for key, value in labels.items())
        return " ".join([f"{name}{{{text}}}", *(f"{value!r} @{timestamp}" for value, timestamp in self.samples)])


def decode(body: bytes) -> tuple[list[DecodedSeries], list[tuple[int, str, str, str]]]:
    """A WriteRequest's series and metadata (type, family, help, unit): what `once --dry-run` shows."""
    series: list[DecodedSeries] = []
    metadata: list[tuple[int, str, str, str]] = []
    for number, _, value in _fields(body):
        assert isinstance(value, bytes)
        if number == 1:
            labels: list[tuple[str, str]] = []
            samples: list[tuple[float, int]] = []
            for part, _, content in _fields(value):
                assert isinstance(content, bytes)
                if part == 1:
                    strings = {n: v for n, _, v in _fields(content) if isinstance(v, bytes)}
                    labels.append((strings.get(1, b"").decode(), strings.get(2, b"").decode()))
                elif part == 2:
                    sample = {n: v for n, _, v in _fields(content)}
                    raw, timestamp = sample.get(1, bytes(8)), sample.get(2, 0)
                    assert isinstance(raw, bytes) and isinstance(timestamp, int)
                    signed = timestamp - (1 << 64) if timestamp >= 1 << 63 else timestamp
                    samples.append((struct.unpack("<d", raw)[0], signed))
            series.append(DecodedSeries(labels, samples))
        elif number == 3:
            fields = {n: v for n, _, v in _fields(value)}
            texts = [fields.get(n, b"") for n in (2, 4, 5)]
            kind = fields.get(1, 0)
            assert isinstance(kind, int) and all(isinstance(text, bytes) for text in texts)
            family, help_text, unit = (text.decode() for text in texts if isinstance(text, bytes))
            metadata.append((kind, family, help_text, unit))
    return series, metadata
