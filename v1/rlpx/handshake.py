"""RLPx handshake: auth/ack packets (EIP-8 and legacy) and secret derivation (rlpx.md §3).

Sans-I/O: :class:`Initiator` and :class:`Recipient` consume bytes and return what to send plus,
when complete, the :class:`Secrets` and any bytes that already belong to the framed session.
Randomness enters through ``rng(n) -> bytes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import rlp
from Crypto.Hash import keccak

from v1.errors import V1DecodeError
from v1.rlpx.crypto import (
    ECIES_OVERHEAD,
    CryptoError,
    ecdh_x,
    ecies_decrypt,
    ecies_encrypt,
    keccak256,
    pubkey_of,
    recover_pubkey,
    sign_recoverable,
)

__all__ = [
    "AckMessage",
    "AuthMessage",
    "HandshakeError",
    "Initiator",
    "Recipient",
    "Rng",
    "Secrets",
    "decode_ack",
    "decode_auth",
    "derive_secrets",
    "encode_ack_eip8",
    "encode_ack_legacy",
    "encode_auth_eip8",
    "encode_auth_legacy",
]

Rng = Callable[[int], bytes]

LEGACY_AUTH_LEN = 194 + ECIES_OVERHEAD  # 307
LEGACY_ACK_LEN = 97 + ECIES_OVERHEAD  # 210
MAX_EIP8_PACKET = 2048  # geth caps handshake packets far below the 2-byte size limit


class HandshakeError(V1DecodeError):
    """The peer's auth/ack could not be decrypted or parsed."""


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True, slots=True)
class AuthMessage:
    signature: bytes
    initiator_pubkey: bytes
    initiator_nonce: bytes
    version: int
    eip8: bool


@dataclass(frozen=True, slots=True)
class AckMessage:
    ephemeral_pubkey: bytes
    recipient_nonce: bytes
    version: int
    eip8: bool


@dataclass(slots=True)
class Secrets:
    """Session secrets; the MAC states are running Keccak sponges (mutated by the framer)."""

    aes_secret: bytes
    mac_secret: bytes
    egress_mac: object = field(repr=False)
    ingress_mac: object = field(repr=False)
    remote_pubkey: bytes = b""


def _new_mac(seed: bytes) -> object:
    h = keccak.new(digest_bits=256, update_after_digest=True)
    h.update(seed)
    return h


def derive_secrets(
    *,
    initiator: bool,
    ephemeral_priv: bytes,
    remote_ephemeral_pub: bytes,
    initiator_nonce: bytes,
    recipient_nonce: bytes,
    auth_wire: bytes,
    ack_wire: bytes,
    remote_pubkey: bytes = b"",
) -> Secrets:
    """rlpx.md §3.3; ``auth_wire``/``ack_wire`` include the EIP-8 size prefix."""
    ephemeral_key = ecdh_x(ephemeral_priv, remote_ephemeral_pub)
    shared_secret = keccak256(ephemeral_key, keccak256(recipient_nonce, initiator_nonce))
    aes_secret = keccak256(ephemeral_key, shared_secret)
    mac_secret = keccak256(ephemeral_key, aes_secret)
    mac_a = _new_mac(_xor(mac_secret, recipient_nonce) + auth_wire)  # initiator egress
    mac_b = _new_mac(_xor(mac_secret, initiator_nonce) + ack_wire)  # recipient egress
    if initiator:
        return Secrets(aes_secret, mac_secret, mac_a, mac_b, remote_pubkey)
    return Secrets(aes_secret, mac_secret, mac_b, mac_a, remote_pubkey)


# --- auth ---


def _auth_signature(static_priv: bytes, remote_pub: bytes, ephemeral_priv: bytes, nonce: bytes) -> bytes:
    return sign_recoverable(ephemeral_priv, _xor(ecdh_x(static_priv, remote_pub), nonce))


def encode_auth_eip8(static_priv: bytes, remote_pub: bytes, ephemeral_priv: bytes, nonce: bytes,
                     rng: Rng, *, version: int = 4) -> bytes:
    sig = _auth_signature(static_priv, remote_pub, ephemeral_priv, nonce)
    body = rlp.encode([sig, pubkey_of(static_priv), nonce, version])
    body += rng(100 + rng(1)[0] % 201)  # EIP-8: 100-300 bytes of random padding
    size = (len(body) + ECIES_OVERHEAD).to_bytes(2, "big")
    return size + ecies_encrypt(remote_pub, body, ephemeral=rng(32), iv=rng(16), shared_mac_data=size)


def encode_auth_legacy(static_priv: bytes, remote_pub: bytes, ephemeral_priv: bytes, nonce: bytes, rng: Rng) -> bytes:
    sig = _auth_signature(static_priv, remote_pub, ephemeral_priv, nonce)
    plain = sig + keccak256(pubkey_of(ephemeral_priv)) + pubkey_of(static_priv) + nonce + b"\x00"
    return ecies_encrypt(remote_pub, plain, ephemeral=rng(32), iv=rng(16))


def _eip8_body(static_priv: bytes, data: bytes) -> tuple[list[object], int]:
    size = int.from_bytes(data[:2], "big")
    try:
        plain = ecies_decrypt(static_priv, data[2:2 + size], shared_mac_data=data[:2])
    except CryptoError as exc:
        raise HandshakeError(f"cannot decrypt EIP-8 packet: {exc}") from None
    # RecursionError: pyrlp decodes nested lists recursively; ~1 000 levels (2-3 KB) exhaust the stack.
    try:
        # EIP-8 forward compatibility: trailing padding after the list and extra items are allowed.
        item = rlp.decode(plain, strict=False)
    except (rlp.exceptions.DecodingError, RecursionError) as exc:
        raise HandshakeError(f"malformed EIP-8 body: {exc}") from None
    if not isinstance(item, list):
        raise HandshakeError("EIP-8 body is not an RLP list")
    return item, 2 + size


def _int(v: object) -> int:
    if not isinstance(v, bytes) or len(v) > 8:
        raise HandshakeError("version is not a small integer")
    return int.from_bytes(v, "big")


def _finish_auth(static_priv: bytes, sig: object, pub: object, nonce: object, version: int,
                 eip8: bool) -> tuple[AuthMessage, bytes]:
    if not (isinstance(sig, bytes) and len(sig) == 65 and isinstance(pub, bytes) and len(pub) == 64
            and isinstance(nonce, bytes) and len(nonce) == 32):
        raise HandshakeError("auth fields have wrong types or lengths")
    try:
        remote_eph = recover_pubkey(sig, _xor(ecdh_x(static_priv, pub), nonce))
    except CryptoError as exc:
        raise HandshakeError(f"auth signature: {exc}") from None
    return AuthMessage(sig, pub, nonce, version, eip8), remote_eph


def decode_auth(static_priv: bytes, data: bytes) -> tuple[AuthMessage, bytes, int] | None:
    """Parse an auth packet at the start of ``data``.

    Returns ``(auth, remote_ephemeral_pubkey, consumed)`` or ``None`` if more bytes are needed.
    Legacy is tried first when 307 bytes are there (rlpx.md §3.2 "detecting the format").
    """
    if len(data) >= LEGACY_AUTH_LEN:
        try:
            plain = ecies_decrypt(static_priv, data[:LEGACY_AUTH_LEN])
        except CryptoError:
            plain = b""
        if len(plain) == 194:
            sig, eph_hash, pub, nonce = plain[:65], plain[65:97], plain[97:161], plain[161:193]
            auth, remote_eph = _finish_auth(static_priv, sig, pub, nonce, plain[193], eip8=False)
            if keccak256(remote_eph) != eph_hash:
                raise HandshakeError("legacy auth: ephemeral key hash mismatch")
            return auth, remote_eph, LEGACY_AUTH_LEN
    if len(data) < 2:
        return None
    size = int.from_bytes(data[:2], "big")
    if size > MAX_EIP8_PACKET or size < ECIES_OVERHEAD:
        raise HandshakeError(f"auth size {size} out of range")
    if len(data) < 2 + size:
        return None
    items, consumed = _eip8_body(static_priv, data)
    if len(items) < 4:
        raise HandshakeError("EIP-8 auth has fewer than 4 items")
    auth, remote_eph = _finish_auth(static_priv, items[0], items[1], items[2], _int(items[3]), eip8=True)
    return auth, remote_eph, consumed


# --- ack ---


def encode_ack_eip8(remote_pub: bytes, ephemeral_priv: bytes, nonce: bytes, rng: Rng, *, version: int = 4) -> bytes:
    body = rlp.encode([pubkey_of(ephemeral_priv), nonce, version]) + rng(100 + rng(1)[0] % 201)
    size = (len(body) + ECIES_OVERHEAD).to_bytes(2, "big")
    return size + ecies_encrypt(remote_pub, body, ephemeral=rng(32), iv=rng(16), shared_mac_data=size)


def encode_ack_legacy(remote_pub: bytes, ephemeral_priv: bytes, nonce: bytes, rng: Rng) -> bytes:
    plain = pubkey_of(ephemeral_priv) + nonce + b"\x00"
    return ecies_encrypt(remote_pub, plain, ephemeral=rng(32), iv=rng(16))


def decode_ack(static_priv: bytes, data: bytes, *, eip8: bool) -> tuple[AckMessage, int] | None:
    """Parse the ack (the format follows the auth we sent).  ``None`` = need more bytes."""
    if not eip8:
        if len(data) < LEGACY_ACK_LEN:
            return None
        try:
            plain = ecies_decrypt(static_priv, data[:LEGACY_ACK_LEN])
        except CryptoError as exc:
            raise HandshakeError(f"legacy ack: {exc}") from None
        if len(plain) != 97:
            raise HandshakeError("legacy ack has the wrong length")
        return AckMessage(plain[:64], plain[64:96], plain[96], eip8=False), LEGACY_ACK_LEN
    if len(data) < 2:
        return None
    size = int.from_bytes(data[:2], "big")
    if size > MAX_EIP8_PACKET or size < ECIES_OVERHEAD:
        raise HandshakeError(f"ack size {size} out of range")
    if len(data) < 2 + size:
        return None
    items, consumed = _eip8_body(static_priv, data)
    if len(items) < 3:
        raise HandshakeError("EIP-8 ack has fewer than 3 items")
    eph, nonce = items[0], items[1]
    if not (isinstance(eph, bytes) and len(eph) == 64 and isinstance(nonce, bytes) and len(nonce) == 32):
        raise HandshakeError("ack fields have wrong types or lengths")
    return AckMessage(eph, nonce, _int(items[2]), eip8=True), consumed


# --- state machines ---


@dataclass(slots=True)
class Initiator:
    """Dials: ``auth_wire`` is sent first; ``feed`` returns the secrets once the ack is in."""

    static_priv: bytes
    remote_pub: bytes
    rng: Rng
    eip8: bool = True
    ephemeral_priv: bytes = b""
    nonce: bytes = b""
    auth_wire: bytes = b""
    _buf: bytes = b""

    def __post_init__(self) -> None:
        self.ephemeral_priv = self.rng(32)
        self.nonce = self.rng(32)
        enc = encode_auth_eip8 if self.eip8 else encode_auth_legacy
        self.auth_wire = enc(self.static_priv, self.remote_pub, self.ephemeral_priv, self.nonce, self.rng)

    def feed(self, data: bytes) -> tuple[Secrets, bytes] | None:
        """Returns ``(secrets, leftover bytes)`` when the ack is complete."""
        self._buf += data
        parsed = decode_ack(self.static_priv, self._buf, eip8=self.eip8)
        if parsed is None:
            return None
        ack, consumed = parsed
        secrets = derive_secrets(
            initiator=True, ephemeral_priv=self.ephemeral_priv, remote_ephemeral_pub=ack.ephemeral_pubkey,
            initiator_nonce=self.nonce, recipient_nonce=ack.recipient_nonce, auth_wire=self.auth_wire,
            ack_wire=self._buf[:consumed], remote_pubkey=self.remote_pub,
        )
        return secrets, self._buf[consumed:]


@dataclass(slots=True)
class Recipient:
    """Accepts: ``feed`` returns ``(ack_wire, secrets, leftover)`` once the auth is in."""

    static_priv: bytes
    rng: Rng
    _buf: bytes = b""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> tuple[bytes, Secrets, bytes] | None:
        self._buf += data
        parsed = decode_auth(self.static_priv, self._buf)
        if parsed is None:
            return None
        auth, remote_eph, consumed = parsed
        ephemeral_priv, nonce = self.rng(32), self.rng(32)
        if auth.eip8:  # EIP-8: the ack format follows the auth's
            ack_wire = encode_ack_eip8(auth.initiator_pubkey, ephemeral_priv, nonce, self.rng)
        else:
            ack_wire = encode_ack_legacy(auth.initiator_pubkey, ephemeral_priv, nonce, self.rng)
        secrets = derive_secrets(
            initiator=False, ephemeral_priv=ephemeral_priv, remote_ephemeral_pub=remote_eph,
            initiator_nonce=auth.initiator_nonce, recipient_nonce=nonce, auth_wire=self._buf[:consumed],
            ack_wire=ack_wire, remote_pubkey=auth.initiator_pubkey,
        )
        return ack_wire, secrets, self._buf[consumed:]
