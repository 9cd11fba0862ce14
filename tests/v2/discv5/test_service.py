"""The trio UDP shell on real loopback sockets: bootstrap and discovery between our own nodes, bad
input counted and dropped, the per-IP limit, the Waku filter and ENR seq bumps."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from v2.discv5.filters import FilterResult, waku_filter
from v2.discv5.packet import DISCV5_PROTOCOL_ID, encode_ordinary, encode_whoareyou
from v2.discv5.ratelimit import IpRateLimiter
from v2.discv5.service import Discv5Config, Discv5Service
from v2.enr.enr import Enr, RelayShards, Waku2


def config(bootnodes: Sequence[Enr] = (), **kw: Any) -> Discv5Config:
    base: dict[str, Any] = dict(bind_host="127.0.0.1", udp_port=0, tcp_port=60000, waku2=Waku2.RELAY,
                                cluster=16, shards=(32,), lookup_interval=0.3, revalidate_max=1.0)
    base.update(kw)
    return Discv5Config(secrets.token_bytes(32), bootnodes=tuple(bootnodes), **base)


@asynccontextmanager
async def running(nursery: trio.Nursery, cfg: Discv5Config) -> AsyncIterator[Discv5Service]:
    svc = Discv5Service(cfg, CollectorRegistry())
    await nursery.start(svc.run)
    yield svc



def _sample(svc: Discv5Service, name: str, labels: dict[str, str]) -> float:
    for m in svc.metrics.dropped, svc.metrics.discovered, svc.metrics.requests:
        for fam in m.collect():
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
    return 0.0


async def test_nodes_find_each_other_through_a_bootnode() -> None:
    async with trio.open_nursery() as nursery, running(nursery, config()) as boot:
        svcs = []
        for _ in range(5):
            svc = Discv5Service(config([boot.local_enr]), CollectorRegistry())
            await nursery.start(svc.run)
            svcs.append(svc)
        everyone = {s.core.local_id for s in svcs}
        with trio.fail_after(60):
            while not all(everyone - {s.core.local_id} <= set(s.found) for s in svcs):
                await trio.sleep(0.1)
        assert all(boot.core.local_id in s.found for s in svcs)  # bootnodes pass the filter too
        assert all(_sample(s, "waku_discv5_discovered_total", {}) >= 5 for s in svcs)
        taken = svcs[0].take_found()
        assert {e.node_id for e in taken} == set(svcs[0].found) and svcs[0].take_found() == []
        nursery.cancel_scope.cancel()


async def test_bad_input_counted_and_dropped() -> None:
    async with trio.open_nursery() as nursery, running(nursery, config(burst=50.0, rate=1.0)) as svc:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.2", 0))
        dest = ("127.0.0.1", svc.port)
        wrong_id = encode_ordinary(svc.core.local_id, secrets.token_bytes(32), bytes(12), bytes(16), None, b"",
                                   protocol_id=DISCV5_PROTOCOL_ID, random_message=bytes(20))
        for data in (b"\x00" * 10, secrets.token_bytes(200), bytes(1400), wrong_id):
            await sock.sendto(data, dest)
        with trio.fail_after(30):
            while (_sample(svc, "waku_discv5_dropped_packets_total", {"reason": "oversize"}) < 1
                   or _sample(svc, "waku_discv5_dropped_packets_total", {"reason": "wrong_protocol"}) < 2
                   or _sample(svc, "waku_discv5_dropped_packets_total", {"reason": "malformed"}) < 1):
                await trio.sleep(0.05)
        # A valid-looking flag-0 packet from an unknown node: answered with one WHOAREYOU, nothing else.
        hello = encode_ordinary(svc.core.local_id, secrets.token_bytes(32), bytes(12), bytes(16), None, b"",
                                random_message=bytes(20))
        await sock.sendto(hello, dest)
        with trio.fail_after(30):
            data, _ = await sock.recvfrom(2048)
        assert len(data) == 63
        # WHOAREYOUs nobody asked for (a flood of challenges) are counted and never answered.
        for _ in range(3):
            flood, _ = encode_whoareyou(svc.core.local_id, secrets.token_bytes(12), secrets.token_bytes(16), 0,
                                        secrets.token_bytes(16))
            await sock.sendto(flood, dest)
        with trio.fail_after(30):
            while _sample(svc, "waku_discv5_dropped_packets_total", {"reason": "unknown_nonce"}) < 3:
                await trio.sleep(0.05)
        # The per-IP bucket (burst 50, 1/s): a flood from one address is cut off and counted.
        for _ in range(100):
            await sock.sendto(hello, dest)
        with trio.fail_after(30):
            while _sample(svc, "waku_discv5_dropped_packets_total", {"reason": "rate_limited"}) < 40:
                await trio.sleep(0.05)
        sock.close()
        nursery.cancel_scope.cancel()


async def test_enr_seq_bumps_only_on_change() -> None:
    async with trio.open_nursery() as nursery, running(nursery, config()) as svc:
        first = svc.local_enr
        assert first.udp == svc.port and first.ip == "127.0.0.1" and first.shards == RelayShards(16, (32,))
        assert svc.update_enr(shards=(32,)) is first
        second = svc.update_enr(shards=(32, 33))
        assert second.seq == first.seq + 1 and second.shards == RelayShards(16, (32, 33))
        nursery.cancel_scope.cancel()


async def test_one_liveness_check_per_node_at_a_time() -> None:
    # A full bucket asks for its least recently seen entry once per record that lands in the
    # replacement cache: concurrent asks for the same node must send one PING, not one each.
    quiet = config(lookup_interval=1e9, revalidate_max=1e9)  # no background requests from a
    async with trio.open_nursery() as nursery, running(nursery, quiet) as a, running(nursery, config()) as b:
        await a.ping(b.local_enr)  # a session first, so that every PING would be its own packet
        name, labels = "discovery_message_requests_outgoing_total", {"response": "success"}
        before = _sample(a, name, labels)
        async with trio.open_nursery() as checks:
            for _ in range(5):
                checks.start_soon(a._liveness, b.local_enr)
        assert _sample(a, name, labels) == before + 1
        nursery.cancel_scope.cancel()


def test_waku_filter() -> None:
    key = secrets.token_bytes(32)
    local = RelayShards(16, (32, 33))
    good = Enr.build(key, 1, ip="127.0.0.1", tcp=60000, udp=9000, waku2=Waku2.RELAY, cluster=16, shards=(33,))
    assert waku_filter(good, local) == FilterResult.ACCEPT
    assert waku_filter(Enr.build(key, 1, ip="127.0.0.1", tcp=1, udp=9000), local) == FilterResult.NO_WAKU2
    assert waku_filter(Enr.build(key, 1, ip="127.0.0.1", tcp=1, udp=9000, waku2=0), None) == FilterResult.NO_WAKU2
    assert waku_filter(Enr.build(key, 1, ip="127.0.0.1", udp=9000, waku2=1), local) == FilterResult.NOT_DIALABLE
    other = Enr.build(key, 1, ip="127.0.0.1", tcp=1, udp=9000, waku2=1, cluster=1, shards=(33,))
    assert waku_filter(other, local) == FilterResult.OTHER_CLUSTER
    assert waku_filter(other, local, {other.node_id}) == FilterResult.ACCEPT  # bootnodes are exempt
    assert waku_filter(other, None) == FilterResult.ACCEPT  # no shards of ours: no shard filter
    none = Enr.build(key, 1, ip="127.0.0.1", tcp=1, udp=9000, waku2=1, cluster=16, shards=(1,))
    assert waku_filter(none, local) == FilterResult.NO_SHARED_SHARD


def test_rate_limiter() -> None:
    rl = IpRateLimiter(rate=2.0, burst=3.0)
    assert [rl.allow("1.2.3.4", 0.0) for _ in range(4)] == [True, True, True, False]
    assert rl.allow("5.6.7.8", 0.0)
    assert rl.allow("1.2.3.4", 0.5) and not rl.allow("1.2.3.4", 0.5)


async def test_a_changed_record_reaches_the_peers() -> None:
    """A's shards change: its seq is bumped and B, which knew the old record, fetches the new one
    (PONG/PING enr-seq, then FINDNODE [0]) and offers it to the peer manager again."""
    async with trio.open_nursery() as nursery, running(nursery, config()) as a:
        b = Discv5Service(config([a.local_enr]), CollectorRegistry())
        await nursery.start(b.run)
        with trio.fail_after(30):
            while a.core.local_id not in b.found:
                await trio.sleep(0.05)
        b.take_found()
        new = a.update_enr(shards=(32, 40))
        with trio.fail_after(60):
            while b.found[a.core.local_id].seq < new.seq:
                await trio.sleep(0.05)
        entry = b.table.get(a.core.local_id)
        assert entry is not None and entry.enr == new
        assert [e.seq for e in b.take_found()] == [new.seq]
        nursery.cancel_scope.cancel()
