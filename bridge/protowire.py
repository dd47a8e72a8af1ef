"""Protobuf wire format, the few pieces the hand-written encoders and reply decoders need (OTLP, remote write).

From the protobuf encoding guide: a tag is (field number << 3) | wire type; a length-delimited
(LEN) field is its tag, a varint length and the bytes. The encoders write messages from parts
encoded once per series, which the generated classes cannot do (see each encoder's docstring).
The reader, `fields`, lets the OTLP sink read a server's answer without loading protobuf's
runtime (bridge/sinks/otlp/replies.py); it is as strict as protobuf's own parser (upb), except
that it refuses groups, which no proto3 message holds.
"""

from __future__ import annotations

from collections.abc import Iterator

LEN, VARINT, I64, I32 = 2, 0, 1, 5

_SMALL_VARINTS = [bytes((n,)) for n in range(0x80)]
_UINT64 = (1 << 64) - 1
# The longest varints protobuf's parser accepts: any 64-bit value; a tag (a uint32) and a length take at most 5.
_VALUE_BYTES, _TAG_BYTES, _LENGTH_BYTES = 10, 5, 5
_FIXED_WIDTHS = {I64: 8, I32: 4}


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message: truncated, an overlong varint, a bad tag or wire type,
    or a string field that is not UTF-8."""


def varint(value: int) -> bytes:
    """A varint; a negative int64 as its 64-bit two's complement (ten bytes), as protobuf writes it."""
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    value &= _UINT64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return field_head(number, len(payload)) + payload


def field_head(number: int, size: int) -> bytes:
    """The tag and length of a length-delimited field of `size` bytes, for a payload joined after it."""
    return varint(number << 3 | LEN) + varint(size)


def string_fields(*fields: tuple[int, str]) -> bytes:
    """String fields, leaving out empty ones as protobuf does."""
    return b"".join(field(number, text.encode()) for number, text in fields if text)


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a serialized message, in order; WireError if malformed.

    A VARINT's value is its unsigned 64-bit int (see `signed`), a LEN's its bytes, an I64's or I32's
    its unsigned little-endian int. A field may repeat: the caller applies protobuf's rules (the last
    scalar wins, a message's occurrences merge). The error may come after earlier fields were yielded.
    """
    position = 0
    while position < len(data):
        tag, position = _varint(data, position, _TAG_BYTES)
        number, wire_type = tag >> 3, tag & 7
        if number == 0 or tag > 0xFFFF_FFFF:
            raise WireError(f"invalid tag {tag}")
        if wire_type == VARINT:
            value, position = _varint(data, position, _VALUE_BYTES)
            yield number, wire_type, value
            continue
        if wire_type == LEN:
            size, position = _varint(data, position, _LENGTH_BYTES)
        elif wire_type in _FIXED_WIDTHS:
            size = _FIXED_WIDTHS[wire_type]
        else:
            kind = "a group, which proto3 does not use" if wire_type in (3, 4) else "no such wire type"
            raise WireError(f"field {number}: wire type {wire_type}, {kind}")
        end = position + size
        if end > len(data):
            raise WireError(f"field {number} runs past the end")
        payload = data[position:end]
        yield number, wire_type, payload if wire_type == LEN else int.from_bytes(payload, "little")
        position = end


def signed(value: int, bits: int) -> int:
    """A VARINT as the int32 (bits=32) or int64 (bits=64) it carries: protobuf keeps the low bits, two's complement."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def text(payload: bytes) -> str:
    """A proto3 string field's value: protobuf refuses the whole message when one is not UTF-8, and so does this."""
    try:
        return payload.decode()
    except UnicodeDecodeError as error:
        raise WireError(f"a string field is not UTF-8: {error.reason}") from None


def _varint(data: bytes, position: int, max_bytes: int) -> tuple[int, int]:
    """The varint at `position` (at most `max_bytes` long, low 64 bits kept) and the position after it."""
    value = shift = 0
    for index in range(position, min(position + max_bytes, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & _UINT64, index + 1
        shift += 7
    raise WireError("truncated varint" if position + max_bytes > len(data) else f"varint over {max_bytes} bytes")
