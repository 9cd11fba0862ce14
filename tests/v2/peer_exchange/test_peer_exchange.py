"""Peer exchange: wire presence rules, fuzzed decoders, and requests between two real hosts."""

from __future__ import annotations

import random
import secrets

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.helpers.v2host import start_host
from tests.helpers.vectors import load_vectors
from v2.enr.enr import Enr, Waku2
from v2.peer_exchange.client import PeerExchangeClient, PeerExchangeError
from v2.peer_exchange.protocol import PeerExchangeService
from v2.peer_exchange.rpc_codec import (
    PxCodecError,
    PxStatus,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from v2.protocol_ids import PEER_EXCHANGE
from v2.ratelimit import RateLimit

ENR_VECTOR = load_vectors("eip778_enr.json")["vectors"][0]


def enrs(n: int) -> list[Enr]:
    return [Enr.build(secrets.token_bytes(32), 1, ip="10.0.0.1", tcp=60000 + i, waku2=Waku2.RELAY,
                      multiaddrs=[f"/ip4/10.0.0.1/tcp/{8000 + i}/ws"], cluster=0, shards=[0]) for i in range(n)]


# ---------------------------------------------------------------------- codec


def test_response_always_writes_query_and_status() -> None:
    empty = encode_response([])
    # PeerExchangeRPC{query(1){num_peers=0}, response(2){status_code(10)=200}}: nwaku requires field 1
    assert empty == bytes.fromhex("0a020800" "1203" "50c801")
    assert decode_response(empty).status == PxStatus.SUCCESS
    raw = bytes.fromhex(ENR_VECTOR["rlp_hex"])
    r = decode_response(encode_response([raw], num_peers=5))
    assert r.enrs == (raw,) and r.status == 200 and r.status_desc is None
    err = decode_response(encode_response([], PxStatus.BAD_REQUEST, "num_peers is 0"))
    assert (err.status, err.status_desc) == (400, "num_peers is 0")


def test_request_round_trip_and_absent_fields() -> None:
    assert encode_request(60) == bytes.fromhex("0a02083c")
    assert decode_request(encode_request(60)).num_peers == 60
    assert decode_request(bytes.fromhex("0a00")).num_peers == 0  # query without num_peers
    with pytest.raises(PxCodecError):
        decode_request(b"")  # no query at all
    with pytest.raises(PxCodecError):
        decode_response(encode_request(3))  # no response
    # nwaku's inference when a (pre-extension) server writes no status
    assert decode_response(bytes.fromhex("1200")).status == PxStatus.SERVICE_UNAVAILABLE
    assert decode_response(bytes.fromhex("1204") + bytes.fromhex("0a020a00")).status == PxStatus.SUCCESS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decoders(data: bytes) -> None:
    for fn in (decode_request, decode_response):
        try:
            fn(data)
        except PxCodecError:
            pass


# ---------------------------------------------------------------------- two real hosts


async def test_px_between_two_hosts(nursery: trio.Nursery) -> None:
    server_reg, client_reg = CollectorRegistry(), CollectorRegistry()
    pool = enrs(80)
    service = PeerExchangeService(server_reg, enr_source=lambda: pool, rng=random.Random(1))
    a, b = await start_host(nursery), await start_host(nursery)
    for pid in service.protocol_ids:
        a.set_stream_handler(pid, service.handle)
    await b.connect(a.listen_addrs[0])
    client = PeerExchangeClient(b, client_reg)

    got = await client.request(a.peer_id, 5)
    assert len(got) == 5 and all(e in pool for e in got)
    many = await client.request(a.peer_id, 1000)
    assert len(many) == 60  # nwaku's cap (MaxPeersCacheSize)
    assert len({e.node_id for e in many}) == 60
    assert server_reg.get_sample_value("waku_px_peers_sent_total") == 65
    assert client_reg.get_sample_value("waku_px_peers_received_total") == 65

    with pytest.raises(PeerExchangeError) as bad:
        await client.request(a.peer_id, 0)
    assert bad.value.status == PxStatus.BAD_REQUEST
    assert server_reg.get_sample_value("waku_px_errors_total", {"type": "bad_request"}) == 1


async def test_bad_input_keeps_service_serving(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    pool = enrs(3)
    calls = {"n": 0}

    def source() -> list[Enr]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the node's source")
        return pool

    service = PeerExchangeService(reg, enr_source=source)
    a, b = await start_host(nursery), await start_host(nursery)
    a.set_stream_handler(PEER_EXCHANGE, service.handle)
    await b.connect(a.listen_addrs[0])
    client = PeerExchangeClient(b)

    with pytest.raises(PeerExchangeError) as failed:
        await client.request(a.peer_id, 3)
    assert failed.value.status == PxStatus.SERVICE_UNAVAILABLE

    s = await b.new_stream(a.peer_id, [PEER_EXCHANGE])
    await s.write_lp(b"\xff\xff\xff")  # not protobuf
    reply = await s.read_lp(1 << 20)
    assert reply is not None and decode_response(reply).status == PxStatus.BAD_REQUEST
    await s.aclose()

    s = await b.new_stream(a.peer_id, [PEER_EXCHANGE])
    await s.close_write()  # a pre-opened stream closed unused: no answer, no error
    assert await s.read_lp(1 << 20) is None
    await s.aclose()

    assert reg.get_sample_value("waku_px_errors_total", {"type": "decode_rpc_failure"}) == 1
    assert len(await client.request(a.peer_id, 10)) == 3  # still serving


async def test_client_drops_invalid_records(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    good = enrs(2)
    tampered = bytearray(good[1].raw)
    tampered[-1] ^= 1
    a, b = await start_host(nursery), await start_host(nursery)

    async def liar(stream) -> None:  # type: ignore[no-untyped-def]
        await stream.read_lp(1024)
        await stream.write_lp(encode_response([good[0].raw, bytes(tampered), b"junk"], num_peers=3))
        await stream.close_write()

    a.set_stream_handler(PEER_EXCHANGE, liar)
    await b.connect(a.listen_addrs[0])
    got = await PeerExchangeClient(b, reg).request(a.peer_id, 3)
    assert got == [good[0]]
    assert reg.get_sample_value("waku_px_errors_total", {"type": "invalid_enr"}) == 2
    assert reg.get_sample_value("waku_px_peers_received_total") == 1


async def test_client_against_peer_without_px(nursery: trio.Nursery) -> None:
    a, b = await start_host(nursery), await start_host(nursery)
    await b.connect(a.listen_addrs[0])
    with pytest.raises(PeerExchangeError) as exc:
        await PeerExchangeClient(b, timeout=5).request(a.peer_id, 3)
    assert exc.value.status == PxStatus.DIAL_FAILURE


async def test_rate_limit_answers_429(nursery: trio.Nursery) -> None:
    reg = CollectorRegistry()
    service = PeerExchangeService(reg, enr_source=lambda: enrs(2), rate_limit=RateLimit(2, 3600.0))
    a, b = await start_host(nursery), await start_host(nursery)
    a.set_stream_handler(PEER_EXCHANGE, service.handle)
    await b.connect(a.listen_addrs[0])
    client = PeerExchangeClient(b)
    assert len(await client.request(a.peer_id, 5)) == 2
    assert len(await client.request(a.peer_id, 5)) == 2
    with pytest.raises(PeerExchangeError) as limited:
        await client.request(a.peer_id, 5)
    assert limited.value.status == PxStatus.TOO_MANY_REQUESTS
    assert reg.get_sample_value("waku_px_errors_total", {"type": "rate_limited"}) == 1
    assert reg.get_sample_value("waku_service_requests_total", {"service": "px", "state": "rejected"}) == 1
    assert reg.get_sample_value("waku_service_requests_total", {"service": "px", "state": "served"}) == 2
