"""LightPush service and client over real sockets (two hosts on 127.0.0.1), v3 and legacy v2."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.v2host import start_host
from v2.core.message import WakuMessage, message_hash
from v2.core.topics import autoshard
from v2.host import Host
from v2.lightpush.client import LightpushClient
from v2.lightpush.protocol import LightpushAccepted, LightpushRejected, LightpushService
from v2.lightpush.rpc_codec import LightpushResponse, LightpushStatus, PushRPC
from v2.protocol_ids import LIGHTPUSH_V2, LIGHTPUSH_V3
from v2.ratelimit import RateLimit
from v2.stream import encode_uvarint

CT = "/test/1/lightpush/proto"
MAX = 1024


@dataclass
class Relay:
    """The node's publish path as the service sees it: records what it was given."""

    peers: int = 3
    fail: BaseException | None = None
    published: list[tuple[str, WakuMessage, bytes]] = field(default_factory=list)

    async def __call__(self, pubsub_topic: str, msg: WakuMessage, data: bytes) -> int:
        if self.fail is not None:
            raise self.fail
        self.published.append((pubsub_topic, msg, data))
        return self.peers


@dataclass
class Setup:
    relay: Relay
    service: LightpushService
    server: Host
    client_host: Host
    client: LightpushClient
    registry: CollectorRegistry
    accepted: list[LightpushAccepted]

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


async def make(nursery: trio.Nursery, protocols: tuple[str, ...] = (LIGHTPUSH_V3, LIGHTPUSH_V2),
               **kw: object) -> Setup:
    relay, registry, accepted = Relay(), CollectorRegistry(), []

    async def on_accepted(a: LightpushAccepted) -> None:
        accepted.append(a)

    service = LightpushService(relay, registry, cluster_id=0, num_shards=8, max_msg_size=MAX,
                               on_accepted=on_accepted, request_timeout=0.5, **kw)  # type: ignore[arg-type]
    server = await start_host(nursery)
    for pid in protocols:
        server.set_stream_handler(pid, service.handle)
    client_host = await start_host(nursery)
    await client_host.connect(server.listen_addrs[0])
    return Setup(relay, service, server, client_host, LightpushClient(client_host, cluster_id=0, num_shards=8),
                 registry, accepted)


@pytest.fixture
async def s(nursery: trio.Nursery) -> AsyncIterator[Setup]:
    yield await make(nursery)


def msg(payload: bytes = b"hello", ct: str = CT) -> WakuMessage:
    return WakuMessage(payload, ct, version=0, timestamp=time.time_ns())


async def test_v3_round_trip_explicit_and_autosharded(s: Setup) -> None:
    peer, m = s.server.peer_id, msg()
    r = await s.client.push(peer, "/waku/2/rs/0/5", m)
    assert (r.protocol, r.status_code, r.relay_peer_count, r.ok) == (LIGHTPUSH_V3, 200, 3, True)
    auto = str(autoshard(CT, 0, 8))
    r = await s.client.push(peer, None, m)
    assert r.ok and s.relay.published[1][0] == auto
    assert s.relay.published[0] == ("/waku/2/rs/0/5", m, m.encode())
    assert [(a.peer, a.pubsub_topic, a.hash, a.protocol) for a in s.accepted] == [
        (s.client_host.peer_id, "/waku/2/rs/0/5", message_hash("/waku/2/rs/0/5", m), LIGHTPUSH_V3),
        (s.client_host.peer_id, auto, message_hash(auto, m), LIGHTPUSH_V3)]
    assert s.metric("waku_lightpush_v3_messages_total", type="PushRequest", status="200") == 2


async def test_v3_refusals(s: Setup) -> None:
    peer = s.server.peer_id
    cases = [
        ("/waku/2/rs/0/0", msg(b""), 420),  # empty payload
        (None, msg(ct="not-a-content-topic"), 420),  # autosharding impossible
        (None, msg(ct="/1/app/1/name/proto"), 420),  # generation 1
        ("/waku/2/rs/1/0", msg(), 421),  # another cluster
        ("/waku/2/rs/0/8", msg(), 421),  # not one of our 8 shards
        ("/waku/2/default-waku/proto", msg(), 421),  # named sharding is gone
        ("/waku/2/rs/0/0", msg(b"x" * (MAX + 1)), 413),
    ]
    for topic, m, code in cases:
        r = await s.client.push(peer, topic, m)
        assert (r.status_code, r.ok) == (code, False), (topic, m.content_topic, r)
    assert s.relay.published == [] and s.accepted == []

    s.relay.peers = 0
    r = await s.client.push(peer, "/waku/2/rs/0/0", msg())
    assert (r.status_code, r.relay_peer_count, r.ok) == (505, 0, False)
    assert s.metric("waku_lightpush_v3_errors_total", type="no_peers_to_relay") == 1
    s.relay.fail = LightpushRejected(LightpushStatus.TOO_MANY_REQUESTS, "slow down")
    r = await s.client.push(peer, "/waku/2/rs/0/0", msg())
    assert (r.status_code, r.status_desc) == (429, "slow down")
    s.relay.fail = RuntimeError("boom")
    assert (await s.client.push(peer, "/waku/2/rs/0/0", msg())).status_code == 500
    assert s.accepted == []


async def test_static_sharding_needs_a_topic(nursery: trio.Nursery) -> None:
    st = await make(nursery, static_shards=True, shards=[3])
    r = await st.client.push(st.server.peer_id, None, msg())
    assert r.status_code == 420 and "static sharding" in (r.status_desc or "")
    assert (await st.client.push(st.server.peer_id, "/waku/2/rs/0/3", msg())).ok
    assert (await st.client.push(st.server.peer_id, "/waku/2/rs/0/4", msg())).status_code == 421


async def test_legacy_when_the_peer_lacks_v3(nursery: trio.Nursery) -> None:
    lg = await make(nursery, protocols=(LIGHTPUSH_V2,))
    peer, m = lg.server.peer_id, msg()
    r = await lg.client.push(peer, "/waku/2/rs/0/1", m)
    assert (r.protocol, r.status_code, r.status_desc, r.ok) == (LIGHTPUSH_V2, 200, "OK", True)
    r = await lg.client.push(peer, None, m)  # the client autoshards for legacy
    assert r.ok and lg.relay.published[-1][0] == str(autoshard(CT, 0, 8))
    lg.relay.peers = 0
    r = await lg.client.push(peer, "/waku/2/rs/0/1", m)
    assert (r.status_code, r.status_desc) == (505, "not_published_to_any_peer")
    r = await lg.client.push(peer, "/waku/2/rs/0/1", msg(b""))
    assert not r.ok and r.status_desc == "Message payload is empty"
    assert lg.metric("waku_lightpush_messages_total", type="PushRequest", status="success") == 2
    assert lg.metric("waku_lightpush_errors_total", type="no_peers_to_relay") == 1
    assert [a.protocol for a in lg.accepted] == [LIGHTPUSH_V2, LIGHTPUSH_V2]


async def raw(s: Setup, protocol: str, frame: bytes) -> bytes:
    st = await s.client_host.new_stream(s.server.peer_id, [protocol])
    await st._write(frame)
    data = await st.read_lp(65536)
    assert data is not None
    assert await st.read_lp(65536) is None  # the service closed its write side
    await st.aclose()
    return data


async def test_garbage_oversize_and_silent_streams(s: Setup) -> None:
    garbage = b"\xff\xff\xff\x01"
    r3 = LightpushResponse.decode(await raw(s, LIGHTPUSH_V3, encode_uvarint(len(garbage)) + garbage))
    assert (r3.request_id, r3.status_code) == ("N/A", 400) and (r3.status_desc or "").startswith("decode_rpc_failure")
    r2 = PushRPC.decode(await raw(s, LIGHTPUSH_V2, encode_uvarint(len(garbage)) + garbage))
    assert r2.request_id == "N/A" and r2.response is not None and not r2.response.is_success
    assert (r2.response.info or "").startswith("decode_rpc_failure")
    empty = PushRPC("r1").encode()  # a PushRPC without a request
    r2 = PushRPC.decode(await raw(s, LIGHTPUSH_V2, encode_uvarint(len(empty)) + empty))
    assert r2.request_id == "r1" and r2.response is not None and r2.response.info == "empty_request_body_failure"

    huge = encode_uvarint(50_000_000)  # announce 50 MB, send nothing more
    assert LightpushResponse.decode(await raw(s, LIGHTPUSH_V3, huge)).status_code == 413
    r2 = PushRPC.decode(await raw(s, LIGHTPUSH_V2, huge))
    assert r2.response is not None and not r2.response.is_success

    silent = []
    for pid in (LIGHTPUSH_V3, LIGHTPUSH_V2):
        silent.append(await s.client_host.new_stream(s.server.peer_id, [pid]))  # opened, then silent
        unused = await s.client_host.new_stream(s.server.peer_id, [pid])  # opened and closed unused
        await unused.close_write()
        assert await unused.read_lp(65536) is None
        await unused.aclose()
    with trio.fail_after(10):
        while (s.metric("waku_lightpush_v3_errors_total", type="read_timeout") < 1
               or s.metric("waku_lightpush_errors_total", type="read_timeout") < 1):
            await trio.sleep(0.05)
    for st in silent:
        await st.aclose()
    assert s.metric("waku_lightpush_v3_errors_total", type="decode_rpc_failure") == 1
    assert (await s.client.push(s.server.peer_id, None, msg())).ok  # still serving


async def test_rate_limit_answers_429_on_both_protocols(nursery: trio.Nursery) -> None:
    rl = await make(nursery, rate_limit=RateLimit(2, 3600.0))
    peer = rl.server.peer_id
    assert (await rl.client.push(peer, None, msg())).ok
    assert (await rl.client.push(peer, None, msg())).ok
    r = await rl.client.push(peer, None, msg())
    # nwaku's v3 answer: 429, its TooManyRequestsMessage, request_id "N/A" (the request is not decoded)
    assert (r.status_code, r.status_desc) == (429, "Request rejected due to too many requests")
    legacy = await make(nursery, protocols=(LIGHTPUSH_V2,), rate_limit=RateLimit(1, 3600.0))
    assert (await legacy.client.push(legacy.server.peer_id, None, msg())).ok
    r = await legacy.client.push(legacy.server.peer_id, None, msg())
    assert (r.protocol, r.status_code, r.status_desc) == (LIGHTPUSH_V2, 429, "TOO_MANY_REQUESTS")
    assert len(rl.relay.published) == 2 and len(legacy.relay.published) == 1
    assert rl.metric("waku_lightpush_v3_errors_total", type="too_many_requests") == 1
    assert legacy.metric("waku_lightpush_errors_total", type="too_many_requests") == 1
    # nwaku's service counters (waku_service_requests{service,state}) and which bucket was empty
    assert rl.metric("waku_service_requests_total", service="lightpush", state="served") == 2
    assert rl.metric("waku_service_requests_total", service="lightpush", state="rejected") == 1
    assert rl.metric("waku_service_rate_limited_total", service="lightpush", scope="service") == 1
    assert rl.metric("waku_service_requests_limit", service="lightpush") == 2 / 3600


async def test_rate_limit_raw_v3_answer_is_nwakus(nursery: trio.Nursery) -> None:
    """On the wire: request_id "N/A", status 429, nwaku's description, no relay_peer_count."""
    rl = await make(nursery, rate_limit=RateLimit(1, 3600.0))
    assert (await rl.client.push(rl.server.peer_id, None, msg())).ok
    stream = await rl.client_host.new_stream(rl.server.peer_id, [LIGHTPUSH_V3], timeout=5)
    await stream.write_lp(b"\x0a\x01x")  # not even a whole request: it is never decoded
    await stream.close_write()
    raw = await stream.read_lp(4096, timeout=5)
    assert raw is not None
    assert LightpushResponse.decode(raw) == LightpushResponse("N/A", 429, "Request rejected due to too many requests",
                                                              None)
