"""Cryptographic primitives of RLPx (devp2p rlpx.md §"ECIES"; notes: specs/rlpx.md §1-2).

Pure functions over bytes.  Randomness (ephemeral keys, IVs) is always an argument so that the
EIP-8 vectors can drive every path.
"""

from __future__ import annotations

import hashlib
import hmac

from coincurve import PrivateKey, PublicKey
from Crypto.Cipher import AES
from Crypto.Hash import keccak

from v1.errors import V1Error

__all__ = [
    "ECIES_OVERHEAD",
    "CryptoError",
    "aes_ctr",
    "concat_kdf",
    "ecdh_x",
    "ecies_decrypt",
    "ecies_encrypt",
    "keccak256",
    "pubkey_of",
    "recover_pubkey",
    "sign_recoverable",
]

ECIES_OVERHEAD = 65 + 16 + 32  # R (uncompressed) + IV + HMAC-SHA256


class CryptoError(V1Error):
    """A MAC, key or signature did not check out."""


def keccak256(*parts: bytes) -> bytes:
    """Pre-standard Keccak-256 (NOT hashlib.sha3_256)."""
    h = keccak.new(digest_bits=256)
    for p in parts:
        h.update(p)
    return h.digest()


def _pub(pub64: bytes) -> PublicKey:
    if len(pub64) != 64:
        raise CryptoError(f"public key must be 64 bytes, got {len(pub64)}")
    try:
        return PublicKey(b"\x04" + pub64)
    except ValueError:
        raise CryptoError("invalid secp256k1 public key") from None


def pubkey_of(priv: bytes) -> bytes:
    """64-byte uncompressed public key (without the 0x04 prefix) of a 32-byte private key."""
    return PrivateKey(priv).public_key.format(compressed=False)[1:]


def ecdh_x(priv: bytes, pub64: bytes) -> bytes:
    """Raw x coordinate of priv·Pub (RLPx uses it unhashed)."""
    return _pub(pub64).multiply(priv).format(compressed=False)[1:33]


def sign_recoverable(priv: bytes, msg32: bytes) -> bytes:
    """65-byte r ‖ s ‖ v (v ∈ {0,1}) over a 32-byte value, signed as is (no hashing)."""
    return PrivateKey(priv).sign_recoverable(msg32, hasher=None)


def recover_pubkey(sig65: bytes, msg32: bytes) -> bytes:
    if len(sig65) != 65 or sig65[64] > 3:
        raise CryptoError("malformed recoverable signature")
    try:
        return PublicKey.from_signature_and_message(sig65, msg32, hasher=None).format(compressed=False)[1:]
    except ValueError:
        raise CryptoError("signature does not recover a public key") from None


def concat_kdf(z: bytes, length: int) -> bytes:
    """NIST SP 800-56 concatenation KDF with SHA-256 and no other info."""
    out = b""
    counter = 1
    while len(out) < length:
        out += hashlib.sha256(counter.to_bytes(4, "big") + z).digest()
        counter += 1
    return out[:length]


def aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    return AES.new(key, AES.MODE_CTR, nonce=b"", initial_value=iv).encrypt(data)


def ecies_encrypt(pub64: bytes, msg: bytes, *, ephemeral: bytes, iv: bytes, shared_mac_data: bytes = b"") -> bytes:
    """ECIES as RLPx uses it: R(65) ‖ iv(16) ‖ AES-128-CTR(msg) ‖ HMAC-SHA256(32)."""
    key = concat_kdf(ecdh_x(ephemeral, pub64), 32)
    ke, km = key[:16], hashlib.sha256(key[16:]).digest()
    c = aes_ctr(ke, iv, msg)
    d = hmac.new(km, iv + c + shared_mac_data, hashlib.sha256).digest()
    return b"\x04" + pubkey_of(ephemeral) + iv + c + d


def ecies_decrypt(priv: bytes, data: bytes, shared_mac_data: bytes = b"") -> bytes:
    """Check the HMAC first, then decrypt; any failure is a :class:`CryptoError`."""
    if len(data) < ECIES_OVERHEAD or data[0] != 0x04:
        raise CryptoError("ECIES message too short or not an uncompressed point")
    r_pub, iv, c, d = data[1:65], data[65:81], data[81:-32], data[-32:]
    key = concat_kdf(ecdh_x(priv, r_pub), 32)
    ke, km = key[:16], hashlib.sha256(key[16:]).digest()
    if not hmac.compare_digest(d, hmac.new(km, iv + c + shared_mac_data, hashlib.sha256).digest()):
        raise CryptoError("ECIES MAC mismatch")
    return aes_ctr(ke, iv, c)
