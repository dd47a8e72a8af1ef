"""The hand-written reply decoders (bridge/sinks/otlp/replies.py) against the generated classes they replace.

Differential: protobuf decodes the same bytes, generated messages and arbitrary ones, and the
answers must agree. The one difference is deliberate: protobuf skips a group (a proto2 encoding)
where the decoders call the bytes malformed; each disagreement is checked to be that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.protobuf.internal.wire_format import WIRETYPE_START_GROUP
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet
from google.rpc.error_details_pb2 import DebugInfo, ErrorInfo, RetryInfo
from google.rpc.status_pb2 import Status
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceResponse,
)

from bridge import protowire
from bridge.http import MAX_SERVER_DELAY, clamp_delay
from bridge.protowire import I32, I64, LEN, VARINT, WireError, field, varint
from bridge.sinks.otlp.replies import partial_success, read_status

REPO = Path(__file__).resolve().parents[1]
CALLER = "the caller's message"
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 1, -(2**63), 2**63 - 1]))
INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 999_999_999, -(2**31), 2**31 - 1]))
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
TYPE_URLS = [
    "type.googleapis.com/google.rpc.RetryInfo",
    "/google.rpc.RetryInfo",
    "a/b/google.rpc.RetryInfo",
    "google.rpc.RetryInfo",  # no '/': Any.Unpack does not take it for a RetryInfo
    "type.googleapis.com/google.rpc.RetryInfoX",
    "type.googleapis.com/google.rpc.ErrorInfo",
    "",
]


def old_read_status(raw: bytes, message: str) -> tuple[str, float | None]:
    """bridge/sinks/otlp/transport.py's read_status before replies.py: the reference."""
    try:
        status = Status.FromString(raw)
        delay = None
        for detail in status.details:
            info = RetryInfo()
            if detail.Unpack(info):  # False (and info untouched) when the detail is another type
                requested = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
                delay = clamp_delay(requested, MAX_SERVER_DELAY)
    except DecodeError:
        return message, None
    return status.message, delay


def protobuf_partial_success(raw: bytes) -> tuple[int, str]:
    partial = ExportMetricsServiceResponse.FromString(raw).partial_success
    return partial.rejected_data_points, partial.error_message


def holds_group(message: Message) -> bool:
    """Whether protobuf skipped a group anywhere in the parsed message, a RetryInfo inside an Any included."""
    if any(unknown.wire_type == WIRETYPE_START_GROUP for unknown in UnknownFieldSet(message)):
        return True
    children: list[Message] = []
    for descriptor, value in message.ListFields():
        if descriptor.message_type is not None:
            children.extend(value if descriptor.is_repeated else [value])
    if isinstance(message, Any) and message.Is(RetryInfo.DESCRIPTOR):
        children.append(RetryInfo.FromString(message.value))
    return any(holds_group(child) for child in children)


def assert_partial_success_agrees(raw: bytes) -> None:
    try:
        expected = protobuf_partial_success(raw)
    except DecodeError:
        with pytest.raises(WireError):
            partial_success(raw)
        return
    try:
        ours = partial_success(raw)
    except WireError as error:  # the deliberate difference, and only it
        assert "a group" in str(error) and holds_group(ExportMetricsServiceResponse.FromString(raw))
        return
    assert ours == expected


def assert_status_agrees(raw: bytes) -> None:
    expected, ours = old_read_status(raw, CALLER), read_status(raw, CALLER)
    if ours != expected:  # the deliberate difference, and only it
        assert ours == (CALLER, None) and holds_group(Status.FromString(raw))


# --- generated messages ------------------------------------------------------------------------------------------


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    response = ExportMetricsServiceResponse()
    if draw(st.booleans()):  # absent, or present with any of its fields (an empty one is still written)
        partial = ExportMetricsPartialSuccess()
        if draw(st.booleans()):
            partial.rejected_data_points = draw(INT64)
        if draw(st.booleans()):
            partial.error_message = draw(TEXT)
        response.partial_success.CopyFrom(partial)
    return response.SerializeToString()


# Concatenated messages are one message to protobuf: its fields merge, the last scalar wins.
@settings(deadline=None)  # a shared machine: an example may take longer than 200 ms
@given(st.lists(responses(), min_size=1, max_size=3).map(b"".join))
@example(ExportMetricsServiceResponse(partial_success={"rejected_data_points": -1}).SerializeToString())
def test_a_partial_success_reads_as_protobuf_reads_it(raw: bytes) -> None:
    assert partial_success(raw) == protobuf_partial_success(raw)


def test_a_negative_rejected_count_reads_back_negative() -> None:
    raw = ExportMetricsServiceResponse(partial_success={"rejected_data_points": -5}).SerializeToString()
    assert len(raw) == 2 + 1 + 10  # its varint is ten bytes, two's complement
    assert partial_success(raw) == (-5, "")
    assert partial_success(b"") == (0, "")


def packed(message: Message, type_url: str) -> Any:
    return Any(type_url=type_url, value=message.SerializeToString())


RETRY_INFOS = st.builds(
    lambda seconds, nanos: RetryInfo(retry_delay=Duration(seconds=seconds, nanos=nanos)),
    st.one_of(INT64, st.sampled_from([10**14, 30, 86_400, 86_401])),
    INT32,
)
DETAILS = st.one_of(
    st.builds(packed, RETRY_INFOS, st.sampled_from(TYPE_URLS)),
    st.builds(packed, st.builds(ErrorInfo, reason=TEXT, domain=TEXT, metadata=st.dictionaries(TEXT, TEXT)),
              st.sampled_from(TYPE_URLS)),
    st.builds(packed, st.builds(DebugInfo, stack_entries=st.lists(TEXT), detail=TEXT), st.sampled_from(TYPE_URLS)),
    st.builds(Any, type_url=st.sampled_from(TYPE_URLS), value=st.binary(max_size=12)),  # a RetryInfo's may not parse
)  # fmt: skip
STATUSES = st.builds(Status, code=INT32, message=TEXT, details=st.lists(DETAILS, max_size=4))


@settings(deadline=None)  # a shared machine: an example may take longer than 200 ms
@given(st.lists(STATUSES.map(Status.SerializeToString), min_size=1, max_size=2).map(b"".join))
@example(Status(details=[packed(RetryInfo(retry_delay=Duration(seconds=10**14)), TYPE_URLS[0])]).SerializeToString())
def test_a_status_reads_as_the_generated_classes_read_it(raw: bytes) -> None:
    assert read_status(raw, CALLER) == old_read_status(raw, CALLER)


def test_the_last_retry_info_wins_and_a_server_cannot_ask_for_more_than_the_ceiling() -> None:
    later = packed(RetryInfo(retry_delay=Duration(seconds=10**14)), TYPE_URLS[0])
    first = packed(RetryInfo(retry_delay=Duration(seconds=2, nanos=500_000_000)), TYPE_URLS[0])
    assert read_status(Status(message="slow down", details=[first]).SerializeToString(), CALLER) == ("slow down", 2.5)
    assert read_status(Status(details=[first, later]).SerializeToString(), CALLER) == ("", MAX_SERVER_DELAY)


def test_an_empty_status_message_replaces_the_callers_as_before() -> None:
    assert read_status(Status(code=8).SerializeToString(), CALLER) == ("", None)
    assert read_status(b"\x12\x01\xff", CALLER) == (CALLER, None)  # a message that is not UTF-8: undecodable


# --- arbitrary bytes ---------------------------------------------------------------------------------------------


def padded(value: int, extra: int) -> bytes:
    """`value` as a varint `extra` bytes longer than needed: protobuf accepts some overlong varints, not all."""
    encoded = varint(value)
    if extra == 0:
        return encoded
    return encoded[:-1] + bytes((encoded[-1] | 0x80,)) + b"\x80" * (extra - 1) + b"\x00"


NUMBERS = st.sampled_from([1, 1, 1, 2, 2, 2, 3, 3, 4, 2**29 - 1])  # mostly the field numbers the decoders read
VALUES = st.one_of(
    st.integers(0, 2**64 - 1), st.integers(0, 10**10), st.integers(0, 99), st.sampled_from([2**31, 2**63, 2**64 - 1])
)
TEXT_BYTES = st.one_of(TEXT.map(str.encode), st.binary(max_size=6))  # UTF-8, or likely not


def varint_fields(numbers: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    return st.builds(lambda number, value: varint(number << 3 | VARINT) + varint(value), numbers, VALUES)


#: Well-formed fields of each wire type; on a field number read with another type they are unknown fields.
FIELDS = st.one_of(
    varint_fields(NUMBERS),
    st.builds(lambda number, payload: varint(number << 3 | I64) + payload, NUMBERS, st.binary(min_size=8, max_size=8)),
    st.builds(lambda number, payload: varint(number << 3 | I32) + payload, NUMBERS, st.binary(min_size=4, max_size=4)),
    st.builds(field, NUMBERS, st.one_of(TEXT_BYTES, st.sampled_from(TYPE_URLS).map(str.encode))),
)
#: Bytes that make a message malformed, or nearly: protobuf takes a 5-byte tag, a 10-byte value, a group.
BREAKAGES = st.one_of(
    st.builds(lambda number, wire_type: varint(number << 3 | wire_type), st.sampled_from([0, 1, 2**29]),
              st.sampled_from([VARINT, 3, 4, 6, 7])),  # a field number out of range, an unpaired group end
    st.builds(lambda number, pad: padded(number << 3 | VARINT, pad) + b"\x01", NUMBERS, st.integers(1, 5)),
    st.builds(lambda value, pad: b"\x08" + padded(value, pad), VALUES, st.integers(1, 10)),
    st.builds(lambda text, pad: b"\x12" + padded(len(text), pad) + text, TEXT_BYTES, st.integers(1, 5)),
    st.builds(lambda number, body: varint(number << 3 | 3) + body + varint(number << 3 | 4), NUMBERS,
              st.lists(FIELDS, max_size=2).map(b"".join)),
    st.binary(max_size=3),  # a stray byte, a truncated field
)  # fmt: skip


def message_shaped(*fields: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Mostly these fields; else any well-formed field (unknown, or of a wrong wire type), seldom a breakage."""
    weighted = [*fields * 6, FIELDS, FIELDS, BREAKAGES]  # sampled_from, not one_of: one_of would not weigh repeats
    return st.lists(st.sampled_from(weighted).flatmap(lambda strategy: strategy), min_size=1, max_size=4).map(b"".join)


def message_field(number: int, message: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(field, st.just(number), message)


WIRE_SHAPED = st.recursive(
    message_shaped(), lambda inner: message_shaped(st.builds(field, NUMBERS, inner)), max_leaves=10
)
PARTIAL_SUCCESS_SHAPED = message_shaped(
    message_field(1, message_shaped(varint_fields(st.just(1)), message_field(2, TEXT_BYTES)))
)
DURATION_SHAPED = message_shaped(varint_fields(st.sampled_from([1, 2])))
ANY_SHAPED = message_shaped(
    message_field(1, st.sampled_from([*map(str.encode, TYPE_URLS), b"\xff/google.rpc.RetryInfo"])),  # or not UTF-8
    message_field(2, message_shaped(message_field(1, DURATION_SHAPED))),  # a RetryInfo, if the type URL says so
)
STATUS_SHAPED = message_shaped(message_field(3, ANY_SHAPED), message_field(2, TEXT_BYTES))

#: A RetryInfo whose nanos, an int32, comes with bits beyond 32: protobuf keeps the low 32 (1 s and 5 ns).
WIDE_NANOS = field(3, field(1, TYPE_URLS[0].encode()) + field(2, field(1, b"\x08\x01\x10" + varint(2**32 + 5))))


@settings(deadline=None)  # a shared machine: an example may take longer than 200 ms
@given(st.one_of(st.binary(max_size=40), WIRE_SHAPED, PARTIAL_SUCCESS_SHAPED, STATUS_SHAPED))
@example(b"\x0b\x0c")  # an empty group: protobuf skips it
@example(b"\x0a\x04\x1b\x08\x01\x1c")  # a group inside the partial success
@example(b"\x0a\x03\x12\x01\xff")  # an error message that is not UTF-8: protobuf refuses the bytes
@example(b"\x0a\x04\x12\x02\xc0\x80")  # an overlong UTF-8 encoding
@example(b"\x0a\x05\x12\x03\xed\xa0\x80")  # a UTF-8-encoded surrogate
@example(b"\x0a\x02\x10\x05")  # error_message sent as a varint: an unknown field
@example(b"\x0a\x06\x88\x80\x80\x80\x00\x07")  # a five-byte tag
@example(WIDE_NANOS)
def test_any_bytes_read_as_protobuf_reads_them_or_fail_as_it_does(raw: bytes) -> None:
    assert_partial_success_agrees(raw)
    assert_status_agrees(raw)


# --- the wire reader ---------------------------------------------------------------------------------------------


def test_the_reader_yields_each_field_with_its_value() -> None:
    raw = varint(1 << 3 | VARINT) + varint(-2) + field(2, b"ab") + varint(3 << 3 | I64) + (7).to_bytes(8, "little")
    raw += varint(4 << 3 | I32) + (2**32 - 1).to_bytes(4, "little")
    assert list(protowire.fields(raw)) == [(1, VARINT, 2**64 - 2), (2, LEN, b"ab"), (3, I64, 7), (4, I32, 2**32 - 1)]
    assert protowire.signed(2**64 - 2, 64) == -2 and protowire.signed(2**64 - 2, 32) == -2


MALFORMED = {
    "truncated varint": b"\x08\x80",
    "varint over 10 bytes": b"\x08" + b"\xff" * 10 + b"\x01",
    "length past the end": b"\x12\x03ab",
    "length over 5 bytes": b"\x12" + padded(2, 5) + b"ab",
    "truncated fixed64": b"\x09" + b"\x00" * 7,
    "truncated fixed32": b"\x0d\x00\x00\x00",
    "field number 0": b"\x00\x00",
    "tag over 5 bytes": padded(1 << 3 | VARINT, 5) + b"\x00",
    "tag over 32 bits": b"\xff\xff\xff\xff\x1f\x00",
    "unpaired end group": b"\x0c",
    "wire type 6": b"\x0e\x00",
    "wire type 7": b"\x0f\x00",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bytes_are_refused_as_protobuf_refuses_them(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        ExportMetricsServiceResponse.FromString(raw)
    with pytest.raises(WireError):
        list(protowire.fields(raw))


def test_a_group_is_refused_though_protobuf_skips_it() -> None:
    """No proto3 message holds a group, and no OTLP server sends one: not worth a recursive skipper."""
    assert protobuf_partial_success(b"\x0b\x08\x01\x0c") == (0, "")
    with pytest.raises(WireError, match="a group"):
        partial_success(b"\x0b\x08\x01\x0c")


# --- what importing costs ----------------------------------------------------------------------------------------

#: Encode gauges and sums and read replies, as a bridge sending them does; then a histogram.
PROBE = """
import json, sys

import bridge
from bridge.model import Batch, HistogramValue, Kind, Metric, Point
from bridge.sinks.otlp.encode import RequestEncoder
from bridge.sinks.otlp.replies import partial_success, read_status

encoder = RequestEncoder({"service.name": "probe"}, scope_version="0")
gauge = Metric("g", Kind.GAUGE, [Point((("a", "b"),), 1.0, 0, 1)])
counter = Metric("c", Kind.COUNTER, [Point((("a", "b"),), float("nan"), 0, 1)])
encoder.encode(Batch("src", (), 0, 1, [gauge, counter]))
partial_success(b"\\x0a\\x02\\x08\\x05")
read_status(b"\\x12\\x01m", "")
before = sorted(sys.modules)
histogram = Metric("h", Kind.HISTOGRAM, [Point((), HistogramValue(1, 1.0, ((float("inf"), 1),)), 0, 1)])
encoder.encode(Batch("src", (), 0, 1, [histogram]))
print(json.dumps({"bridge": bridge.__file__, "before": before, "after": sorted(sys.modules)}))
"""


def protobuf_modules(modules: list[str]) -> list[str]:
    return [name for name in modules if name.startswith("google.protobuf") or name.endswith("_pb2")]


def test_gauges_sums_and_replies_load_no_protobuf_until_a_histogram_is_sent() -> None:
    """A fresh interpreter: what an earlier test imported cannot hide a regression (as tests/test_imports.py)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert Path(report["bridge"]).is_relative_to(REPO), report["bridge"]  # this checkout, not an installed copy
    assert protobuf_modules(report["before"]) == []
    assert "opentelemetry.proto.metrics.v1.metrics_pb2" in protobuf_modules(report["after"])  # the probe can see it
