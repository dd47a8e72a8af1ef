"""Protobuf wire format, the few pieces the hand-written encoders need (OTLP, remote write).

From the protobuf encoding guide: a tag is (field number << 3) | wire type; a length-delimited
(LEN) field is its tag, a varint length and the bytes. The encoders write messages from parts
encoded once per series, which the generated classes cannot do (see each encoder's docstring).
"""

from __future__ import annotations

LEN, VARINT, I64 = 2, 0, 1

_SMALL_VARINTS = [bytes((n,)) for n in range(0x80)]


def varint(value: int) -> bytes:
    """A varint; a negative int64 as its 64-bit two's complement (ten bytes), as protobuf writes it."""
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    value &= 0xFFFF_FFFF_FFFF_FFFF
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
