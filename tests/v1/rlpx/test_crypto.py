"""ECIES/KDF/HMAC values from nim-eth's test_ecies.nim, quoted in specs/rlpx.md §10."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from v1.rlpx.crypto import CryptoError, concat_kdf, ecies_decrypt, ecies_encrypt, pubkey_of


def test_kdf() -> None:
    m0 = bytes.fromhex("961c065873443014e0371f1ed656c586c6730bf927415757f389d92acf8268df")
    assert concat_kdf(m0, 32).hex() == "4050c52e6d9c08755e5a818ac66fabe478b825b1836fd5efc4d44e40d04dabcc"


@pytest.mark.parametrize(("key", "data", "mac"), [
    ("07a4b6dfa06369a570f2dcba2f11a18f", "4dcb92ed4fc67fe86832",
     "c90b62b1a673b47df8e395e671a68bfa68070d6e2ef039598bb829398b89b9a9"),
    ("af6623e52208c596e17c72cea6f1cb09", "3461282bcedace970df2",
     "b3ce623bce08d5793677ba9441b22bb34d3e8a7de964206d26589df3e8eb5183")])
def test_hmac(key: str, data: str, mac: str) -> None:
    assert hmac.new(bytes.fromhex(key), bytes.fromhex(data), hashlib.sha256).hexdigest() == mac


def test_nim_decryption_vector() -> None:
    key = bytes.fromhex("57baf2c62005ddec64c357d96183ebc90bf9100583280e848aa31d683cad73cb")
    ct = bytes.fromhex(
        "04ff2c874d0a47917c84eea0b2a4141ca95233720b5c70f81a8415bae1dc7b746b61df7558811c1d6054333907333ef9"
        "bb0cc2fbf8b34abb9730d14e0140f4553f4b15d705120af46cf653a1dc5b95b312cf8444714f95a4f7a0425b67fc064d"
        "18f4d0a528761565ca02d97faffdac23de10")
    assert ecies_decrypt(key, ct) == b"a"


def test_roundtrip_and_tamper() -> None:
    priv = os.urandom(32)
    ct = ecies_encrypt(pubkey_of(priv), b"hello", ephemeral=os.urandom(32), iv=os.urandom(16),
                       shared_mac_data=b"\x01\x02")
    assert ecies_decrypt(priv, ct, b"\x01\x02") == b"hello"
    with pytest.raises(CryptoError):
        ecies_decrypt(priv, ct, b"\x01\x03")
    bad = bytearray(ct)
    bad[-40] ^= 1
    with pytest.raises(CryptoError):
        ecies_decrypt(priv, bytes(bad), b"\x01\x02")
