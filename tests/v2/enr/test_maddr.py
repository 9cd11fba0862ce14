"""The binary multiaddr codec used by the ENR ``multiaddrs`` key."""

from __future__ import annotations

import secrets

import multiaddr
import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from v2.enr.enr import peer_id_from_public_key
from v2.enr.maddr import MultiaddrError, b58decode, b58encode, decode_multiaddr, encode_multiaddr

PID = peer_id_from_public_key(PrivateKey(secrets.token_bytes(32)).public_key.format(compressed=True))

CASES = [
    "/ip4/127.0.0.1/tcp/60000",
    "/ip4/192.168.178.251/tcp/8002/ws",
    "/ip6/2001:db8::1/tcp/443/wss",
    "/dns4/node-01.do-ams3.waku.sandbox.status.im/tcp/8000/wss",
    "/dns6/example.org/tcp/30303",
    "/ip4/1.2.3.4/udp/9000",
    f"/ip4/1.2.3.4/tcp/4001/p2p/{PID}/p2p-circuit",
    f"/ip4/127.0.0.1/tcp/1/ws/p2p/{PID}",
]


@pytest.mark.parametrize("text", CASES)
def test_matches_reference_implementation(text: str) -> None:
    # the multiaddr package (py-libp2p's) is the reference for the binary layout
    assert encode_multiaddr(text) == multiaddr.Multiaddr(text).to_bytes()
    assert decode_multiaddr(encode_multiaddr(text)) == text


def test_bad_input() -> None:
    for text in ("", "ip4/1.2.3.4", "/ip4/300.1.1.1", "/tcp/70000", "/quic/1", "/ip4", "/dns4/"):
        with pytest.raises(MultiaddrError):
            encode_multiaddr(text)
    for data in (b"", b"\x04\x01", b"\x06", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x36\x00",
                 b"\x36\x05ab", b"\x36\x02a/", b"\x36\x02\xff\xfe", b"\x99\x01"):
        with pytest.raises(MultiaddrError):
            decode_multiaddr(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_decode(data: bytes) -> None:
    try:
        text = decode_multiaddr(data)
    except MultiaddrError:
        return
    assert decode_multiaddr(encode_multiaddr(text)) == text


@given(st.binary(max_size=40))
def test_base58_round_trip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data
