"""Filter service and client over real sockets: two hosts on 127.0.0.1, no mocks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.clock import FakeClock
from tests.helpers.v2host import mount, new_host, start_host
from v2.core.message import WakuMessage, message_hash
from v2.filter.client import FilterClient
from v2.filter.protocol import FilterService
from v2.filter.rpc_codec import (
    MAX_SUBSCRIBE_RESPONSE_SIZE,
    FilterSubscribeRequest,
    FilterSubscribeResponse,
    FilterSubscribeType,
)
from v2.host import Host
from v2.protocol_ids import FILTER_PUSH, FILTER_SUBSCRIBE
from v2.ratelimit import RateLimit
from v2.rpc import request
from v2.stream import Stream, encode_uvarint

PS = "/waku/2/rs/0/0"
CT = "/test/1/filter/proto"


@dataclass
class Pair:
    service: FilterService
    server: Host
    client: FilterClient
    client_host: Host
    registry: CollectorRegistry
    clock: FakeClock

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def pair(nursery: trio.Nursery) -> AsyncIterator[Pair]:
    registry, clock = CollectorRegistry(), FakeClock(1_000.0)
    server = await start_host(nursery)
    service = FilterService(server, registry, clock=clock, request_timeout=0.5, push_queue_size=64,
                            push_timeout=1.0)
    mount(server, service)
    await nursery.start(service.run)
    client_host = await start_host(nursery)
    client = FilterClient(client_host)
    await client_host.connect(server.listen_addrs[0])
    yield Pair(service, server, client, client_host, registry, clock)


def msg(i: int, ct: str = CT) -> WakuMessage:
    return WakuMessage(f"payload {i}".encode(), ct, version=0, timestamp=time.time_ns())


async def feed(svc: FilterService, m: WakuMessage, topic: str = PS) -> None:
    await svc.on_message(topic, m, message_hash(topic, m), m.encode())


async def test_subscribe_push_ping_unsubscribe(pair: Pair) -> None:
    a, peer = pair.client, pair.server.peer_id
    ping = await a.ping(peer)
    assert (ping.status_code, ping.status_desc) == (404, "peer has no subscriptions")
    r = await a.subscribe(peer, PS, [CT, "/test/1/other/proto"])
    assert r.status_code == 200 and r.ok
    assert (await a.ping(peer)).status_code == 200
    assert pair.metric("waku_filter_subscriptions") == 1

    sent = [msg(i) for i in range(20)]
    await feed(pair.service, msg(99, "/test/1/unsubscribed/proto"))  # no match: never pushed
    for m in sent:
        await feed(pair.service, m)
    await feed(pair.service, sent[0])  # a duplicate within 2 min is pushed once
    got = []
    with trio.fail_after(10):
        for _ in sent:
            got.append(await a.pushes().receive())
    assert [g.message for g in got] == sent
    assert all(g.pubsub_topic == PS and g.peer == peer and g.data == m.encode() for g, m in zip(got, sent, strict=True))
    assert pair.metric("waku_filter_pushes_total", result="ok") == 20

    assert (await a.unsubscribe(peer, PS, [CT])).status_code == 200
    await feed(pair.service, msg(100))  # CT no longer matches
    other = msg(101, "/test/1/other/proto")
    await feed(pair.service, other)
    with trio.fail_after(10):
        assert (await a.pushes().receive()).message == other  # FIFO: msg(100) was never pushed
    assert (await a.unsubscribe_all(peer)).status_code == 200
    assert (await a.unsubscribe_all(peer)).status_code == 404
    assert (await a.ping(peer)).status_code == 404
    assert pair.metric("waku_filter_subscriptions") == 0
    assert pair.metric("waku_filter_requests_total", type="SUBSCRIBER_PING", status="404") == 2


async def test_bad_requests_and_limits(pair: Pair) -> None:
    a, peer = pair.client, pair.server.peer_id
    for kind in (FilterSubscribeType.SUBSCRIBE, FilterSubscribeType.UNSUBSCRIBE):
        assert (await a.request(peer, kind, None, [CT])).status_code == 400
        assert (await a.request(peer, kind, PS, [])).status_code == 400
    r = await a.subscribe(peer, PS, [f"/t/1/{i}/proto" for i in range(101)])
    assert (r.status_code, r.status_desc) == (400, "exceeds maximum content topics: 100")
    for i in range(10):
        assert (await a.subscribe(peer, PS, [f"/t/1/{i}-{j}/proto" for j in range(100)])).status_code == 200
    r = await a.subscribe(peer, PS, ["/t/1/one-too-many/proto"])
    assert (r.status_code, r.status_desc) == (503, "peer has reached maximum number of filter criteria")


async def test_subscriber_that_stops_pinging_is_expired(pair: Pair) -> None:
    a, peer = pair.client, pair.server.peer_id
    assert (await a.subscribe(peer, PS, [CT])).status_code == 200
    pair.clock.now += 200
    assert (await a.ping(peer)).status_code == 200  # refreshes the 5 min TTL
    pair.clock.now += 299
    await feed(pair.service, first := msg(1))
    with trio.fail_after(10):
        assert (await a.pushes().receive()).message == first
    pair.clock.now += 2  # 301 s after the last ping
    assert pair.service.sweep() == [pair.client_host.peer_id]
    assert pair.metric("waku_filter_subscriptions") == 0
    await feed(pair.service, msg(2))  # nobody subscribed: not pushed
    assert (await a.ping(peer)).status_code == 404
    assert (await a.subscribe(peer, PS, [CT])).status_code == 200
    await feed(pair.service, third := msg(3))
    with trio.fail_after(10):
        assert (await a.pushes().receive()).message == third  # msg(2) never came


async def test_garbage_oversize_and_silent_streams(pair: Pair) -> None:
    ch, peer = pair.client_host, pair.server.peer_id
    s = await ch.new_stream(peer, [FILTER_SUBSCRIBE])
    await s.write_lp(b"\xff\xff\xff\x01")
    raw = await s.read_lp(65536)
    assert raw is not None
    resp = FilterSubscribeResponse.decode(raw)
    assert (resp.request_id, resp.status_code) == ("N/A", 400)
    assert await s.read_lp(65536) is None  # the service closed its write side
    await s.aclose()

    s = await ch.new_stream(peer, [FILTER_SUBSCRIBE])
    await s._write(encode_uvarint(50_000_000))  # announce 50 MB, send nothing more
    raw = await s.read_lp(65536)
    assert raw is not None and FilterSubscribeResponse.decode(raw).status_code == 400
    await s.aclose()

    s = await ch.new_stream(peer, [FILTER_SUBSCRIBE])  # opened, then silent
    with trio.fail_after(10):
        while not pair.metric("waku_filter_errors_total", type="read_timeout"):
            await trio.sleep(0.05)
    await s.aclose()

    s = await ch.new_stream(peer, [FILTER_SUBSCRIBE])  # opened and closed unused (js-waku)
    await s.close_write()
    assert await s.read_lp(65536) is None
    await s.aclose()

    assert pair.metric("waku_filter_errors_total", type="decode_rpc_failure") == 2
    assert (await pair.client.subscribe(peer, PS, [CT])).status_code == 200  # still serving


async def test_slow_subscriber_drops_are_counted(pair: Pair) -> None:
    """A subscriber whose queue is full loses pushes, counted; the feeder never blocks."""
    peer = pair.server.peer_id
    assert (await pair.client.subscribe(peer, PS, [CT])).status_code == 200
    for i in range(500):
        await feed(pair.service, msg(i))  # all queued at once: 64 slots + one in flight
    dropped = pair.metric("waku_filter_errors_total", type="push_queue_full")
    assert dropped > 0
    with trio.fail_after(10):
        while pair.metric("waku_filter_pushes_total", result="ok") + dropped < 500:
            await trio.sleep(0.05)


async def test_each_push_on_its_own_stream(pair: Pair) -> None:
    assert (await pair.client.subscribe(pair.server.peer_id, PS, [CT])).status_code == 200
    for i in range(10):
        await feed(pair.service, msg(i))
        with trio.fail_after(10):
            await pair.client.pushes().receive()
    assert pair.client.push_streams == 10


async def test_a_subscriber_that_reads_one_push_per_stream_gets_every_push(pair: Pair, nursery: trio.Nursery) -> None:
    """go-waku's light node reads exactly ONE MessagePush per stream and closes it (waku-org/go-waku
    v0.10.0 waku/v2/protocol/filter/client.go onRequest): a kept push stream lost every push but
    the first, silently (the writes still succeeded)."""
    h = await start_host(nursery)
    got: list[bytes] = []

    async def go_waku_like(stream: Stream) -> None:
        data = await stream.read_lp(1 << 20, timeout=10)
        if data is not None:
            got.append(data)
        await stream.aclose()

    h.set_stream_handler(FILTER_PUSH, go_waku_like)
    client = FilterClient(h)
    h.set_stream_handler(FILTER_PUSH, go_waku_like)  # the client registered its own handler: ours wins
    await h.connect(pair.server.listen_addrs[0])
    assert (await client.subscribe(pair.server.peer_id, PS, [CT])).status_code == 200
    for i in range(10):
        await feed(pair.service, msg(i))
    with trio.fail_after(10):
        while len(got) < 10:
            await trio.sleep(0.02)
    assert pair.metric("waku_filter_pushes_total", result="ok") == 10


async def test_vanished_subscriber_is_counted_and_others_still_served(pair: Pair, nursery: trio.Nursery) -> None:
    async with trio.open_nursery() as gone:
        h = await start_host(gone)
        client = FilterClient(h)  # before connecting, so the service's identify of h lists filter-push
        await h.connect(pair.server.listen_addrs[0])
        assert (await client.subscribe(pair.server.peer_id, PS, [CT])).status_code == 200
        gone.cancel_scope.cancel()  # the subscriber's host stops without unsubscribing
    assert (await pair.client.subscribe(pair.server.peer_id, PS, [CT])).status_code == 200
    sent = [msg(i) for i in range(3)]
    for m in sent:
        await feed(pair.service, m)
    with trio.fail_after(10):
        assert [(await pair.client.pushes().receive()).message for _ in sent] == sent
        # The first push to the vanished peer fails (its connection is half dead), the next two
        # fall in the back-off: all three counted.
        while (pair.metric("waku_filter_pushes_total", result="failed") < 1
               or pair.metric("waku_filter_pushes_total", result="dropped") < 2):
            await trio.sleep(0.05)


async def test_maintenance_expires_on_its_own(nursery: trio.Nursery) -> None:
    registry, clock = CollectorRegistry(), FakeClock(1_000.0)
    server = await start_host(nursery)
    service = FilterService(server, registry, clock=clock, maintenance_interval=0.05)
    server.set_stream_handler(FILTER_SUBSCRIBE, service.handle)
    await nursery.start(service.run)
    client_host = await start_host(nursery)
    await client_host.connect(server.listen_addrs[0])
    assert (await FilterClient(client_host).subscribe(server.peer_id, PS, [CT])).status_code == 200
    assert registry.get_sample_value("waku_filter_subscriptions") == 1
    clock.now += 301
    with trio.fail_after(10):
        while registry.get_sample_value("waku_filter_subscriptions") != 0:
            await trio.sleep(0.05)
    assert len(service.table) == 0


async def identified(host: Host, peer: str) -> list[str]:
    """``peer``'s protocols once ``host`` has identified it (py-libp2p does so in the background)."""
    with trio.fail_after(10):
        while not host.peer_protocols(peer):
            await trio.sleep(0.02)
    return host.peer_protocols(peer)


async def raw_request(h: Host, peer: str, kind: FilterSubscribeType, pubsub_topic: str | None = None,
                      content_topics: tuple[str, ...] = ()) -> FilterSubscribeResponse:
    """A filter request from a host that has no FilterClient (so no filter-push handler)."""
    req = FilterSubscribeRequest("raw", kind, pubsub_topic, content_topics)
    data = await request(h, peer, [FILTER_SUBSCRIBE], req.encode(), MAX_SUBSCRIBE_RESPONSE_SIZE, timeout=10)
    assert data is not None
    return FilterSubscribeResponse.decode(data)


async def test_subscriber_without_the_push_codec_is_skipped_then_removed(pair: Pair, nursery: trio.Nursery) -> None:
    """waku-v2.md §9: nwaku skips pushes to, and its maintenance drops, a subscriber whose identify
    does not list filter-push; one that lists it is served throughout."""
    server, svc = pair.server.peer_id, pair.service
    bare = await start_host(nursery)  # a real node that never mounted filter-push
    await bare.connect(pair.server.listen_addrs[0])
    assert FILTER_PUSH not in await identified(pair.server, bare.peer_id)
    assert FILTER_PUSH in await identified(pair.server, pair.client_host.peer_id)
    sub = FilterSubscribeType.SUBSCRIBE
    assert (await raw_request(bare, server, sub, PS, (CT,))).status_code == 200  # not checked at subscribe
    assert (await pair.client.subscribe(server, PS, [CT])).status_code == 200

    await feed(svc, first := msg(1))
    with trio.fail_after(10):
        assert (await pair.client.pushes().receive()).message == first
        while pair.metric("waku_filter_errors_total", type="no_push_codec") < 1:
            await trio.sleep(0.02)
    assert pair.metric("waku_filter_pushes_total", result="dropped") == 1
    assert pair.metric("waku_filter_pushes_total", result="failed") == 0  # no stream was even tried

    assert svc.sweep() == [bare.peer_id]
    assert svc.table.peers() == [pair.client_host.peer_id]
    assert pair.metric("waku_filter_subscribers_removed_total", reason="no_push_codec") == 1
    assert pair.metric("waku_filter_subscriptions") == 1
    assert (await raw_request(bare, server, FilterSubscribeType.SUBSCRIBER_PING)).status_code == 404
    await feed(svc, second := msg(2))
    with trio.fail_after(10):
        assert (await pair.client.pushes().receive()).message == second
    assert svc.sweep() == []  # the good subscriber stays

    # A subscriber py-libp2p has not identified (yet) is not judged: kept until it expires.
    stranger = new_host().peer_id
    assert svc.serve(stranger, FilterSubscribeRequest("s", sub, PS, (CT,))).status_code == 200
    assert svc.sweep() == [] and stranger in svc.table.peers()


async def test_maintenance_removes_them_on_its_own(nursery: trio.Nursery) -> None:
    registry = CollectorRegistry()
    server = await start_host(nursery)
    service = FilterService(server, registry, clock=FakeClock(1_000.0), maintenance_interval=0.05)
    mount(server, service)
    await nursery.start(service.run)
    bare, good_host = await start_host(nursery), await start_host(nursery)
    good = FilterClient(good_host)
    for h in (bare, good_host):
        await h.connect(server.listen_addrs[0])
    assert (await raw_request(bare, server.peer_id, FilterSubscribeType.SUBSCRIBE, PS, (CT,))).status_code == 200
    assert (await good.subscribe(server.peer_id, PS, [CT])).status_code == 200
    with trio.fail_after(10):
        while not registry.get_sample_value("waku_filter_subscribers_removed_total", {"reason": "no_push_codec"}):
            await trio.sleep(0.02)
    assert service.table.peers() == [good_host.peer_id]
    assert (await good.ping(server.peer_id)).status_code == 200
    assert registry.get_sample_value("waku_filter_subscriptions") == 1


async def test_rate_limit_is_per_peer_and_answers_429(nursery: trio.Nursery) -> None:
    """nwaku's --rate-limit=filter: per peer only (PerPeerRateLimiter); every subscribe-codec request
    counts; over it, 429 with request_id "N/A" and nwaku's description, undecoded, counted."""
    registry = CollectorRegistry()
    server = await start_host(nursery)
    service = FilterService(server, registry, request_timeout=0.5, rate_limit=RateLimit(3, 3600.0))
    mount(server, service)
    await nursery.start(service.run)
    clients = []
    for _ in range(2):
        h = await start_host(nursery)
        await h.connect(server.listen_addrs[0])
        clients.append(FilterClient(h))
    a, b = clients
    peer = server.peer_id
    assert (await a.subscribe(peer, PS, [CT])).status_code == 200
    assert (await a.ping(peer)).status_code == 200
    assert (await a.unsubscribe(peer, PS, [CT])).status_code == 200
    r = await a.subscribe(peer, PS, [CT])
    assert (r.request_id, r.status_code, r.status_desc) == (
        "N/A", 429, "filter request rejected due rate limit exceeded")
    assert (await b.subscribe(peer, PS, [CT])).status_code == 200  # the other peer has its own bucket
    assert service.table.peers() == [b.host.peer_id]  # a unsubscribed, and its resubscribe was refused

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert value("waku_filter_requests_total", type="rate_limited", status="429") == 1
    assert value("waku_service_requests_total", service="filter", state="served") == 4
    assert value("waku_service_requests_total", service="filter", state="rejected") == 1
    assert value("waku_service_rate_limited_total", service="filter", scope="peer") == 1
    assert value("waku_service_rate_limited_total", service="filter", scope="service") == 0
