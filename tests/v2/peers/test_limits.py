"""The nwaku limits of the policy: relay/service split, in/out targets, IP colocation, subnet diversity."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2.peers.policy import (
    MIN_RELAY_PEERS,
    PeerPolicy,
    PolicyConfig,
    Prune,
    PruneReason,
    addr_ip,
    parse_relay_service_ratio,
    subnet_of,
)


def policy(cfg: PolicyConfig, static: dict[str, str] | None = None) -> PeerPolicy:
    return PeerPolicy(cfg, {pid: [a] for pid, a in (static or {}).items()}, random.Random(1))


def test_nwaku_split_of_max_connections() -> None:
    c = PolicyConfig.nwaku()  # nwaku defaults: 50 connections, 60:40, 5 per IP
    assert (c.maximum, c.out_relay_target, c.in_relay_target, c.service_max, c.colocation_limit) == (50, 10, 20, 20, 5)
    small = PolicyConfig.nwaku(max_connections=12, relay_service_ratio="80:20")
    # ceil(9.6) = 10 relay slots: a third (3) is below gossipsub's D, so 6 outbound, 4 inbound
    assert (small.out_relay_target, small.in_relay_target, small.service_max) == (MIN_RELAY_PEERS, 4, 2)
    tiny = PolicyConfig.nwaku(max_connections=5)  # 3 relay slots cannot hold a mesh: all of them outbound
    assert (tiny.out_relay_target, tiny.in_relay_target, tiny.relay_starved) == (3, 0, True)
    assert not c.relay_starved
    for bad in ("60", "60:50", "a:b", "-10:110", "60:40:0"):
        with pytest.raises(ValueError):
            parse_relay_service_ratio(bad)
    assert parse_relay_service_ratio("100:0") == (1.0, 0.0)


def test_addresses_and_subnets() -> None:
    assert addr_ip("/ip4/1.2.3.4/tcp/1/p2p/x") == "1.2.3.4"
    assert addr_ip("/dns4/example.org/tcp/1") is None
    assert subnet_of("10.1.2.3") == "10.1.2.0/24" and subnet_of("2001:db8:1:2::5") == "2001:db8:1::/48"


def test_dials_until_the_outbound_relay_target_ignoring_inbound_and_service_peers() -> None:
    p = policy(PolicyConfig.nwaku(max_connections=20, colocation_limit=0))  # 12 relay: 6 out, 6 in
    ids = [f"d{i}" for i in range(12)]
    for i, pid in enumerate(ids):
        p.add(pid, [f"/ip4/10.0.{i}.1/tcp/1/p2p/{pid}"], "discv5")
    for i in range(5):  # five inbound relay peers do not stop us dialling
        p.connected(f"in{i}", now=0, direction="inbound", ip=f"10.9.{i}.1")
    inbound = [f"in{i}" for i in range(5)]
    assert len(p.plan_dials(inbound, [], now=0)) == 6
    for pid in ids[:4]:
        p.dial_succeeded(pid, now=1)
        p.connected(pid, now=1, direction="outbound", ip=None)
    # 4 outbound, one of them a service peer: 3 more to dial
    assert len(p.plan_dials([*inbound, *ids[:4]], [], now=1, service={"d0"})) == 3
    assert len(p.plan_dials([*inbound, *ids[:4]], ["d9"], now=1, service={"d0"})) == 2


def test_colocation_refuses_dials_and_prunes_the_newest_above_the_limit() -> None:
    cfg = PolicyConfig(target=10, maximum=50, colocation_limit=2)
    p = policy(cfg, {"S": "/ip4/10.0.0.1/tcp/9/p2p/S"})
    for i in range(4):
        p.add(f"a{i}", [f"/ip4/10.0.0.1/tcp/{i + 1}/p2p/a{i}"], "discv5")
    p.add("b", ["/ip4/10.0.0.2/tcp/1/p2p/b"], "discv5")
    plan = p.plan_dials([], [], now=0)
    assert plan[0] == "S" and sorted(plan[1:]) == ["a0", "b"]  # the static peer takes one of the two slots
    # inbound peers from the same IP: the newest above the limit go, never the static one
    for t, pid in enumerate(["S", "x", "y", "z"]):
        p.connected(pid, now=t, direction="inbound", ip="10.0.0.1")
    col = PruneReason.COLOCATION
    assert p.prune_plan(["S", "x", "y", "z"]) == [Prune("z", col), Prune("y", col)]
    # the limit is a hard one: even the last relay peer of a topic goes
    assert [x.peer for x in p.prune_plan(["S", "x", "y", "z"], {"t": ["z"]})] == ["z", "y"]
    # a less healthy peer goes before a newer one
    assert [x.peer for x in p.prune_plan(["S", "x", "y", "z"], health={"x": -3.0})] == ["x", "z"]


def test_prefers_unseen_subnets_within_a_source() -> None:
    p = policy(PolicyConfig(target=3, maximum=10))
    for pid, ip in (("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.1.1"), ("d", "10.0.0.3"), ("e", "10.0.2.1")):
        p.add(pid, [f"/ip4/{ip}/tcp/1/p2p/{pid}"], "discv5")
    p.connected("old", now=0, direction="outbound", ip="10.0.0.9")
    assert p.plan_dials(["old"], [], now=0) == ["c", "e"]  # 10.0.0.0/24 is taken by "old"


def test_prune_order_replace_then_inbound_surplus_then_service_then_maximum() -> None:
    cfg = PolicyConfig(target=2, maximum=6, in_relay_target=2, service_max=1, out_relay_target=2)
    p = policy(cfg)
    peers = {"i0": "inbound", "i1": "inbound", "i2": "inbound", "i3": "inbound", "o0": "outbound", "o1": "outbound",
             "s0": "outbound", "s1": "inbound", "bad": "outbound"}
    for t, (pid, d) in enumerate(peers.items()):
        p.connected(pid, now=t, direction=d, ip=f"10.{t}.0.1")
    relay = {"i0", "i1", "i2", "i3", "o0", "o1", "bad"}
    plan = p.prune_plan(list(peers), {"t": relay}, relay=relay, service={"s0", "s1"}, replace={"bad"},
                        health={"i0": -1.0})
    assert plan == [Prune("bad", PruneReason.UNHEALTHY), Prune("i0", PruneReason.IN_RELAY_SURPLUS),
                    Prune("i3", PruneReason.IN_RELAY_SURPLUS), Prune("s1", PruneReason.SERVICE_SURPLUS)]
    assert len(peers) - len(plan) <= cfg.maximum


def test_pruned_peers_are_held_back_from_redial() -> None:
    p = policy(PolicyConfig(target=5, maximum=10, backoff_max=300.0, prune_hold=30.0, flap_window=5.0))
    for pid in ("a", "b"):
        p.add(pid, [f"/ip4/10.0.0.1/tcp/1/p2p/{pid}"], "px")
        p.dial_succeeded(pid, now=0)
    p.pruned("a", PruneReason.MAXIMUM, now=1)
    p.pruned("b", PruneReason.UNHEALTHY, now=1)
    p.disconnected("a", now=2)  # inside the flap window: a prune is not the peer's failure
    p.disconnected("b", now=2)
    assert p.get("a").failures == 0  # type: ignore[union-attr]
    assert p.plan_dials([], [], now=20) == []
    assert p.plan_dials([], [], now=31) == ["a"]
    assert p.plan_dials([], [], now=302) == ["a", "b"]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["inbound", "outbound"])),
                                   max_size=30),
       st.integers(0, 8))
def test_colocation_and_limits_hold(limit: int, conns: list[tuple[int, str]], n_known: int) -> None:
    cfg = PolicyConfig.nwaku(max_connections=12, relay_service_ratio="60:40", colocation_limit=limit)
    p = policy(cfg)
    connected = []
    for t, (host, d) in enumerate(conns):
        pid = f"p{t}"
        p.connected(pid, now=t, direction=d, ip=f"127.0.0.{host}")
        connected.append(pid)
    for i in range(n_known):
        p.add(f"k{i}", [f"/ip4/127.0.0.{i % 3}/tcp/{i + 1}/p2p/k{i}"], "discv5")
    relay = set(connected[::2])
    plan = p.prune_plan(connected, {"t": relay}, relay=relay, service=set(connected[1::2]))
    kept = [pid for pid in connected if pid not in {x.peer for x in plan}]
    per_ip: dict[str | None, int] = {}
    for pid in kept:
        per_ip[p.ip(pid)] = per_ip.get(p.ip(pid), 0) + 1
    assert all(n <= limit for n in per_ip.values())
    assert len(kept) <= cfg.maximum
    dials = p.plan_dials(kept, [], now=100)
    for pid in dials:  # dialling never takes an IP above the limit
        per_ip[p.ip(pid)] = per_ip.get(p.ip(pid), 0) + 1
    assert all(n <= limit for n in per_ip.values())
