"""The devp2p base protocol "p2p": Hello, Disconnect, Ping, Pong; capability offsets; snappy.

Pure codecs (rlpx.md §5-7).  Message ids 0x00-0x0f belong to p2p; shared capabilities follow in
alphabetical order from 0x10, each taking as many ids as it declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import cramjam
import rlp

from v1.errors import V1Error

__all__ = [
    "BASE_PROTOCOL_LENGTH",
    "Capability",
    "DisconnectReason",
    "Hello",
    "P2PCode",
    "ProtocolError",
    "SharedCapability",
    "decode_disconnect",
    "decode_hello",
    "encode_disconnect",
    "encode_hello",
    "shared_capabilities",
    "snappy_compress",
    "snappy_decompress",
]

BASE_PROTOCOL_LENGTH = 16
MAX_HELLO_SIZE = 2048  # geth refuses larger Hellos


class P2PCode(IntEnum):
    HELLO = 0x00
    DISCONNECT = 0x01
    PING = 0x02
    PONG = 0x03


class DisconnectReason(IntEnum):
    REQUESTED = 0x00
    TCP_ERROR = 0x01
    BREACH_OF_PROTOCOL = 0x02
    USELESS_PEER = 0x03
    TOO_MANY_PEERS = 0x04
    ALREADY_CONNECTED = 0x05
    INCOMPATIBLE_VERSION = 0x06
    NULL_IDENTITY = 0x07
    CLIENT_QUITTING = 0x08
    UNEXPECTED_IDENTITY = 0x09
    CONNECTED_TO_SELF = 0x0A
    PING_TIMEOUT = 0x0B
    SUBPROTOCOL_ERROR = 0x10

    @classmethod
    def of(cls, code: int) -> DisconnectReason | int:
        try:
            return cls(code)
        except ValueError:
            return code


class ProtocolError(V1Error):
    """The peer broke the protocol; ``reason`` is what we tell it before closing.

    ``kind`` names the rule that was broken (a metric label: an operator must be able to tell a
    corrupt stream from a malformed Hello or an oversize message).
    """

    def __init__(self, message: str, reason: DisconnectReason = DisconnectReason.BREACH_OF_PROTOCOL, *,
                 kind: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Capability:
    name: str
    version: int
    length: int = 0  # number of message ids it uses (waku/1: 128); 0 when only advertised


@dataclass(frozen=True, slots=True)
class SharedCapability:
    name: str
    version: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    client_id: str
    capabilities: tuple[tuple[str, int], ...]
    listen_port: int
    node_id: bytes


def _uint(v: object, what: str, limit: int = 8) -> int:
    if not isinstance(v, bytes) or len(v) > limit or (len(v) > 0 and v[0] == 0):
        raise ProtocolError(f"{what}: not a canonical integer", kind="bad_hello")
    return int.from_bytes(v, "big")


def encode_hello(h: Hello) -> bytes:
    return rlp.encode([h.version, h.client_id.encode(), [[n.encode(), v] for n, v in h.capabilities],
                       h.listen_port, h.node_id])


def decode_hello(data: bytes) -> Hello:
    """Lenient as EIP-8 asks: extra list elements are ignored."""
    if len(data) > MAX_HELLO_SIZE:
        raise ProtocolError(f"Hello of {len(data)} bytes exceeds {MAX_HELLO_SIZE}", kind="bad_hello")
    # RecursionError: pyrlp decodes nested lists recursively; ~1 000 levels (2-3 KB) exhaust the stack.
    try:
        item = rlp.decode(data, strict=False)
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
        raise ProtocolError(f"malformed Hello: {exc}", kind="bad_hello") from None
    if not isinstance(item, list) or len(item) < 5:
        raise ProtocolError("Hello is not a list of >= 5 items", kind="bad_hello")
    version = _uint(item[0], "Hello version")
    if not isinstance(item[1], bytes) or not isinstance(item[2], list) or not isinstance(item[4], bytes):
        raise ProtocolError("Hello fields have wrong types", kind="bad_hello")
    caps: list[tuple[str, int]] = []
    for c in item[2]:
        if not isinstance(c, list) or len(c) < 2 or not isinstance(c[0], bytes):
            raise ProtocolError("malformed capability in Hello", kind="bad_hello")
        caps.append((c[0].decode("ascii", "replace"), _uint(c[1], "capability version")))
    port = _uint(item[3], "Hello listen port") if isinstance(item[3], bytes) else 0
    if len(item[4]) != 64:
        raise ProtocolError("Hello node id is not 64 bytes", DisconnectReason.NULL_IDENTITY, kind="bad_hello")
    return Hello(version, item[1].decode("utf-8", "replace"), tuple(caps), port, item[4])


def encode_disconnect(reason: int) -> bytes:
    return rlp.encode([reason])


def decode_disconnect(data: bytes) -> DisconnectReason | int:
    """geth sends ``[reason]``; a bare byte and an RLP string wrapping a list also occur (nim)."""
    try:
        item = rlp.decode(data, strict=False)
    except (rlp.exceptions.DecodingError, RecursionError):
        return DisconnectReason.of(data[0]) if len(data) == 1 else DisconnectReason.REQUESTED
    while isinstance(item, bytes) and len(item) > 1:
        try:
            item = rlp.decode(item, strict=False)
        except (rlp.exceptions.DecodingError, RecursionError):
            break
    if isinstance(item, list):
        item = item[0] if item else b""
    if isinstance(item, bytes):
        return DisconnectReason.of(int.from_bytes(item[:1], "big") if item else 0)
    return DisconnectReason.REQUESTED


def shared_capabilities(
    ours: tuple[Capability, ...], theirs: tuple[tuple[str, int], ...]
) -> tuple[SharedCapability, ...]:
    """rlpx.md §6: same name and version; highest shared version per name; alphabetical offsets."""
    their_set = set(theirs)
    best: dict[str, Capability] = {}
    for c in ours:
        if (c.name, c.version) in their_set and (c.name not in best or c.version > best[c.name].version):
            best[c.name] = c
    out, offset = [], BASE_PROTOCOL_LENGTH
    for name in sorted(best):
        c = best[name]
        out.append(SharedCapability(c.name, c.version, offset, c.length))
        offset += c.length
    return tuple(out)


def snappy_compress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


def _uvarint(data: bytes) -> int:
    n = shift = 0
    for i, b in enumerate(data[:5]):
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n
        shift += 7
        if i == 4:
            break
    raise ProtocolError("bad snappy length header", kind="bad_snappy")


def snappy_decompress(data: bytes, max_size: int) -> bytes:
    """Check the announced length before allocating (EIP-706; geth caps at 16 MiB)."""
    size = _uvarint(data)
    if size > max_size:
        raise ProtocolError(f"snappy message announces {size} bytes (max {max_size})", kind="message_too_large")
    try:
        out = bytes(cramjam.snappy.decompress_raw(data))
    except Exception as exc:  # cramjam raises its own DecompressionError type
        raise ProtocolError(f"bad snappy data: {exc}", kind="bad_snappy") from None
    if len(out) != size:
        raise ProtocolError("snappy length mismatch", kind="bad_snappy")
    return out
