"""The shared wire helpers in v2/codec.py: unsigned varint, strict protobuf parsing.

A proto2 message from protobuf itself stands in for the generated ones (optional fields have presence).
"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from hypothesis import given
from hypothesis import strategies as st

from v2.codec import VarintError, decode_uvarint, encode_uvarint, optional, parse, require, set_present
from v2.errors import V2Error


class _Refused(V2Error):
    pass


@pytest.mark.parametrize(("n", "wire"), [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"),
                                          (300, b"\xac\x02"), (16384, b"\x80\x80\x01")])
def test_uvarint_known_encodings(n: int, wire: bytes) -> None:
    assert encode_uvarint(n) == wire
    assert decode_uvarint(wire, max_bytes=9) == (n, len(wire))


@given(st.integers(min_value=0, max_value=2**63 - 1), st.binary(max_size=4), st.binary(max_size=4))
def test_uvarint_roundtrip_at_any_position(n: int, before: bytes, after: bytes) -> None:
    wire = encode_uvarint(n)
    assert decode_uvarint(before + wire + after, len(before), max_bytes=9) == (n, len(before) + len(wire))


@given(st.integers(min_value=128, max_value=2**63 - 1))
def test_uvarint_truncated_is_none(n: int) -> None:
    wire = encode_uvarint(n)
    assert decode_uvarint(wire[:-1], max_bytes=9) is None


@pytest.mark.parametrize("max_bytes", [9, 10])
def test_uvarint_bound(max_bytes: int) -> None:
    assert decode_uvarint(b"\xff" * (max_bytes - 1), max_bytes=max_bytes) is None  # may still end
    assert decode_uvarint(b"\xff" * (max_bytes - 1) + b"\x01", max_bytes=max_bytes) is not None
    with pytest.raises(VarintError):
        decode_uvarint(b"\xff" * max_bytes, max_bytes=max_bytes)
    with pytest.raises(VarintError):
        decode_uvarint(b"\x00" + b"\x80" * max_bytes + b"\x01", 1, max_bytes=max_bytes)


@given(st.binary(max_size=16), st.integers(min_value=0, max_value=16), st.integers(min_value=1, max_value=10))
def test_uvarint_decoder_fuzz(data: bytes, pos: int, max_bytes: int) -> None:
    try:
        head = decode_uvarint(data, pos, max_bytes=max_bytes)
    except VarintError:
        return
    if head is not None:
        n, end = head
        assert pos < end <= min(len(data), pos + max_bytes)
        assert encode_uvarint(n) == data[pos:end] or data[end - 1] == 0  # non-minimal encodings decode too


def test_parse_require_optional() -> None:
    wire = FileDescriptorProto(name="x.proto").SerializeToString()
    m = parse(FileDescriptorProto(), wire, _Refused)
    assert optional(m, "name") == "x.proto"
    require(m, _Refused, "name")
    assert optional(FileDescriptorProto(), "name") is None
    with pytest.raises(_Refused, match=r"^x\.name missing$"):
        require(FileDescriptorProto(), _Refused, "name", prefix="x.")
    with pytest.raises(_Refused, match=r"^not a FileDescriptorProto: "):
        parse(FileDescriptorProto(), b"\x0a\x05", _Refused)
    with pytest.raises(_Refused, match=r"^bad metadata: "):
        parse(FileDescriptorProto(), b"\x0a\x05", _Refused, "bad metadata")


@given(st.binary(max_size=64))
def test_parse_fuzz_raises_only_the_given_error(data: bytes) -> None:
    try:
        parse(FileDescriptorProto(), data, _Refused)
    except _Refused:
        pass


def test_set_present_writes_only_values() -> None:
    m = FileDescriptorProto()
    set_present(m, name=None, package="p")
    assert not m.HasField("name") and m.package == "p"
    set_present(m, name="")  # an empty value is still a value: the tag is written
    assert m.HasField("name")
