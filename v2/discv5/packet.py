"""discv5 v5.1 packet codec (discv5-wire.md "Packet Encoding"; go-ethereum v5wire/encoding.go).

``packet = masking-iv(16) ‖ masked-header ‖ message``; the header is AES-128-CTR masked with the
first 16 bytes of the *recipient's* node id; ``header = static-header(23) ‖ authdata``, with
``static-header = protocol-id(6) ‖ version(2) ‖ flag(1) ‖ nonce(12) ‖ authdata-size(2)``.  The
protocol id is a parameter: Waku uses ``d5waku`` (33/WAKU2-DISCV5; go-waku waku/v2/discv5/discover.go
``protocolID``, nwaku's ``-d:discv5_protocol_id="d5waku"``), Ethereum ``discv5``.

Pure: every random input (masking-iv, nonce) is an argument, so encoders reproduce the spec vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from Crypto.Cipher import AES

from v2.discv5.crypto import GCM_TAG_SIZE, aes_gcm_decrypt, aes_gcm_encrypt
from v2.discv5.errors import Discv5DecodeError, WrongProtocolIdError

__all__ = [
    "DISCV5_PROTOCOL_ID",
    "MAX_PACKET_SIZE",
    "MIN_PACKET_SIZE",
    "WAKU_PROTOCOL_ID",
    "Flag",
    "HandshakeAuth",
    "Header",
    "Packet",
    "WhoAreYouAuth",
    "decode_handshake_auth",
    "decode_packet",
    "decode_whoareyou_auth",
    "encode_handshake",
    "encode_ordinary",
    "encode_whoareyou",
    "open_message",
]

WAKU_PROTOCOL_ID = b"d5waku"
DISCV5_PROTOCOL_ID = b"discv5"
VERSION = 1
MIN_PACKET_SIZE = 63  # a WHOAREYOU: 16 + 23 + 24
MAX_PACKET_SIZE = 1280
_IV_SIZE = 16
_STATIC_SIZE = 23
_NONCE_SIZE = 12
_WHOAREYOU_AUTH_SIZE = 24
_SIG_SIZE = 64
_PUBKEY_SIZE = 33


class Flag(IntEnum):
    MESSAGE = 0
    WHOAREYOU = 1
    HANDSHAKE = 2


@dataclass(frozen=True, slots=True)
class Header:
    flag: Flag
    nonce: bytes
    authdata: bytes


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded (unmasked) packet; ``header_data`` is ``masking-iv ‖ header``, the GCM AD and,
    for a WHOAREYOU, its ``challenge-data``."""

    header: Header
    header_data: bytes
    message: bytes


@dataclass(frozen=True, slots=True)
class WhoAreYouAuth:
    id_nonce: bytes
    enr_seq: int


@dataclass(frozen=True, slots=True)
class HandshakeAuth:
    src_id: bytes
    id_signature: bytes
    eph_pubkey: bytes
    record: bytes  # RLP of the ENR, b"" when absent


def _mask(dest_id: bytes, iv: bytes, data: bytes) -> bytes:
    # One continuous 128-bit big-endian counter stream over the whole header (geth createMask).
    return bytes(AES.new(dest_id[:16], AES.MODE_CTR, nonce=b"", initial_value=iv).encrypt(data))


def _header_bytes(protocol_id: bytes, flag: Flag, nonce: bytes, authdata: bytes) -> bytes:
    if len(protocol_id) != 6 or len(nonce) != _NONCE_SIZE or len(authdata) > 0xFFFF:
        raise ValueError("bad header field size")
    return (protocol_id + VERSION.to_bytes(2, "big") + bytes([flag]) + nonce
            + len(authdata).to_bytes(2, "big") + authdata)


def _encode(dest_id: bytes, iv: bytes, protocol_id: bytes, flag: Flag, nonce: bytes, authdata: bytes,
            key: bytes | None, plaintext: bytes, random_message: bytes) -> tuple[bytes, bytes]:
    if len(iv) != _IV_SIZE:
        raise ValueError("masking-iv is 16 bytes")
    header = _header_bytes(protocol_id, flag, nonce, authdata)
    header_data = iv + header
    message = aes_gcm_encrypt(key, nonce, plaintext, header_data) if key is not None else random_message
    packet = iv + _mask(dest_id, iv, header) + message
    if len(packet) > MAX_PACKET_SIZE:
        raise ValueError(f"packet of {len(packet)} bytes exceeds {MAX_PACKET_SIZE}")
    return packet, header_data


def encode_ordinary(dest_id: bytes, src_id: bytes, nonce: bytes, masking_iv: bytes, key: bytes | None,
                    plaintext: bytes, *, protocol_id: bytes = WAKU_PROTOCOL_ID,
                    random_message: bytes = b"") -> bytes:
    """A flag-0 packet; ``key=None`` sends ``random_message`` instead (handshake trigger)."""
    return _encode(dest_id, masking_iv, protocol_id, Flag.MESSAGE, nonce, src_id, key, plaintext,
                   random_message)[0]


def encode_whoareyou(dest_id: bytes, request_nonce: bytes, id_nonce: bytes, enr_seq: int, masking_iv: bytes,
                     *, protocol_id: bytes = WAKU_PROTOCOL_ID) -> tuple[bytes, bytes]:
    """(packet, challenge-data); the nonce is the challenged packet's nonce."""
    if len(id_nonce) != 16:
        raise ValueError("id-nonce is 16 bytes")
    authdata = id_nonce + enr_seq.to_bytes(8, "big")
    return _encode(dest_id, masking_iv, protocol_id, Flag.WHOAREYOU, request_nonce, authdata, None, b"", b"")


def encode_handshake(dest_id: bytes, src_id: bytes, nonce: bytes, masking_iv: bytes, id_signature: bytes,
                     eph_pubkey: bytes, record: bytes, key: bytes, plaintext: bytes, *,
                     protocol_id: bytes = WAKU_PROTOCOL_ID) -> bytes:
    if len(id_signature) != _SIG_SIZE or len(eph_pubkey) != _PUBKEY_SIZE:
        raise ValueError("bad signature or ephemeral key size")
    authdata = src_id + bytes([_SIG_SIZE, _PUBKEY_SIZE]) + id_signature + eph_pubkey + record
    return _encode(dest_id, masking_iv, protocol_id, Flag.HANDSHAKE, nonce, authdata, key, plaintext, b"")[0]


def decode_packet(data: bytes, local_id: bytes, *, protocol_id: bytes = WAKU_PROTOCOL_ID) -> Packet:
    """Unmask and check a packet addressed to ``local_id`` (geth Codec.Decode / checkValid)."""
    if not MIN_PACKET_SIZE <= len(data) <= MAX_PACKET_SIZE:
        raise Discv5DecodeError(f"packet size {len(data)} outside {MIN_PACKET_SIZE}..{MAX_PACKET_SIZE}")
    iv = data[:_IV_SIZE]
    ctr = AES.new(local_id[:16], AES.MODE_CTR, nonce=b"", initial_value=iv)
    static = ctr.decrypt(data[_IV_SIZE:_IV_SIZE + _STATIC_SIZE])
    if static[:6] != protocol_id:
        raise WrongProtocolIdError("wrong protocol id")
    if int.from_bytes(static[6:8], "big") != VERSION:
        raise Discv5DecodeError("unsupported version")
    try:
        flag = Flag(static[8])
    except ValueError:
        raise Discv5DecodeError(f"unknown flag {static[8]}") from None
    nonce = static[9:21]
    auth_size = int.from_bytes(static[21:23], "big")
    start = _IV_SIZE + _STATIC_SIZE
    if start + auth_size > len(data):
        raise Discv5DecodeError("authdata-size beyond the packet")
    authdata = ctr.decrypt(data[start:start + auth_size])
    message = data[start + auth_size:]
    if flag == Flag.WHOAREYOU:
        if auth_size != _WHOAREYOU_AUTH_SIZE or message:
            raise Discv5DecodeError("malformed WHOAREYOU")
    else:
        if flag == Flag.MESSAGE and auth_size != 32:
            raise Discv5DecodeError("message authdata is the 32-byte src-id")
        if flag == Flag.HANDSHAKE and auth_size < 34:
            raise Discv5DecodeError("handshake authdata too short")
        # geth minMessageSize (48 bytes after the static header, authdata included).
        if len(data) - start < 48 or len(message) < GCM_TAG_SIZE:
            raise Discv5DecodeError("message part too short")
    return Packet(Header(flag, bytes(nonce), bytes(authdata)), bytes(iv + static + authdata), bytes(message))


def decode_whoareyou_auth(authdata: bytes) -> WhoAreYouAuth:
    if len(authdata) != _WHOAREYOU_AUTH_SIZE:
        raise Discv5DecodeError("WHOAREYOU authdata is 24 bytes")
    return WhoAreYouAuth(authdata[:16], int.from_bytes(authdata[16:], "big"))


def decode_handshake_auth(authdata: bytes) -> HandshakeAuth:
    if len(authdata) < 34:
        raise Discv5DecodeError("handshake authdata too short")
    sig_size, key_size = authdata[32], authdata[33]
    if sig_size != _SIG_SIZE or key_size != _PUBKEY_SIZE:
        raise Discv5DecodeError("only secp256k1 (v4) handshakes are supported")
    end = 34 + sig_size + key_size
    if len(authdata) < end:
        raise Discv5DecodeError("handshake authdata truncated")
    return HandshakeAuth(authdata[:32], authdata[34:34 + sig_size], authdata[34 + sig_size:end], authdata[end:])


def open_message(packet: Packet, key: bytes) -> bytes:
    """GCM-decrypt the message part with ``key``; AD = masking-iv ‖ unmasked header."""
    return aes_gcm_decrypt(key, packet.header.nonce, packet.message, packet.header_data)
