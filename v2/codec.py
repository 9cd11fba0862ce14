"""Pieces every v2 wire codec shares (pure): the unsigned varint and the protobuf field helpers.

The unsigned varint (multiformats/unsigned-varint, the same encoding protobuf uses) frames every
request/response (waku-v2.md §2), prefixes multiaddr components (31/WAKU2-ENR) and builds the
pinned WakuMessage encoding (14/WAKU2-MESSAGE).  ``decode_uvarint`` takes the caller's length
bound because the callers differ on purpose: a stream length prefix may use 10 bytes, a multiaddr
code or length 9.

The protobuf helpers implement the strictness the codecs share (waku-v2.md §3): anything the
parser refuses, and a missing tag nwaku requires, becomes the codec's own error, never another
exception; ``optional``/``set_present`` read and write ``optional`` fields with their presence
(absent is None, never the proto default).  They take the generated message object, so the
generated ``*_pb2`` modules are still imported only by the ``rpc_codec.py`` beside them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from v2.errors import V2DecodeError, V2Error

__all__ = ["VarintError", "decode_uvarint", "encode_uvarint", "optional", "parse", "require", "set_present"]


class VarintError(V2DecodeError):
    """A varint longer than the caller allows."""


M = TypeVar("M", bound=Message)

# What the upb parser raises on hostile bytes: DecodeError for a bad wire format, ValueError (and
# its UnicodeDecodeError) for invalid UTF-8 in a string field, RuntimeError (and its
# RecursionError) for nesting past its recursion limit.
_PARSE_ERRORS = (DecodeError, ValueError, RuntimeError)


def encode_uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_uvarint(data: bytes | bytearray, pos: int = 0, *, max_bytes: int) -> tuple[int, int] | None:
    """``(value, position after it)``, or None if ``data`` ends inside the varint.

    Raises :class:`VarintError` when ``max_bytes`` bytes all carry the continuation bit.
    """
    n = shift = 0
    for i in range(pos, min(pos + max_bytes, len(data))):
        b = data[i]
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i + 1
        shift += 7
    if len(data) - pos >= max_bytes:
        raise VarintError(f"varint longer than {max_bytes} bytes")
    return None


def parse(msg: M, data: bytes, error: type[V2Error], what: str | None = None) -> M:
    """Parse ``data`` into ``msg``; a refusal raises ``error("<what>: <reason>")``.

    ``what`` defaults to ``"not a <message type>"``.
    """
    try:
        msg.ParseFromString(bytes(data))
    except _PARSE_ERRORS as exc:
        raise error(f"{what or 'not a ' + type(msg).__name__}: {exc}") from None
    return msg


def require(msg: Message, error: type[V2Error], *fields: str, prefix: str = "") -> None:
    """Raise ``error("<prefix><field> missing")`` for the first of ``fields`` whose tag is absent."""
    for name in fields:
        if not msg.HasField(name):
            raise error(f"{prefix}{name} missing")


def optional(msg: Message, name: str) -> Any:
    """The value of an ``optional`` field, None when its tag is absent (not the proto default)."""
    return getattr(msg, name) if msg.HasField(name) else None


def set_present(msg: Message, **values: Any) -> None:
    """Write each of ``values`` that is not None; None leaves the ``optional`` field's tag absent."""
    for name, value in values.items():
        if value is not None:
            setattr(msg, name, value)
