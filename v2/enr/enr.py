"""Ethereum Node Records (EIP-778, identity scheme "v4") with the Waku keys of 31/WAKU2-ENR (pure).

A record is the RLP list ``[signature, seq, k1, v1, k2, v2, ...]``, keys sorted and unique, at most
300 bytes; ``signature`` is the 64-byte ``r ‖ s`` secp256k1 signature over
``keccak256(rlp([seq, k1, v1, ...]))`` (waku-v2.md §13).  Every decoded record is verified: an
:class:`Enr` instance is always a correctly signed record.

Waku keys: ``waku2`` (capability bitfield), ``multiaddrs`` (``uint16_be(len) ‖ binary multiaddr``
for addresses ip/tcp cannot express), ``rs`` (cluster + shard list; the only sharding key we emit,
waku-v2.md §13 bit-order note) and ``rsv`` (bit vector; decoded leniently).
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntFlag

import rlp
from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from Crypto.Hash import keccak

from v2.enr.maddr import MultiaddrError, b58encode, decode_multiaddr, encode_multiaddr
from v2.errors import V2Error

__all__ = [
    "MAX_RECORD_SIZE",
    "Enr",
    "EnrError",
    "RelayShards",
    "RlpItem",
    "Waku2",
    "b64url_decode",
    "b64url_encode",
    "keccak256",
    "peer_id_from_public_key",
    "verify_signature",
]

MAX_RECORD_SIZE = 300  # EIP-778 "the maximum encoded size of a node record is 300 bytes"
_MAX_TEXT_SIZE = 4 + (MAX_RECORD_SIZE * 4 + 2) // 3
_RSV_LEN = 2 + 128

RlpItem = bytes | list["RlpItem"]


class EnrError(V2Error):
    """A record that is malformed, too large, unsigned or wrongly signed."""


class Waku2(IntFlag):
    """31/WAKU2-ENR ``waku2`` capability bits (bit 5 = mix is nwaku's, outside the spec)."""

    RELAY = 1 << 0
    STORE = 1 << 1
    FILTER = 1 << 2
    LIGHTPUSH = 1 << 3
    SYNC = 1 << 4
    MIX = 1 << 5


@dataclass(frozen=True, slots=True)
class RelayShards:
    cluster: int
    shards: tuple[int, ...]


def keccak256(data: bytes) -> bytes:
    return keccak.new(data=data, digest_bits=256).digest()


def peer_id_from_public_key(compressed: bytes) -> str:
    """libp2p peer id of a secp256k1 key: base58(identity multihash(protobuf PublicKey)).

    libp2p peer-ids spec: keys whose protobuf encoding is at most 42 bytes use the identity
    multihash; ``PublicKey{Type=Secp256k1(2), Data=33-byte compressed point}`` is 37 bytes.
    """
    if len(compressed) != 33:
        raise EnrError("secp256k1 public key must be 33 bytes compressed")
    pb = b"\x08\x02\x12\x21" + compressed
    return b58encode(b"\x00" + bytes([len(pb)]) + pb)


@functools.lru_cache(maxsize=1 << 16)
def _node_id(public_key: bytes) -> bytes:
    # Cached: discv5's routing table and lookups ask for node ids of the same records constantly.
    return keccak256(PublicKey(public_key).format(compressed=False)[1:])


def _int_bytes(n: int) -> bytes:
    """RLP's big-endian integer (no leading zeros; 0 is the empty string)."""
    return n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""


def _port(value: RlpItem | None) -> int | None:
    # Lenient about leading zeros (some encoders write fixed 2 bytes); reject what cannot be a port.
    if not isinstance(value, bytes) or len(value) > 2:
        return None
    return int.from_bytes(value, "big")


def verify_signature(public_key: bytes, signature: bytes, digest: bytes) -> bool:
    """64-byte r‖s over a 32-byte digest; False (never an exception) for anything invalid."""
    try:
        der = cdata_to_der(deserialize_compact(signature))
        # libsecp256k1 rejects non-normalised (high-s) signatures, as go-ethereum does.
        return bool(PublicKey(public_key).verify(der, digest, hasher=None))
    except (ValueError, TypeError):
        return False


def b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", text):
        raise EnrError("not base64url")
    body = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raise EnrError("not base64url") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Enr:
    """A verified v4 node record.  Construct with :meth:`build`, :meth:`from_rlp` or :meth:`from_text`."""

    seq: int
    pairs: tuple[tuple[bytes, RlpItem], ...]  # sorted by key, unique keys
    signature: bytes
    raw: bytes

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(
        cls,
        private_key: bytes,
        seq: int = 1,
        *,
        ip: str | None = None,
        tcp: int | None = None,
        udp: int | None = None,
        ip6: str | None = None,
        tcp6: int | None = None,
        udp6: int | None = None,
        waku2: Waku2 | int | None = None,
        multiaddrs: Sequence[str] = (),
        cluster: int | None = None,
        shards: Sequence[int] = (),
        extra: Mapping[str, bytes] | None = None,
    ) -> Enr:
        """Sign a new record with ``private_key`` (32 bytes; RFC 6979 nonces, so output is deterministic)."""
        try:
            sk = PrivateKey(private_key)
        except (ValueError, TypeError) as exc:
            raise EnrError(f"bad private key: {exc}") from None
        if not 0 <= seq < 1 << 64:
            raise EnrError("seq must be a uint64")
        pub = sk.public_key.format(compressed=True)
        kv: dict[bytes, bytes] = {b"id": b"v4", b"secp256k1": pub}
        if ip is not None:
            kv[b"ip"] = ipaddress.IPv4Address(ip).packed
        if ip6 is not None:
            kv[b"ip6"] = ipaddress.IPv6Address(ip6).packed
        for key, port in ((b"tcp", tcp), (b"udp", udp), (b"tcp6", tcp6), (b"udp6", udp6)):
            if port is not None:
                if not 0 <= port <= 0xFFFF:
                    raise EnrError(f"{key.decode()} port out of range: {port}")
                kv[key] = _int_bytes(port)
        if waku2 is not None:
            if not 0 <= int(waku2) <= 0xFF:
                raise EnrError("waku2 is one byte")
            kv[b"waku2"] = bytes([int(waku2)])
        if multiaddrs:
            kv[b"multiaddrs"] = _encode_waku_multiaddrs(multiaddrs, peer_id_from_public_key(pub))
        if cluster is not None:
            kv[b"rs"] = _encode_rs(cluster, shards)
        elif shards:
            raise EnrError("shards need a cluster")
        for name, value in (extra or {}).items():
            kv[name.encode()] = value
        pairs = tuple(sorted(kv.items()))
        content: list[RlpItem] = [_int_bytes(seq)]
        for k, v in pairs:
            content += [k, v]
        sig = sk.sign_recoverable(keccak256(rlp.encode(content)), hasher=None)[:64]
        raw = rlp.encode([sig, *content])
        if len(raw) > MAX_RECORD_SIZE:
            raise EnrError(f"record of {len(raw)} bytes exceeds {MAX_RECORD_SIZE}")
        return cls(seq, tuple((k, v) for k, v in pairs), sig, raw)

    @classmethod
    def from_rlp(cls, raw: bytes) -> Enr:
        """Decode and verify the RLP form (what peer exchange carries)."""
        if len(raw) > MAX_RECORD_SIZE:
            raise EnrError(f"record of {len(raw)} bytes exceeds {MAX_RECORD_SIZE}")
        try:
            items = rlp.decode(bytes(raw), strict=True)
        except (rlp.exceptions.RLPException, RecursionError) as exc:
            raise EnrError(f"not RLP: {exc}") from None
        if not isinstance(items, list) or len(items) < 2 or len(items) % 2:
            raise EnrError("a record is a list [signature, seq, k, v, ...]")
        sig, seq_b, rest = items[0], items[1], items[2:]
        if not isinstance(sig, bytes) or not isinstance(seq_b, bytes) or len(seq_b) > 8:
            raise EnrError("bad signature or seq")
        pairs: list[tuple[bytes, RlpItem]] = []
        for i in range(0, len(rest), 2):
            key = rest[i]
            if not isinstance(key, bytes):
                raise EnrError("keys are strings")
            if pairs and key <= pairs[-1][0]:
                raise EnrError("keys must be sorted and unique")
            pairs.append((key, rest[i + 1]))
        kv = dict(pairs)
        if kv.get(b"id") != b"v4":
            raise EnrError("unsupported identity scheme (only v4)")
        pub = kv.get(b"secp256k1")
        if not isinstance(pub, bytes) or len(pub) != 33:
            raise EnrError("v4 records need a 33-byte secp256k1 key")
        if len(sig) != 64 or not verify_signature(pub, sig, keccak256(rlp.encode(items[1:]))):
            raise EnrError("invalid signature")
        return cls(int.from_bytes(seq_b, "big"), tuple(pairs), sig, bytes(raw))

    @classmethod
    def from_text(cls, text: str) -> Enr:
        """Decode and verify ``enr:<base64url>``."""
        text = text.strip()
        if not text.startswith("enr:"):
            raise EnrError("text form starts with 'enr:'")
        if len(text) > _MAX_TEXT_SIZE + 2:
            raise EnrError("record text too long")
        return cls.from_rlp(b64url_decode(text[4:]))

    def __hash__(self) -> int:
        # Values may be RLP lists (unhashable); the signed bytes identify the record.
        return hash(self.raw)

    def to_text(self) -> str:
        return "enr:" + b64url_encode(self.raw)

    def __str__(self) -> str:
        return self.to_text()

    # ------------------------------------------------------------------ generic access

    def get(self, key: str) -> RlpItem | None:
        kb = key.encode()
        for k, v in self.pairs:
            if k == kb:
                return v
        return None

    def _bytes(self, key: str) -> bytes | None:
        v = self.get(key)
        return v if isinstance(v, bytes) else None

    @property
    def public_key(self) -> bytes:
        """33-byte compressed secp256k1 key (present in every verified record)."""
        pub = self._bytes("secp256k1")
        assert pub is not None
        return pub

    @property
    def node_id(self) -> bytes:
        """keccak256 of the 64-byte uncompressed key (EIP-778 "v4")."""
        return _node_id(self.public_key)

    @property
    def peer_id(self) -> str:
        return peer_id_from_public_key(self.public_key)

    # ------------------------------------------------------------------ EIP-778 keys

    @property
    def ip(self) -> str | None:
        v = self._bytes("ip")
        return str(ipaddress.IPv4Address(v)) if v is not None and len(v) == 4 else None

    @property
    def ip6(self) -> str | None:
        v = self._bytes("ip6")
        return str(ipaddress.IPv6Address(v)) if v is not None and len(v) == 16 else None

    @property
    def tcp(self) -> int | None:
        return _port(self.get("tcp"))

    @property
    def udp(self) -> int | None:
        return _port(self.get("udp"))

    @property
    def tcp6(self) -> int | None:
        """EIP-778: "if omitted, same as tcp"."""
        p = _port(self.get("tcp6"))
        return p if p is not None else self.tcp

    @property
    def udp6(self) -> int | None:
        p = _port(self.get("udp6"))
        return p if p is not None else self.udp

    # ------------------------------------------------------------------ Waku keys

    @property
    def waku2(self) -> Waku2 | None:
        v = self._bytes("waku2")
        return Waku2(v[0]) if v is not None and len(v) == 1 else None

    @property
    def waku_multiaddrs(self) -> list[str]:
        """The ``multiaddrs`` entries as text (without the /p2p/<id> of this record's peer)."""
        v = self._bytes("multiaddrs")
        return _decode_waku_multiaddrs(v) if v is not None else []

    @property
    def shards(self) -> RelayShards | None:
        """From ``rs`` or ``rsv``, picked by length as js-waku does; None if absent or malformed."""
        for key in ("rs", "rsv"):
            v = self._bytes(key)
            if v is not None:
                return _decode_shards(v)
        return None

    def multiaddrs(self) -> list[str]:
        """Every TCP/WebSocket address of this record as ``.../p2p/<peer id>`` (udp is not libp2p-dialable)."""
        pid = self.peer_id
        out: list[str] = []
        if self.ip is not None and self.tcp:  # port 0 (RLP "") is not dialable
            out.append(f"/ip4/{self.ip}/tcp/{self.tcp}/p2p/{pid}")
        if self.ip6 is not None and self.tcp6:
            out.append(f"/ip6/{self.ip6}/tcp/{self.tcp6}/p2p/{pid}")
        for ma in self.waku_multiaddrs:
            if "/p2p/" in ma:  # circuit address: 31/WAKU2-ENR strips /p2p-circuit before encoding
                out.append(f"{ma.removesuffix('/p2p-circuit')}/p2p-circuit/p2p/{pid}")
            elif "/tcp/" in ma:
                out.append(f"{ma}/p2p/{pid}")
        return list(dict.fromkeys(out))


def _encode_waku_multiaddrs(addrs: Sequence[str], own_peer_id: str) -> bytes:
    out = bytearray()
    for ma in addrs:
        # js-waku's encoder refuses an embedded peer id: drop our own; keep a circuit relay's.
        ma = ma.removesuffix(f"/p2p/{own_peer_id}").removesuffix("/p2p-circuit")
        try:
            b = encode_multiaddr(ma)
        except MultiaddrError as exc:
            raise EnrError(f"multiaddr {ma!r}: {exc}") from None
        if len(b) > 0xFFFF:
            raise EnrError("multiaddr too long")
        out += len(b).to_bytes(2, "big") + b
    return bytes(out)


def _decode_waku_multiaddrs(value: bytes) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos + 2 <= len(value):
        n = int.from_bytes(value[pos:pos + 2], "big")
        chunk = value[pos + 2:pos + 2 + n]
        pos += 2 + n
        if len(chunk) != n:
            break  # truncated tail: keep what decoded
        try:
            out.append(decode_multiaddr(chunk))
        except MultiaddrError:
            continue  # one unknown/odd entry must not hide the others
    return out


def _encode_rs(cluster: int, shards: Sequence[int]) -> bytes:
    uniq = sorted(set(shards))
    if not 0 <= cluster <= 0xFFFF or any(not 0 <= s <= 0xFFFF for s in uniq):
        raise EnrError("cluster and shards are uint16")
    if len(uniq) > 0xFF:
        raise EnrError("rs holds at most 255 shards")
    return cluster.to_bytes(2, "big") + bytes([len(uniq)]) + b"".join(s.to_bytes(2, "big") for s in uniq)


def _decode_shards(v: bytes) -> RelayShards | None:
    if len(v) < 3:
        return None
    cluster = int.from_bytes(v[:2], "big")
    if len(v) == _RSV_LEN:
        # nwaku's order: shard i is byte i//8, bit i%8 from the LSB (the spec text and js-waku differ).
        vec = v[2:]
        return RelayShards(cluster, tuple(i for i in range(1024) if vec[i // 8] >> (i % 8) & 1))
    count = v[2]
    if len(v) != 3 + 2 * count:
        return None
    return RelayShards(cluster, tuple(int.from_bytes(v[3 + 2 * i:5 + 2 * i], "big") for i in range(count)))
