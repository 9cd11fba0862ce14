"""discv5 v5.1 wire vectors (ethereum/devp2p discv5/discv5-wire-test-vectors.md) and decoder fuzzing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import FLIPS, mutate
from v2.discv5.crypto import aes_gcm_decrypt, aes_gcm_encrypt, derive_keys, ecdh, id_sign, id_verify, node_id_of
from v2.discv5.errors import Discv5DecodeError, WrongProtocolIdError
from v2.discv5.messages import (
    FindNode,
    Nodes,
    Ping,
    Pong,
    TalkReq,
    TalkResp,
    decode_message,
    encode_message,
)
from v2.discv5.packet import (
    DISCV5_PROTOCOL_ID,
    WAKU_PROTOCOL_ID,
    Flag,
    decode_handshake_auth,
    decode_packet,
    decode_whoareyou_auth,
    encode_handshake,
    encode_ordinary,
    encode_whoareyou,
    open_message,
)
from v2.enr.enr import Enr
from v2.errors import V2Error

V = json.loads((Path(__file__).parents[2] / "vectors" / "discv5_wire.json").read_text())
P = V["packets"]
C = V["crypto"]
W = V["computed_d5waku_variants"]


def h(s: str) -> bytes:
    return bytes.fromhex(s.removeprefix("0x"))


KEY_A = h(V["keys"]["node-a-key"])
KEY_B = h(V["keys"]["node-b-key"])
ID_B = h(P["ping_message_packet"]["dest-node-id"])
ID_A = h(P["ping_message_packet"]["src-node-id"])


def pub(k: bytes) -> bytes:
    from coincurve import PrivateKey
    return PrivateKey(k).public_key.format(compressed=True)


def test_node_ids() -> None:
    assert node_id_of(pub(KEY_A)) == ID_A
    assert node_id_of(pub(KEY_B)) == ID_B


def test_ecdh() -> None:
    v = C["ecdh"]
    assert ecdh(h(v["public-key"]), h(v["secret-key"])) == h(v["shared-secret"])


def test_key_derivation() -> None:
    v = C["key_derivation"]
    init, recip = derive_keys(h(v["ephemeral-key"]), h(v["dest-pubkey"]), h(v["node-id-a"]), h(v["node-id-b"]),
                              h(v["challenge-data"]))
    assert (init, recip) == (h(v["initiator-key"]), h(v["recipient-key"]))


def test_id_signature() -> None:
    v = C["id_nonce_signing"]
    sig = id_sign(h(v["static-key"]), h(v["challenge-data"]), h(v["ephemeral-pubkey"]), h(v["node-id-B"]))
    assert sig == h(v["id-signature"])
    args = (h(v["challenge-data"]), h(v["ephemeral-pubkey"]), h(v["node-id-B"]))
    assert id_verify(pub(h(v["static-key"])), sig, *args)
    assert not id_verify(pub(KEY_A), sig, *args)
    assert not id_verify(pub(h(v["static-key"])), sig[:-1] + bytes([sig[-1] ^ 1]), *args)


def test_aes_gcm() -> None:
    v = C["aes_gcm_encryption"]
    ct = aes_gcm_encrypt(h(v["encryption-key"]), h(v["nonce"]), h(v["pt"]), h(v["ad"]))
    assert ct == h(v["message-ciphertext"])
    assert aes_gcm_decrypt(h(v["encryption-key"]), h(v["nonce"]), ct, h(v["ad"])) == h(v["pt"])
    with pytest.raises(Discv5DecodeError):  # tampered AD
        aes_gcm_decrypt(h(v["encryption-key"]), h(v["nonce"]), ct, h(v["ad"])[:-1] + b"\0")


def _ping(v: dict[str, Any]) -> Ping:
    return Ping(h(v["ping.req-id"]), int(v["ping.enr-seq"]))


def test_ping_message_packet() -> None:
    v = P["ping_message_packet"]
    pkt = decode_packet(h(v["packet"]), ID_B, protocol_id=DISCV5_PROTOCOL_ID)
    assert pkt.header.flag == Flag.MESSAGE and pkt.header.nonce == h(v["nonce"]) and pkt.header.authdata == ID_A
    assert pkt.header_data == h(v["derived"]["masking-iv"]) + h(v["derived"]["unmasked-header"])
    pt = open_message(pkt, h(v["read-key"]))
    assert decode_message(pt) == _ping(v)
    assert encode_message(_ping(v)) == pt == h(v["derived"]["message-plaintext"])
    again = encode_ordinary(ID_B, ID_A, h(v["nonce"]), bytes(16), h(v["read-key"]), pt, protocol_id=DISCV5_PROTOCOL_ID)
    assert again.hex() == v["packet"]


def test_whoareyou_packet() -> None:
    v = P["whoareyou_packet"]
    pkt = decode_packet(h(v["packet"]), ID_B, protocol_id=DISCV5_PROTOCOL_ID)
    assert pkt.header.flag == Flag.WHOAREYOU and pkt.header.nonce == h(v["whoareyou.request-nonce"])
    wa = decode_whoareyou_auth(pkt.header.authdata)
    assert wa.id_nonce == h(v["whoareyou.id-nonce"]) and wa.enr_seq == int(v["whoareyou.enr-seq"])
    assert pkt.header_data == h(v["whoareyou.challenge-data"])
    data, challenge = encode_whoareyou(ID_B, h(v["whoareyou.request-nonce"]), wa.id_nonce, wa.enr_seq, bytes(16),
                                       protocol_id=DISCV5_PROTOCOL_ID)
    assert data.hex() == v["packet"] and challenge == h(v["whoareyou.challenge-data"])


@pytest.mark.parametrize("name", ["ping_handshake_packet", "ping_handshake_packet_with_enr"])
def test_handshake_packets(name: str) -> None:
    v = P[name]
    d = v["derived"]
    pkt = decode_packet(h(v["packet"]), ID_B, protocol_id=DISCV5_PROTOCOL_ID)
    assert pkt.header.flag == Flag.HANDSHAKE and pkt.header.nonce == h(v["nonce"])
    auth = decode_handshake_auth(pkt.header.authdata)
    assert auth.src_id == ID_A and auth.eph_pubkey == h(v["ephemeral-pubkey"])
    assert auth.id_signature == h(d["authdata.id-signature"]) and auth.record == h(d["authdata.record"])
    challenge = h(v["whoareyou.challenge-data"])
    # A's side: keys from the ephemeral key and B's static key; the signature over B's challenge.
    init, recip = derive_keys(h(v["ephemeral-key"]), pub(KEY_B), ID_A, ID_B, challenge)
    assert init == h(v["read-key"]) == h(d["initiator-key"]) and recip == h(d["recipient-key"])
    sig = id_sign(KEY_A, challenge, auth.eph_pubkey, ID_B)
    assert sig == auth.id_signature
    # B's side: the same keys from its static key and the ephemeral public key.
    assert derive_keys(KEY_B, auth.eph_pubkey, ID_A, ID_B, challenge) == (init, recip)
    assert id_verify(pub(KEY_A), auth.id_signature, challenge, auth.eph_pubkey, ID_B)
    pt = open_message(pkt, init)
    assert decode_message(pt) == _ping(v)
    if auth.record:  # {id=v4, ip=127.0.0.1, secp256k1}, no udp: must still decode
        rec = Enr.from_rlp(auth.record)
        assert rec.node_id == ID_A and rec.seq == 1 and rec.ip == "127.0.0.1" and rec.udp is None
    again = encode_handshake(ID_B, ID_A, h(v["nonce"]), bytes(16), sig, auth.eph_pubkey, auth.record, init,
                             encode_message(_ping(v)), protocol_id=DISCV5_PROTOCOL_ID)
    assert again.hex() == v["packet"]


def test_d5waku_variants() -> None:
    m = W["ping_message_packet_d5waku"]
    base = P["ping_message_packet"]
    pkt = decode_packet(h(m["packet"]), ID_B)  # d5waku is the default
    assert pkt.header_data == h(m["masking-iv"]) + h(m["unmasked-header"])
    assert open_message(pkt, h(base["read-key"])) == h(m["message-plaintext"])
    assert encode_ordinary(ID_B, ID_A, h(base["nonce"]), bytes(16), h(base["read-key"]),
                           h(m["message-plaintext"])).hex() == m["packet"]
    w = W["whoareyou_packet_d5waku"]
    wb = P["whoareyou_packet"]
    data, challenge = encode_whoareyou(ID_B, h(wb["whoareyou.request-nonce"]), h(wb["whoareyou.id-nonce"]), 0,
                                       bytes(16))
    assert data.hex() == w["packet"] and challenge == h(w["whoareyou.challenge-data"])
    assert decode_packet(data, ID_B).header_data == challenge


@pytest.mark.parametrize("name", sorted(P))
def test_protocol_id_mismatch_is_dropped(name: str) -> None:
    with pytest.raises(WrongProtocolIdError):
        decode_packet(h(P[name]["packet"]), ID_B, protocol_id=WAKU_PROTOCOL_ID)
    for k in ("ping_message_packet_d5waku", "whoareyou_packet_d5waku"):
        with pytest.raises(WrongProtocolIdError):
            decode_packet(h(W[k]["packet"]), ID_B, protocol_id=DISCV5_PROTOCOL_ID)


def test_size_limits() -> None:
    with pytest.raises(Discv5DecodeError):
        decode_packet(bytes(62), ID_B)
    with pytest.raises(Discv5DecodeError):
        decode_packet(bytes(1281), ID_B)


@pytest.mark.parametrize("msg", [
    Ping(b"\x00\x00\x00\x01", 2), Pong(b"\x01", 7, bytes([127, 0, 0, 1]), 30303), Pong(b"", 0, bytes(16), 1),
    FindNode(b"12345678", (0, 1, 256)), FindNode(b"x", ()), Nodes(b"r", 2, ()),
    TalkReq(b"r", b"proto", b"\x00payload"), TalkResp(b"r", b""),
])
def test_message_roundtrip(msg: Any) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_nodes_with_records_roundtrip() -> None:
    e = Enr.build(KEY_A, 3, ip="127.0.0.1", udp=9000)
    m = Nodes(b"\x07", 1, (e.raw, e.raw))
    assert decode_message(encode_message(m)) == m


@pytest.mark.parametrize("bad", ["", "07c0", "01c0", "01c988000000000000000001", "01c5840000000100", "09c101",
                                 "02c7010104ffff", "04c3010101", "03c40182ffff"])
def test_bad_messages(bad: str) -> None:
    with pytest.raises(Discv5DecodeError):
        decode_message(bytes.fromhex(bad))


def _decode_everything(data: bytes) -> None:
    for proto in (WAKU_PROTOCOL_ID, DISCV5_PROTOCOL_ID):
        try:
            pkt = decode_packet(data, ID_B, protocol_id=proto)
        except Discv5DecodeError:
            continue
        for fn in (decode_whoareyou_auth, decode_handshake_auth):
            try:
                fn(pkt.header.authdata)
            except Discv5DecodeError:
                pass
        try:
            decode_message(open_message(pkt, bytes(16)))
        except Discv5DecodeError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_fuzz_garbage(data: bytes) -> None:
    try:
        _decode_everything(data)
    except V2Error as exc:
        assert isinstance(exc, Discv5DecodeError)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(P)), FLIPS, st.booleans())
def test_fuzz_mutated_vectors(name: str, flips: list[tuple[int, int]], truncate: bool) -> None:
    data = mutate(h(P[name]["packet"]), flips)
    if truncate:
        data = data[: max(0, len(data) - flips[0][0] % 64)]
    _decode_everything(data)  # only Discv5DecodeError may be raised, and it is caught inside


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_messages(body: bytes) -> None:
    for t in range(0, 8):
        try:
            decode_message(bytes([t]) + body)
        except Discv5DecodeError:
            pass
