"""prometheus.WriteRequest and friends as generated message classes, built at run time without protoc.

The messages, fields, numbers and types are those of prometheus/prompb/remote.proto and
types.proto (remote write 1.0), written out as a FileDescriptorProto; gogoproto options
change nothing on the wire and are left out. The tests and bench/bench_remote_write.py
use these classes as the reference the hand-written encoder is held to.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto

#: message -> [(field, number, type, label, message or enum type name)], as in the .proto files
_MESSAGES: dict[str, list[tuple[str, int, int, int, str]]] = {
    "WriteRequest": [
        ("timeseries", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".prometheus.TimeSeries"),
        ("metadata", 3, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".prometheus.MetricMetadata"),
    ],
    "TimeSeries": [
        ("labels", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".prometheus.Label"),
        ("samples", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".prometheus.Sample"),
    ],
    "Label": [("name", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""), ("value", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, "")],
    "Sample": [
        ("value", 1, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL, ""),
        ("timestamp", 2, _F.TYPE_INT64, _F.LABEL_OPTIONAL, ""),
    ],
    "MetricMetadata": [
        ("type", 1, _F.TYPE_ENUM, _F.LABEL_OPTIONAL, ".prometheus.MetricMetadata.MetricType"),
        ("metric_family_name", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("help", 4, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ("unit", 5, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
    ],
}
METRIC_TYPES = ("UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO", "STATESET")


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="bridge_tests/prompb.proto", package="prometheus", syntax="proto3")
    for message_name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=message_name)
        for name, number, field_type, label, type_name in fields:
            field = message.field.add(name=name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name
    enum = proto.message_type[-1].enum_type.add(name="MetricType")
    for number, name in enumerate(METRIC_TYPES):
        enum.value.add(name=name, number=number)
    return proto


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}")) for name in _MESSAGES
    }


_CLASSES = _classes()
WriteRequest: Any = _CLASSES["WriteRequest"]
TimeSeries: Any = _CLASSES["TimeSeries"]
MetricMetadata: Any = _CLASSES["MetricMetadata"]
