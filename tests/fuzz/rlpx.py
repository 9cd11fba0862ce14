"""RLPx harnesses: auth and ack (EIP-8 and legacy), frames, and the p2p base packets.

The handshake packets are ECIES-encrypted and the frames MAC'd, so random wire bytes stop at the MAC.
Each target therefore has two modes, chosen by the first input byte: the raw wire (what a peer
really sends: the MAC check itself is fuzzed) and the fuzz bytes as the *plaintext*, sealed here with
the right key (the decoder behind the MAC is fuzzed).  Keys and nonces are the EIP-8 vectors', so
the committed vectors decode as seeds.
"""

from __future__ import annotations

import hashlib
import hmac

import rlp
from Crypto.Hash import keccak

from tests.fuzz.targets import Target, instrumented
from tests.helpers.vectors import load_vectors

with instrumented():
    from v1.errors import V1Error
    from v1.rlpx.base import decode_disconnect, decode_hello, snappy_compress, snappy_decompress
    from v1.rlpx.crypto import ECIES_OVERHEAD, aes_ctr, concat_kdf, ecdh_x, ecies_encrypt, pubkey_of
    from v1.rlpx.frame import FrameCodec
    from v1.rlpx.handshake import Secrets, decode_ack, decode_auth, derive_secrets

__all__ = ["TARGETS"]

_HS = next(v for v in load_vectors("eip8_rlpx.json")["vectors"] if v["name"] == "rlpx_handshake")
KEY_A = bytes.fromhex(_HS["static_key_a"])  # decrypts acks
KEY_B = bytes.fromhex(_HS["static_key_b"])  # decrypts auths
EPH_A, EPH_B = bytes.fromhex(_HS["ephemeral_key_a"]), bytes.fromhex(_HS["ephemeral_key_b"])
NONCE_A, NONCE_B = bytes.fromhex(_HS["nonce_a"]), bytes.fromhex(_HS["nonce_b"])
_IV = bytes(range(16))


def _sealer(pub: bytes) -> tuple[bytes, bytes, bytes]:
    # ECIES with a fixed ephemeral key (rlpx.md §2, ecies_encrypt): its ECDH done once, not per input.
    key = concat_kdf(ecdh_x(EPH_A, pub), 32)
    return key[:16], hashlib.sha256(key[16:]).digest(), b"\x04" + pubkey_of(EPH_A) + _IV


_TO_B, _TO_A = _sealer(pubkey_of(KEY_B)), _sealer(pubkey_of(KEY_A))


def _seal(keys: tuple[bytes, bytes, bytes], mode: int, body: bytes) -> bytes:
    """mode bit 1: legacy (bare ECIES); else EIP-8 (size prefix as the ECIES shared MAC data)."""
    ke, km, head = keys
    size = b"" if mode & 2 else (len(body) + ECIES_OVERHEAD).to_bytes(2, "big")
    c = aes_ctr(ke, _IV, body)
    return size + head + c + hmac.new(km, _IV + c + size, hashlib.sha256).digest()


assert _seal(_TO_B, 2, b"x") == ecies_encrypt(pubkey_of(KEY_B), b"x", ephemeral=EPH_A, iv=_IV)


def auth(data: bytes) -> None:
    mode, body = (data[0], data[1:]) if data else (0, b"")
    wire = _seal(_TO_B, mode, body) if mode & 1 else body
    decode_auth(KEY_B, wire)


def ack(data: bytes) -> None:
    mode, body = (data[0], data[1:]) if data else (0, b"")
    wire = _seal(_TO_A, mode, body) if mode & 1 else body
    decode_ack(KEY_A, wire, eip8=not mode & 4)


def _auth_seeds() -> list[bytes]:
    raw = [b"\x00" + bytes.fromhex(_HS[k]) for k in ("auth1_v4_plain", "auth2_eip8_v4", "auth3_eip8_v56_extra")]
    sig, pub = bytes(65), pubkey_of(KEY_A)
    eip8 = rlp.encode([sig, pub, NONCE_A, 4])
    legacy = sig + bytes(32) + pub + NONCE_A + b"\x00"
    return [*raw, b"\x01" + eip8, b"\x01" + eip8 + bytes(100), b"\x03" + legacy]


def _ack_seeds() -> list[bytes]:
    raw = [b"\x04" + bytes.fromhex(_HS["ack1_v4_plain"])]
    raw += [b"\x00" + bytes.fromhex(_HS[k]) for k in ("ack2_eip8_v4", "ack3_eip8_v57_extra")]
    eph = pubkey_of(EPH_B)
    return [*raw, b"\x01" + rlp.encode([eph, NONCE_B, 4]), b"\x07" + eph + NONCE_B + b"\x00"]


_MAX_FRAME = 1 << 16


_INIT = derive_secrets(initiator=True, ephemeral_priv=EPH_A, remote_ephemeral_pub=pubkey_of(EPH_B),
                       initiator_nonce=NONCE_A, recipient_nonce=NONCE_B, auth_wire=b"auth", ack_wire=b"ack")


def _mac(seed: bytes) -> object:
    h = keccak.new(digest_bits=256, update_after_digest=True)
    h.update(seed)
    return h


_EGRESS = bytes(x ^ y for x, y in zip(_INIT.mac_secret, NONCE_B, strict=True)) + b"auth"
_INGRESS = bytes(x ^ y for x, y in zip(_INIT.mac_secret, NONCE_A, strict=True)) + b"ack"


def _codec(*, initiator: bool) -> FrameCodec:
    # Fresh MAC sponges per input (the framer mutates them), seeded as rlpx.md §3.3 (derive_secrets).
    egress, ingress = (_EGRESS, _INGRESS) if initiator else (_INGRESS, _EGRESS)
    secrets = Secrets(_INIT.aes_secret, _INIT.mac_secret, _mac(egress), _mac(ingress))
    return FrameCodec(secrets, max_frame_size=_MAX_FRAME)


def frame(data: bytes) -> None:
    """Mode bit 0 clear: raw wire into the reader.  Set: the rest split (at ff fe) into frames the
    peer really sealed, fed in 1..1024-byte reads; mode bit 1 flips one byte at a fuzzed position."""
    if not data:
        return
    mode, rest = data[0], data[1:]
    b = _codec(initiator=False)
    if not mode & 1:
        b.feed(rest)
        return
    a = _codec(initiator=True)
    parts = rest.split(b"\xff\xfe")
    wire = bytearray(b"".join(a.encode(p[:_MAX_FRAME]) for p in parts))
    flip = mode & 2 and wire and len(rest) >= 2
    if flip:
        wire[int.from_bytes(rest[:2], "big") % len(wire)] ^= 1 + (mode >> 2)
    step = (1, 2, 7, 16, 32, 64, 256, 1024)[mode >> 2 & 7]  # reads split headers, MACs and bodies
    out: list[bytes] = []
    for i in range(0, len(wire), step):
        out += b.feed(bytes(wire[i:i + step]))
    if not flip:  # untouched: every frame back, whatever the chunking
        assert out == [p[:_MAX_FRAME] for p in parts]


def _frame_seeds() -> list[bytes]:
    return [b"\x00" + bytes(64), b"\x01hello", b"\x05" + b"a" * 40 + b"\xff\xfe" + b"b" * 17, b"\x03\x00\x10xyz"]


def p2p(data: bytes) -> None:
    """The p2p base packets after the frame: Hello, Disconnect, and the snappy envelope (EIP-706)."""
    decode_hello(data)
    if data:  # the session only hands Disconnect a non-empty payload
        decode_disconnect(data)
    snappy_decompress(data, 1 << 16)


def _p2p_seeds() -> list[bytes]:
    hello = bytes.fromhex(next(v for v in load_vectors("eip8_rlpx.json")["vectors"]
                               if v["name"] == "devp2p_hello_forward_compat")["hello_rlp_hex"])
    ours = rlp.encode([5, b"waku-bridge", [[b"waku", 1]], 30303, pubkey_of(KEY_A)])
    return [hello, ours, rlp.encode([8]), b"\x08", snappy_compress(ours), snappy_compress(b"")]


TARGETS = {
    "rlpx_auth": Target("rlpx_auth", auth, V1Error, _auth_seeds, max_len=1200),
    "rlpx_ack": Target("rlpx_ack", ack, V1Error, _ack_seeds, max_len=1200),
    "rlpx_frame": Target("rlpx_frame", frame, V1Error, _frame_seeds, max_len=1024),
    "p2p": Target("p2p", p2p, V1Error, _p2p_seeds),
}
