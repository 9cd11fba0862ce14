"""The binary multiaddr codec for the few protocols a Waku ENR carries (pure).

31/WAKU2-ENR stores addresses that ``ip``/``tcp``/``udp`` cannot express (ws, wss, dns4/dns6,
circuit relay) as binary multiaddrs (multiformats/multiaddr: ``varint(code) ‖ value``, where the
value is fixed-size for ip4/ip6/tcp/udp, absent for ws/wss/p2p-circuit, and varint-length-prefixed
for dns*/p2p).  We implement only these codes so decoding an untrusted record never reaches the
general-purpose ``multiaddr`` package (and v2/enr stays free of libp2p).
"""

from __future__ import annotations

import ipaddress

from v2.codec import VarintError, decode_uvarint, encode_uvarint
from v2.errors import V2Error

__all__ = [
    "MultiaddrError",
    "b58decode",
    "b58encode",
    "decode_multiaddr",
    "encode_multiaddr",
]


class MultiaddrError(V2Error):
    """A multiaddr (text or binary) we cannot parse or do not support."""


# multiformats/multicodec table entries (code -> (name, value size: >0 fixed, 0 none, -1 varint-prefixed)).
_PROTOCOLS: dict[int, tuple[str, int]] = {
    4: ("ip4", 4),
    6: ("tcp", 2),
    41: ("ip6", 16),
    53: ("dns", -1),
    54: ("dns4", -1),
    55: ("dns6", -1),
    56: ("dnsaddr", -1),
    273: ("udp", 2),
    290: ("p2p-circuit", 0),
    421: ("p2p", -1),
    477: ("ws", 0),
    478: ("wss", 0),
}
_BY_NAME = {name: (code, size) for code, (name, size) in _PROTOCOLS.items()}
_BY_NAME["ipfs"] = _BY_NAME["p2p"]  # legacy alias of p2p

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (libp2p peer ids)."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        try:
            n = n * 58 + _B58_INDEX[c]
        except KeyError:
            raise MultiaddrError(f"invalid base58 character {c!r}") from None
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        head = decode_uvarint(data, pos, max_bytes=9)  # multiformats/unsigned-varint: at most 9 bytes
    except VarintError:
        head = None
    if head is None:
        raise MultiaddrError("truncated or overlong varint")
    return head


def encode_multiaddr(text: str) -> bytes:
    """``/ip4/1.2.3.4/tcp/80/ws`` -> binary form."""
    parts = text.split("/")
    if len(parts) < 2 or parts[0] != "":
        raise MultiaddrError(f"multiaddr must start with '/': {text!r}")
    out = bytearray()
    i = 1
    while i < len(parts):
        name = parts[i]
        if name == "" and i == len(parts) - 1:
            break  # tolerate one trailing slash
        if name not in _BY_NAME:
            raise MultiaddrError(f"unsupported multiaddr protocol {name!r}")
        code, size = _BY_NAME[name]
        out += encode_uvarint(code)
        i += 1
        if size == 0:
            continue
        if i >= len(parts):
            raise MultiaddrError(f"{name} needs a value")
        value = parts[i]
        i += 1
        try:
            if name == "ip4":
                out += ipaddress.IPv4Address(value).packed
            elif name == "ip6":
                out += ipaddress.IPv6Address(value).packed
            elif name in ("tcp", "udp"):
                port = int(value, 10)
                if not 0 <= port <= 0xFFFF:
                    raise ValueError(port)
                out += port.to_bytes(2, "big")
            elif name in ("p2p", "ipfs"):
                mh = b58decode(value)
                out += encode_uvarint(len(mh)) + mh
            else:
                raw = value.encode("utf-8")
                if not raw:
                    raise ValueError("empty name")
                out += encode_uvarint(len(raw)) + raw
        except (ValueError, ipaddress.AddressValueError) as exc:
            raise MultiaddrError(f"bad {name} value {value!r}: {exc}") from None
    if not out:
        raise MultiaddrError("empty multiaddr")
    return bytes(out)


def decode_multiaddr(data: bytes) -> str:
    """Binary form -> text; raises :class:`MultiaddrError` on anything malformed or unknown."""
    if not data:
        raise MultiaddrError("empty multiaddr")
    parts: list[str] = []
    pos = 0
    while pos < len(data):
        code, pos = _read_uvarint(data, pos)
        if code not in _PROTOCOLS:
            raise MultiaddrError(f"unsupported multiaddr code {code}")
        name, size = _PROTOCOLS[code]
        parts.append(name)
        if size == 0:
            continue
        if size < 0:
            size, pos = _read_uvarint(data, pos)
            if size == 0:
                raise MultiaddrError(f"empty {name} value")
        value = data[pos:pos + size]
        if len(value) != size:
            raise MultiaddrError(f"truncated {name} value")
        pos += size
        if name == "ip4":
            parts.append(str(ipaddress.IPv4Address(value)))
        elif name == "ip6":
            parts.append(str(ipaddress.IPv6Address(value)))
        elif name in ("tcp", "udp"):
            parts.append(str(int.from_bytes(value, "big")))
        elif name == "p2p":
            parts.append(b58encode(value))
        else:
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                raise MultiaddrError(f"{name} value is not UTF-8") from None
            if "/" in text:
                raise MultiaddrError(f"{name} value contains '/'")
            parts.append(text)
    return "/" + "/".join(parts)
