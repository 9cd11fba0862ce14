"""discv5 v5.1 cryptography (discv5-theory.md "Identity-Specific Cryptography in the Handshake";
go-ethereum p2p/discover/v5wire/crypto.go).  Pure functions over bytes.
"""

from __future__ import annotations

import hashlib
import hmac

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from Crypto.Cipher import AES

from v2.discv5.errors import Discv5DecodeError
from v2.enr.enr import keccak256

__all__ = [
    "GCM_TAG_SIZE",
    "aes_gcm_decrypt",
    "aes_gcm_encrypt",
    "derive_keys",
    "ecdh",
    "hkdf_sha256",
    "id_sign",
    "id_verify",
    "node_id_of",
]

GCM_TAG_SIZE = 16
_KEY_AGREEMENT_INFO = b"discovery v5 key agreement"
_ID_SIGNATURE_TEXT = b"discovery v5 identity proof"


def node_id_of(public_key: bytes) -> bytes:
    """EIP-778 "v4" node id: keccak256 of the 64-byte uncompressed key."""
    return keccak256(PublicKey(public_key).format(compressed=False)[1:])


def ecdh(public_key: bytes, private_key: bytes) -> bytes:
    """The 33-byte compressed shared point, not hashed (discv5-theory.md; geth ecdh())."""
    try:
        return PublicKey(public_key).multiply(private_key).format(compressed=True)
    except (ValueError, TypeError) as exc:
        raise Discv5DecodeError(f"bad public key: {exc}") from None


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256 (extract then expand)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out = b""
    block = b""
    i = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def derive_keys(eph_private: bytes | None, remote_public: bytes, node_id_a: bytes, node_id_b: bytes,
                challenge_data: bytes, *, secret: bytes | None = None) -> tuple[bytes, bytes]:
    """(initiator-key, recipient-key); A is the initiator (the WHOAREYOU's recipient).

    The initiator passes its ephemeral private key and B's static public key; the recipient passes
    its static private key as ``eph_private`` and A's ephemeral public key (ECDH is symmetric).
    """
    shared = secret if secret is not None else ecdh(remote_public, eph_private or b"")
    kd = hkdf_sha256(shared, challenge_data, _KEY_AGREEMENT_INFO + node_id_a + node_id_b, 32)
    return kd[:16], kd[16:]


def _id_digest(challenge_data: bytes, eph_pubkey: bytes, node_id_b: bytes) -> bytes:
    return hashlib.sha256(_ID_SIGNATURE_TEXT + challenge_data + eph_pubkey + node_id_b).digest()


def id_sign(static_private: bytes, challenge_data: bytes, eph_pubkey: bytes, node_id_b: bytes) -> bytes:
    """64-byte r‖s over sha256("discovery v5 identity proof" ‖ challenge-data ‖ eph-pubkey ‖ id-B)."""
    sig = PrivateKey(static_private).sign_recoverable(_id_digest(challenge_data, eph_pubkey, node_id_b), hasher=None)
    return sig[:64]


def id_verify(public_key: bytes, signature: bytes, challenge_data: bytes, eph_pubkey: bytes,
              node_id_b: bytes) -> bool:
    """False (never an exception) for anything that is not a valid signature by ``public_key``."""
    if len(signature) != 64:
        return False
    try:
        der = cdata_to_der(deserialize_compact(signature))
        return bool(PublicKey(public_key).verify(der, _id_digest(challenge_data, eph_pubkey, node_id_b),
                                                 hasher=None))
    except (ValueError, TypeError):
        return False


def aes_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """AES-128-GCM with a 12-byte nonce; the 16-byte tag is appended (discv5-wire.md, devp2p #255)."""
    c = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=GCM_TAG_SIZE)
    c.update(ad)
    ct, tag = c.encrypt_and_digest(plaintext)
    return bytes(ct + tag)


def aes_gcm_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    if len(ciphertext) < GCM_TAG_SIZE:
        raise Discv5DecodeError("message shorter than the GCM tag")
    c = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=GCM_TAG_SIZE)
    c.update(ad)
    try:
        return bytes(c.decrypt_and_verify(ciphertext[:-GCM_TAG_SIZE], ciphertext[-GCM_TAG_SIZE:]))
    except ValueError:
        raise Discv5DecodeError("message authentication failed") from None
