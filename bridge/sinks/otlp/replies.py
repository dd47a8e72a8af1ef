"""What an OTLP server answers, read by hand from the wire: a partial success, a google.rpc.Status.

Not through the generated classes: protobuf's runtime and the OTLP *_pb2 modules cost about 3 MB
resident of the bridge's 50 MB idle budget (measured: importing
opentelemetry.proto.metrics.v1.metrics_pb2 after httpx and pydantic adds 3.0 MB RSS and 44 modules),
and these few fields are all a sink reads back. tests/test_otlp_replies.py holds both decoders
equal to the generated classes, on generated messages and on arbitrary bytes. The one difference:
a group (a proto2 encoding no OTLP server sends) makes the bytes malformed here; protobuf skips it.

Proto3's rules, as protobuf's parser applies them: an absent field is 0 or "", the last occurrence
of a scalar field wins, the occurrences of a message field merge, a field of an unexpected wire
type is an unknown field, and unknown fields are skipped.
"""

from __future__ import annotations

from bridge import protowire
from bridge.http import MAX_SERVER_DELAY, clamp_delay
from bridge.protowire import WireError

__all__ = ["WireError", "partial_success", "read_status"]

_RETRY_INFO = "google.rpc.RetryInfo"


def partial_success(raw: bytes) -> tuple[int, str]:
    """(rejected_data_points, error_message) of a serialized ExportMetricsServiceResponse; WireError if malformed.

    ExportMetricsServiceResponse{partial_success = 1: ExportMetricsPartialSuccess{
    rejected_data_points int64 = 1, error_message string = 2}}.
    """
    rejected, message = 0, ""
    for response_field in protowire.fields(raw):
        match response_field:
            case (1, protowire.LEN, bytes(partial)):
                for partial_field in protowire.fields(partial):
                    match partial_field:
                        case (1, protowire.VARINT, int(count)):
                            rejected = protowire.signed(count, 64)
                        case (2, protowire.LEN, bytes(encoded)):
                            message = protowire.text(encoded)
    return rejected, message


def read_status(raw: bytes, message: str) -> tuple[str, float | None]:
    """(message, requested delay in seconds) from a serialized google.rpc.Status, as gRPC and HTTP servers send it.

    `message` and no delay when it does not decode; else the Status's own message, even an
    empty one. The delay is the last RetryInfo's, within [0, MAX_SERVER_DELAY].
    """
    try:
        return _status(raw)
    except WireError:
        return message, None


def _status(raw: bytes) -> tuple[str, float | None]:
    """Status{code int32 = 1, message string = 2, details repeated Any = 3}, Any{type_url string = 1, value bytes = 2}.

    A detail is a RetryInfo when its type URL has a '/' and names RetryInfo after the last one (Any.Unpack's test).
    """
    message, delay = "", None
    for status_field in protowire.fields(raw):
        match status_field:
            case (2, protowire.LEN, bytes(encoded)):
                message = protowire.text(encoded)
            case (3, protowire.LEN, bytes(detail)):  # repeated: each occurrence is a detail of its own
                type_url, value = "", b""
                for any_field in protowire.fields(detail):
                    match any_field:
                        case (1, protowire.LEN, bytes(encoded)):
                            type_url = protowire.text(encoded)
                        case (2, protowire.LEN, bytes(encoded)):
                            value = encoded
                if "/" in type_url and type_url.rpartition("/")[2] == _RETRY_INFO:
                    delay = clamp_delay(_retry_seconds(value), MAX_SERVER_DELAY)
    return message, delay


def _retry_seconds(retry_info: bytes) -> float:
    """RetryInfo{retry_delay Duration = 1}, Duration{seconds int64 = 1, nanos int32 = 2}, in seconds.

    Field by field, not as a timedelta: that overflows on the 1e14 s a server may send.
    """
    seconds = nanos = 0
    for info_field in protowire.fields(retry_info):
        match info_field:
            case (1, protowire.LEN, bytes(duration)):
                for duration_field in protowire.fields(duration):
                    match duration_field:
                        case (1, protowire.VARINT, int(value)):
                            seconds = protowire.signed(value, 64)
                        case (2, protowire.VARINT, int(value)):
                            nanos = protowire.signed(value, 32)
    return seconds + nanos / 1e9
