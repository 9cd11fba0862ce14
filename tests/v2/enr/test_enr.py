"""EIP-778 records: the published vector, the Waku keys, peer id derivation, bad input, fuzz."""

from __future__ import annotations

import secrets

import pytest
import rlp
import trio
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.net import free_ports
from tests.helpers.vectors import load_vectors
from v2.enr.enr import MAX_RECORD_SIZE, Enr, EnrError, RelayShards, Waku2, keccak256, peer_id_from_public_key
from v2.host import Host, HostConfig

VECTOR = load_vectors("eip778_enr.json")["vectors"][0]
KEY = bytes.fromhex(VECTOR["private_key"])


def test_vector_decodes_and_verifies() -> None:
    e = Enr.from_text(VECTOR["enr"])
    assert e.raw.hex() == VECTOR["rlp_hex"]
    assert e.signature.hex() == VECTOR["signature"]
    assert e.seq == VECTOR["seq"]
    assert e.node_id.hex() == VECTOR["node_id"]
    assert e.public_key.hex() == VECTOR["pairs"]["secp256k1"]
    assert e.get("id") == b"v4"
    assert e.ip == "127.0.0.1" and e.udp == 30303 and e.tcp is None
    assert e.public_key == PrivateKey(KEY).public_key.format(compressed=True)
    assert Enr.from_rlp(bytes.fromhex(VECTOR["rlp_hex"])) == e
    assert e.multiaddrs() == []  # udp only: nothing libp2p can dial


def test_build_reproduces_vector_byte_for_byte() -> None:
    # RFC 6979 nonces make signing deterministic (EIP-778 example; tests/vectors/README.md).
    e = Enr.build(KEY, VECTOR["seq"], ip="127.0.0.1", udp=30303)
    assert e.to_text() == VECTOR["enr"]
    assert e.raw.hex() == VECTOR["rlp_hex"]


def test_waku_keys_round_trip() -> None:
    key = secrets.token_bytes(32)
    e = Enr.build(key, 7, ip="10.1.2.3", tcp=60000, udp=9000, ip6="::1", waku2=Waku2.RELAY | Waku2.STORE,
                  multiaddrs=["/dns4/node.example.org/tcp/443/wss", "/ip4/10.1.2.3/tcp/8000/ws"],
                  cluster=1, shards=[7, 0, 1, 1])
    d = Enr.from_text(e.to_text())
    assert d == e and d.seq == 7
    assert d.waku2 == Waku2.RELAY | Waku2.STORE
    assert d.shards == RelayShards(1, (0, 1, 7))
    assert d.get("rs") == bytes.fromhex("0001" "03" "0000" "0001" "0007")
    assert d.waku_multiaddrs == ["/dns4/node.example.org/tcp/443/wss", "/ip4/10.1.2.3/tcp/8000/ws"]
    pid = d.peer_id
    assert d.multiaddrs() == [
        f"/ip4/10.1.2.3/tcp/60000/p2p/{pid}",
        f"/ip6/::1/tcp/60000/p2p/{pid}",  # tcp6 defaults to tcp (EIP-778)
        f"/dns4/node.example.org/tcp/443/wss/p2p/{pid}",
        f"/ip4/10.1.2.3/tcp/8000/ws/p2p/{pid}",
    ]
    keys = [k for k, _ in d.pairs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_multiaddrs_key_layout_and_own_peer_id_stripped() -> None:
    key = secrets.token_bytes(32)
    pid = peer_id_from_public_key(PrivateKey(key).public_key.format(compressed=True))
    e = Enr.build(key, 1, multiaddrs=[f"/ip4/192.168.178.251/tcp/8002/ws/p2p/{pid}"])
    # waku-v2.md §13 (js-waku testdata enrWithWaku2Relay): 000a 04c0a8b2fb 061f42 dd03
    assert e.get("multiaddrs") == bytes.fromhex("000a04c0a8b2fb061f42dd03")
    assert e.multiaddrs() == [f"/ip4/192.168.178.251/tcp/8002/ws/p2p/{pid}"]


def test_circuit_address_gets_p2p_circuit_back() -> None:
    relay = peer_id_from_public_key(PrivateKey(secrets.token_bytes(32)).public_key.format(compressed=True))
    e = Enr.build(secrets.token_bytes(32), 1, multiaddrs=[f"/ip4/1.2.3.4/tcp/4001/p2p/{relay}/p2p-circuit"])
    assert e.waku_multiaddrs == [f"/ip4/1.2.3.4/tcp/4001/p2p/{relay}"]
    assert e.multiaddrs() == [f"/ip4/1.2.3.4/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{e.peer_id}"]


def test_list_values_kept_and_hashable() -> None:
    pub = PrivateKey(KEY).public_key.format(compressed=True)
    raw = _resign([(b"eth", [[b"\x01\x02\x03\x04", b""]]), (b"id", b"v4"), (b"secp256k1", pub)])  # type: ignore[list-item]
    e = Enr.from_rlp(raw)
    assert e.get("eth") == [[b"\x01\x02\x03\x04", b""]] and e.raw == raw
    assert {e, Enr.from_rlp(raw)} == {e}


def test_rsv_and_lenient_shards() -> None:
    vec = bytearray(128)
    for shard in (0, 9, 1023):
        vec[shard // 8] |= 1 << (shard % 8)  # nwaku's bit order
    e = Enr.build(secrets.token_bytes(32), 1, extra={"rsv": b"\x00\x10" + bytes(vec)})
    assert e.shards == RelayShards(16, (0, 9, 1023))
    bad = Enr.build(secrets.token_bytes(32), 1, extra={"rs": b"\x00\x01\x05\x00"})  # count 5, one byte
    assert bad.shards is None
    assert Enr.build(secrets.token_bytes(32), 1, extra={"waku2": b"\x01\x02"}).waku2 is None


async def test_peer_id_matches_libp2p_host(nursery: trio.Nursery) -> None:
    key = secrets.token_bytes(32)
    tcp, = free_ports(1)
    host = Host(HostConfig(key, "127.0.0.1", tcp, None))
    e = Enr.build(key, 1, ip="127.0.0.1", tcp=tcp)
    assert e.peer_id == host.peer_id
    await nursery.start(host.run)
    assert e.multiaddrs() == host.listen_addrs


def _resign(pairs: list[tuple[bytes, bytes]], seq: int = 1, key: bytes = KEY) -> bytes:
    content: list[object] = [seq.to_bytes(1, "big")]
    for k, v in pairs:
        content += [k, v]
    sig = PrivateKey(key).sign_recoverable(keccak256(rlp.encode(content)), hasher=None)[:64]
    return bytes(rlp.encode([sig, *content]))


def test_rejections() -> None:
    pub = PrivateKey(KEY).public_key.format(compressed=True)
    good = [(b"id", b"v4"), (b"secp256k1", pub)]
    Enr.from_rlp(_resign(good))  # the baseline is valid
    with pytest.raises(EnrError, match="sorted"):
        Enr.from_rlp(_resign([(b"secp256k1", pub), (b"id", b"v4")]))
    with pytest.raises(EnrError, match="sorted"):
        Enr.from_rlp(_resign([(b"id", b"v4"), (b"id", b"v4"), (b"secp256k1", pub)]))
    with pytest.raises(EnrError, match="identity"):
        Enr.from_rlp(_resign([(b"id", b"v5"), (b"secp256k1", pub)]))
    with pytest.raises(EnrError, match="signature"):  # signed by another key
        Enr.from_rlp(_resign(good, key=secrets.token_bytes(32)))
    tampered = bytearray(bytes.fromhex(VECTOR["rlp_hex"]))
    tampered[-1] ^= 1
    with pytest.raises(EnrError):
        Enr.from_rlp(bytes(tampered))
    with pytest.raises(EnrError, match="exceeds"):
        Enr.from_rlp(_resign([*good, (b"z", b"x" * 300)]))
    with pytest.raises(EnrError, match="exceeds"):
        Enr.build(KEY, 1, extra={"z": b"x" * MAX_RECORD_SIZE})
    for text in ("", "enr:", "enr:!!!!", "enode://abc", VECTOR["enr"][:-3], "enr:" + "A" * 1000):
        with pytest.raises(EnrError):
            Enr.from_text(text)


def test_high_s_signature_rejected() -> None:
    # secp256k1 signatures are malleable: (r, n - s) verifies too; EIP-778 peers (go-ethereum)
    # accept only the normalised low-s form, and so do we.
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    e = Enr.from_text(VECTOR["enr"])
    r, s = e.signature[:32], int.from_bytes(e.signature[32:], "big")
    items = rlp.decode(e.raw)
    items[0] = r + (n - s).to_bytes(32, "big")
    with pytest.raises(EnrError, match="signature"):
        Enr.from_rlp(rlp.encode(items))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_from_rlp(data: bytes) -> None:
    try:
        Enr.from_rlp(data)
    except EnrError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(bytes.fromhex(VECTOR["rlp_hex"])) - 1), st.integers(1, 255))
def test_fuzz_bit_flips_never_verify(pos: int, xor: int) -> None:
    raw = bytearray(bytes.fromhex(VECTOR["rlp_hex"]))
    raw[pos] ^= xor
    with pytest.raises(EnrError):
        Enr.from_rlp(bytes(raw))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_from_text(text: str) -> None:
    try:
        Enr.from_text("enr:" + text)
    except EnrError:
        pass


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 65535), st.integers(0, 255),
       st.lists(st.integers(0, 1023), max_size=20))
def test_fuzz_build_round_trip(seq: int, port: int, bits: int, shards: list[int]) -> None:
    e = Enr.build(KEY, seq, ip="1.2.3.4", tcp=port, waku2=bits, cluster=3, shards=shards)
    d = Enr.from_rlp(e.raw)
    assert (d.seq, d.tcp, d.waku2, d.shards) == (seq, port, Waku2(bits), RelayShards(3, tuple(sorted(set(shards)))))


# A record nwaku produced: the first TWN bootstrap node in waku-org/nwaku
# waku/factory/networks_config.nim (decoded expectations from waku-v2.md §13).
NWAKU_TWN_ENR = (
    "enr:-QESuEB4Dchgjn7gfAvwB00CxTA-nGiyk-aALI-H4dYSZD3rUk7bZHmP8d2U6xDiQ2vZffpo45Jp7zKNdnwDUx6g4o6XAYJpZIJ2NIJpcIRA"
    "4VDAim11bHRpYWRkcnO4XAArNiZub2RlLTAxLmRvLWFtczMud2FrdS5zYW5kYm94LnN0YXR1cy5pbQZ2XwAtNiZub2RlLTAxLmRvLWFtczMud2Fr"
    "dS5zYW5kYm94LnN0YXR1cy5pbQYfQN4DgnJzkwABCAAAAAEAAgADAAQABQAGAAeJc2VjcDI1NmsxoQOvD3S3jUNICsrOILlmhENiWAMmMVlAl6-Q"
    "8wRB7hidY4N0Y3CCdl-DdWRwgiMohXdha3UyDw"
)


def test_nwaku_fleet_record() -> None:
    e = Enr.from_text(NWAKU_TWN_ENR)
    assert (e.ip, e.tcp, e.udp) == ("64.225.80.192", 30303, 9000)
    assert e.waku2 == Waku2.RELAY | Waku2.STORE | Waku2.FILTER | Waku2.LIGHTPUSH
    assert e.shards == RelayShards(1, tuple(range(8)))
    assert e.waku_multiaddrs == ["/dns4/node-01.do-ams3.waku.sandbox.status.im/tcp/30303",
                                 "/dns4/node-01.do-ams3.waku.sandbox.status.im/tcp/8000/wss"]
    assert all(a.endswith(f"/p2p/{e.peer_id}") for a in e.multiaddrs()) and len(e.multiaddrs()) == 3
    assert Enr.from_rlp(e.raw).to_text() == NWAKU_TWN_ENR
