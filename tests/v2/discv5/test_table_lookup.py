"""Routing table and iterative lookup state machines, driven by pure function calls."""

from __future__ import annotations

import random

from tests.v2.discv5.test_core import Net
from v2.discv5.core import CallDone, CallFailed, Discv5Core
from v2.discv5.lookup import Lookup, lookup_distances
from v2.discv5.table import RoutingTable, log_distance, xor_distance
from v2.enr.enr import Enr


def enr(seed: int, ip: str = "127.0.0.1", port: int = 9000) -> Enr:
    return Enr.build(random.Random(seed).randbytes(32), 1, ip=ip, udp=port)


def test_buckets_replacements_and_liveness() -> None:
    local = enr(0)
    t = RoutingTable(local.node_id, bucket_size=2, max_replacements=2)
    far = [e for e in (enr(i) for i in range(1, 60)) if log_distance(local.node_id, e.node_id) == 256][:5]
    assert t.add(far[0], 0.0) is None and t.add(far[1], 1.0) is None
    check = t.add(far[2], 2.0)  # bucket full: the least recently seen member is due for a check
    assert check is not None and check.enr == far[0]
    t.add(far[3], 3.0)
    t.add(far[4], 4.0)
    assert t.replacements(256) == [far[3], far[4]]  # capped at 2, most recent last
    assert t.at_distance(256) == []  # nobody answered yet: nothing is relayed
    t.mark_live(far[0].node_id, 5.0)
    assert [e.enr for e in t.at_distance(256)] == [far[0]]
    assert t.mark_failed(far[1].node_id)  # unverified: removed at once, a replacement moves in
    assert far[1].node_id not in t and far[4].node_id in t
    assert not t.mark_failed(far[0].node_id, max_failures=2)  # live: one failure is tolerated
    assert t.mark_failed(far[0].node_id, max_failures=2)
    # A newer record replaces the stored one; our own record is never added.
    key4 = next(random.Random(i).randbytes(32) for i in range(1, 60) if enr(i) == far[4])
    t.add(Enr.build(key4, 2, ip="127.0.0.1", udp=9999), 6.0)
    entry = t.get(far[4].node_id)
    assert entry is not None and entry.enr.seq == 2 and entry.enr.udp == 9999
    assert t.add(local, 0.0) is None and local.node_id not in t


def test_ip_limits_only_for_public_addresses() -> None:
    local = enr(0)
    t = RoutingTable(local.node_id)
    for i in range(1, 40):
        t.add(enr(i, ip="45.33.20.7", port=9000 + i), 0.0)
    assert len(t) <= 10  # 10 per /24 in the table
    assert all(n <= 2 for n in t.bucket_fill().values())
    t2 = RoutingTable(local.node_id)
    for i in range(1, 40):
        t2.add(enr(i, port=9000 + i), 0.0)
    assert len(t2) > 10  # loopback: no limit


def test_record_without_udp_is_not_tabled() -> None:
    t = RoutingTable(enr(0).node_id)
    t.add(Enr.build(random.Random(3).randbytes(32), 1, ip="127.0.0.1"), 0.0)
    assert len(t) == 0


def test_lookup_distances() -> None:
    a = enr(1).node_id
    b = enr(2).node_id
    d = log_distance(a, b)
    assert lookup_distances(a, b) == ((d, d + 1, d - 1) if d < 256 else (256, 255, 254))
    assert lookup_distances(a, a) == (0, 1, 2)


def drive(net: Net, core: Discv5Core, lk: Lookup, now: float = 0.0) -> None:
    addr = net.addr(core)
    rounds = 0
    while not lk.done:
        rounds += 1
        assert rounds < 100
        qs = lk.next_queries()
        assert qs or lk.done or core.pending_calls
        for q in qs:
            net.run(addr, core.findnode(q.enr, q.distances, now)[1], now)
        now += 5.0
        net.run(addr, core.tick(now), now)
        events, net.events[addr] = net.events[addr], []
        for e in events:
            if isinstance(e, CallDone):
                lk.on_nodes(e.node_id, e.enrs)
                core.table.mark_live(e.node_id, now)
            elif isinstance(e, CallFailed):
                lk.on_failure(e.node_id)


def build(n: int, dead: float) -> tuple[Net, list[Discv5Core], list[Enr]]:
    net = Net()
    cores = [net.add(1000 + i, 10000 + i) for i in range(n)]
    r = random.Random(7)
    dead_set = set(r.sample(range(1, n), int(dead * n)))
    for i, c in enumerate(cores):
        for j, o in enumerate(cores):
            if i != j:
                c.table.add(o.local_enr, 0.0, live=True)
    alive = [c.local_enr for i, c in enumerate(cores) if i not in dead_set]
    for i in sorted(dead_set, reverse=True):
        del net.nodes[net.addr(cores[i])]
    return net, cores, alive


def test_lookup_finds_the_closest_nodes() -> None:
    net, cores, alive = build(80, 0.0)
    me = cores[0]
    target = cores[57].local_id
    seeds = [cores[i].local_enr for i in (3, 4, 5)]
    lk = Lookup(me.local_id, target, seeds)
    drive(net, me, lk)
    expect = sorted((e for e in alive if e.node_id != me.local_id), key=lambda e: xor_distance(e.node_id, target))
    assert lk.closest()[0].node_id == target
    # Kademlia bounds, not exactness: with 3 distances a query the nearest half are always exact.
    assert [e.node_id for e in lk.closest()[:8]] == [e.node_id for e in expect[:8]]
    assert len(lk.closest()) == 16
    assert lk.queries_sent >= 3


def test_lookup_with_unreachable_nodes() -> None:
    net, cores, alive = build(80, 0.3)
    me = cores[0]
    alive_ids = {e.node_id for e in alive}
    target = next(c.local_id for c in cores[40:] if c.local_id in alive_ids)
    lk = Lookup(me.local_id, target, [c.local_enr for c in cores[1:10]])
    drive(net, me, lk)
    assert lk.closest()[0].node_id == target
    assert all(e.node_id in alive_ids for e in lk.closest())


def test_random_lookup_returns_everything_seen() -> None:
    net, cores, _ = build(40, 0.0)
    me = cores[0]
    lk = Lookup(me.local_id, random.Random(1).randbytes(32), [cores[1].local_enr])
    drive(net, me, lk)
    assert len(lk.seen()) >= 16
