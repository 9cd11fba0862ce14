"""Every vector of tests/vectors/eip8_rlpx.json, for both the recipient and initiator paths."""

from __future__ import annotations

from typing import Any

import pytest
import rlp

from tests.helpers.vectors import load_vectors
from v1.rlpx.base import decode_hello
from v1.rlpx.crypto import pubkey_of, recover_pubkey
from v1.rlpx.handshake import decode_ack, decode_auth, derive_secrets

VECTORS = {v["name"]: v for v in load_vectors("eip8_rlpx.json")["vectors"]}
HS = VECTORS["rlpx_handshake"]


def h(key: str) -> bytes:
    return bytes.fromhex(HS[key])


@pytest.mark.parametrize(("name", "version", "eip8"), [
    ("auth1_v4_plain", 4, False), ("auth2_eip8_v4", 4, True), ("auth3_eip8_v56_extra", 56, True)])
def test_auth_decodes_at_b(name: str, version: int, eip8: bool) -> None:
    parsed = decode_auth(h("static_key_b"), h(name))
    assert parsed is not None
    auth, remote_eph, consumed = parsed
    assert consumed == len(h(name))
    assert auth.eip8 is eip8
    assert auth.initiator_pubkey == pubkey_of(h("static_key_a"))
    assert auth.initiator_nonce == h("nonce_a")
    assert remote_eph == pubkey_of(h("ephemeral_key_a"))
    if eip8:
        assert auth.version == version


@pytest.mark.parametrize(("name", "version", "eip8"), [
    ("ack1_v4_plain", 4, False), ("ack2_eip8_v4", 4, True), ("ack3_eip8_v57_extra", 57, True)])
def test_ack_decodes_at_a(name: str, version: int, eip8: bool) -> None:
    parsed = decode_ack(h("static_key_a"), h(name), eip8=eip8)
    assert parsed is not None
    ack, consumed = parsed
    assert consumed == len(h(name))
    assert ack.ephemeral_pubkey == pubkey_of(h("ephemeral_key_b"))
    assert ack.recipient_nonce == h("nonce_b")
    if eip8:
        assert ack.version == version


def test_incomplete_packets_ask_for_more() -> None:
    auth = h("auth2_eip8_v4")
    assert decode_auth(h("static_key_b"), auth[:1]) is None
    assert decode_auth(h("static_key_b"), auth[:100]) is None
    assert decode_ack(h("static_key_a"), h("ack2_eip8_v4")[:-1], eip8=True) is None


def _secrets(initiator: bool) -> Any:
    return derive_secrets(
        initiator=initiator,
        ephemeral_priv=h("ephemeral_key_a" if initiator else "ephemeral_key_b"),
        remote_ephemeral_pub=pubkey_of(h("ephemeral_key_b" if initiator else "ephemeral_key_a")),
        initiator_nonce=h("nonce_a"), recipient_nonce=h("nonce_b"),
        auth_wire=h("auth2_eip8_v4"), ack_wire=h("ack2_eip8_v4"))


def test_secrets_at_b_match_the_eip() -> None:
    expected = HS["expected_b_for_auth2_ack2"]
    s = _secrets(initiator=False)
    assert s.aes_secret.hex() == expected["aes_secret"]
    assert s.mac_secret.hex() == expected["mac_secret"]
    s.ingress_mac.update(b"foo")  # type: ignore[attr-defined]
    assert s.ingress_mac.digest().hex() == expected["ingress_mac_after_foo"]  # type: ignore[attr-defined]


def test_initiator_secrets_mirror_the_recipient() -> None:
    a, b = _secrets(initiator=True), _secrets(initiator=False)
    assert (a.aes_secret, a.mac_secret) == (b.aes_secret, b.mac_secret)
    a.egress_mac.update(b"x")  # type: ignore[attr-defined]
    b.ingress_mac.update(b"x")  # type: ignore[attr-defined]
    assert a.egress_mac.digest() == b.ingress_mac.digest()  # type: ignore[attr-defined]


def test_hello_forward_compat() -> None:
    hello = decode_hello(bytes.fromhex(VECTORS["devp2p_hello_forward_compat"]["hello_rlp_hex"]))
    assert hello.version == 55  # the EIP's "version 22" is the mork capability (EIP-8; tests/vectors/README.md)
    assert hello.capabilities == (("eth", 61), ("mork", 22))
    assert hello.listen_port == 9999 and len(hello.node_id) == 64


def test_discv4_packets_recover_the_node_key() -> None:
    """The discv4 group is signed by static key B; its signatures recover with our primitives."""
    from v1.rlpx.crypto import keccak256

    v = VECTORS["discv4_packets_forward_compat"]
    for name in ("ping_v4", "ping_v555", "pong", "findnode", "neighbours"):
        pkt = bytes.fromhex(v[name])
        assert keccak256(pkt[32:]) == pkt[:32]
        pub = recover_pubkey(pkt[32:97], keccak256(pkt[97:]))
        assert pub == pubkey_of(bytes.fromhex(v["node_key"]))
    assert rlp.decode(bytes.fromhex(v["ping_v4"])[98:], strict=False)
