"""The connection manager's pure policy: targets, diversity, backoff, static peers, pruning."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2.peers.policy import PeerPolicy, PolicyConfig


def policy(static: int = 0, rng_seed: int = 1, **cfg: float) -> PeerPolicy:
    return PeerPolicy(PolicyConfig(**cfg), {f"S{i}": [f"/ip4/10.0.0.{i}/tcp/1/p2p/S{i}"] for i in range(static)},  # type: ignore[arg-type]
                      random.Random(rng_seed))


def add(p: PeerPolicy, source: str, n: int, prefix: str | None = None) -> list[str]:
    ids = [f"{prefix or source}-{i}" for i in range(n)]
    for pid in ids:
        assert p.add(pid, [f"/ip4/10.1.0.1/tcp/1/p2p/{pid}"], source) == "new"
    return ids


def test_static_peers_always_dialled_even_above_target() -> None:
    p = policy(static=3, target=1, maximum=2)
    assert sorted(p.plan_dials([], [], now=0)) == ["S0", "S1", "S2"]
    assert p.plan_dials([], ["S0", "S1", "S2"], now=0) == []  # already dialling
    assert p.add("S0", ["/ip4/6.6.6.6/tcp/1/p2p/S0"], "px") == "static"  # discovery cannot redirect them
    assert p.get("S0").addrs == ["/ip4/10.0.0.0/tcp/1/p2p/S0"]  # type: ignore[union-attr]


def test_discovered_fill_to_target_only() -> None:
    p = policy(target=4, maximum=10)
    add(p, "dns", 10)
    first = p.plan_dials([], [], now=0)
    assert len(first) == 4
    assert p.plan_dials(first[:2], first[2:], now=0) == []  # target reached counting in-flight dials
    assert len(p.plan_dials(first[:2], [], now=0)) == 2


def test_no_single_source_fills_the_target_while_another_has_peers() -> None:
    p = policy(target=6, maximum=10, max_source_share=0.5)
    add(p, "dns", 20)
    add(p, "px", 1)
    plan = p.plan_dials([], [], now=0)
    srcs = [p.get(x).source for x in plan]  # type: ignore[union-attr]
    assert srcs.count("dns") == 3 and srcs.count("px") == 1  # capped at ceil(6 * 0.5)
    # with one source only, it may fill the whole target
    q = policy(target=6, maximum=10)
    add(q, "dns", 20)
    assert len(q.plan_dials([], [], now=0)) == 6


def test_round_robin_across_sources() -> None:
    p = policy(target=6, maximum=10, max_source_share=1.0)
    add(p, "a", 5)
    add(p, "b", 5)
    add(p, "c", 5)
    plan = p.plan_dials([], [], now=0)
    assert sorted(p.get(x).source for x in plan) == ["a", "a", "b", "b", "c", "c"]  # type: ignore[union-attr]


def test_backoff_grows_with_jitter_and_caps() -> None:
    p = policy(static=1, backoff_initial=1.0, static_backoff_max=30.0, jitter=0.25)
    delays = [p.dial_failed("S0", now=0) for _ in range(10)]
    bases = [min(30.0, 2.0 ** i) for i in range(10)]
    for d, base in zip(delays, bases, strict=True):
        assert d is not None and base * 0.75 <= d < base * 1.25
    assert p.plan_dials([], [], now=0) == []  # backing off
    assert p.plan_dials([], [], now=40) == ["S0"]
    assert p.next_due(now=0) == p.get("S0").next_dial_at  # type: ignore[union-attr]
    # the same seed gives the same schedule (the rng is the only source of randomness)
    q = policy(static=1, backoff_initial=1.0, static_backoff_max=30.0, jitter=0.25)
    assert [q.dial_failed("S0", now=0) for _ in range(10)] == delays


def test_static_never_forgotten_discovered_forgotten_after_max_failures() -> None:
    p = policy(static=1, max_failures=3)
    (d,) = add(p, "px", 1)
    for _ in range(2):
        assert p.dial_failed(d, now=0) is not None
    assert p.dial_failed(d, now=0) is None and p.get(d) is None
    for _ in range(50):
        p.dial_failed("S0", now=0)
    assert p.get("S0") is not None


def test_success_resets_backoff_and_disconnect_redials_at_once() -> None:
    p = policy(static=1, flap_window=5.0)
    p.dial_failed("S0", now=0)
    p.dial_failed("S0", now=0)
    p.dial_succeeded("S0", now=100)
    assert p.get("S0").failures == 0  # type: ignore[union-attr]
    p.disconnected("S0", now=200)  # a long-lived connection dropped: redial now
    assert p.plan_dials([], [], now=200) == ["S0"]


def test_flapping_peer_backs_off() -> None:
    p = policy(static=1, flap_window=5.0, backoff_initial=2.0, jitter=0.0)
    p.dial_succeeded("S0", now=10)
    p.disconnected("S0", now=11)  # kicked within the flap window
    assert p.plan_dials([], [], now=11) == []
    assert p.plan_dials([], [], now=13) == ["S0"]


def test_prune_never_static_and_newcomers_first() -> None:
    p = policy(static=2, target=2, maximum=5)
    a = add(p, "a", 4)
    connected = ["S0", "S1", *a, "stranger", "late"]  # 8 connected, maximum 5
    for t, pid in enumerate(connected):
        p.connected(pid, now=t)
    pruned = p.plan_prune(connected)
    # inbound strangers before peers we dialled, newest first; never static
    assert pruned == ["late", "stranger", "a-3"]
    # only static peers above the maximum: nothing to prune
    q = policy(static=4, target=1, maximum=2)
    assert q.plan_prune(["S0", "S1", "S2", "S3"]) == []


def test_prune_non_relay_peers_first_and_never_the_last_relay_peer_of_a_topic() -> None:
    p = policy(target=1, maximum=2)
    ours = add(p, "dns", 2)  # dialled by us, but they relay nothing we serve
    for t, pid in enumerate(["r0", "r1", "only1", *ours, "light"]):
        p.connected(pid, now=t)
    relay = {"/waku/2/rs/1/0": ["r0", "r1", "gone"], "/waku/2/rs/1/1": ["only1"]}
    connected = ["r0", "r1", "only1", *ours, "light"]
    pruned = p.plan_prune(connected, relay)
    assert pruned == ["light", "dns-1", "dns-0", "r1"]  # 6 -> 2: r0 and only1 stay
    # two peers alone on a shard are never both pruned, whatever the maximum says
    q = policy(target=0, maximum=0)
    assert len(q.plan_prune(["x", "y"], {"t": ["x", "y"]})) == 1
    # a peer whose arrival was missed (dropped event) counts as the newest
    r = policy(target=0, maximum=1)
    r.connected("old", now=5)
    assert r.plan_prune(["old", "unseen"]) == ["unseen"]
    r.disconnected("old", now=6)
    r.connected("old", now=7)  # a reconnect is a new arrival
    r.connected("unseen", now=6.5)
    assert r.plan_prune(["old", "unseen"]) == ["old"]


def test_store_bound_and_updates() -> None:
    p = policy(max_known=2)
    add(p, "px", 2)
    assert p.add("px-0", ["/ip4/10.9.9.9/tcp/2/p2p/px-0"], "dns") == "updated"
    assert p.get("px-0").addrs[0] == "/ip4/10.9.9.9/tcp/2/p2p/px-0"  # type: ignore[union-attr]
    p.connected("px-1", now=0)
    assert p.add("new", ["/ip4/1.1.1.1/tcp/1/p2p/new"], "px") == "new"  # evicts idle px-0, the oldest
    assert p.get("px-0") is None and p.get("px-1") is not None and len(p) == 2
    p.connected("new", now=0)
    assert p.add("newer", ["/ip4/1.1.1.2/tcp/1/p2p/newer"], "px") == "full"  # every known peer is in use
    assert len(p) == 2


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        PolicyConfig(target=5, maximum=4)
    with pytest.raises(ValueError):
        PolicyConfig(max_source_share=0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 8), st.integers(0, 20), st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 6)),
                                                       max_size=3),
       st.integers(0, 30))
def test_invariants(static: int, target: int, groups: list[tuple[str, int]], n_connected: int) -> None:
    maximum = target + 3
    p = policy(static=static, target=target, maximum=maximum)
    for src, n in groups:
        for i in range(n):
            p.add(f"{src}{i}", [f"/ip4/1.1.1.1/tcp/1/p2p/{src}{i}"], src)
    known = [x.peer_id for x in p.peers()]
    connected = (known + [f"in{i}" for i in range(30)])[:n_connected]
    plan = p.plan_dials(connected, [], now=0)
    assert not set(plan) & set(connected) and len(plan) == len(set(plan))
    discovered = [x for x in plan if not p.get(x).static]  # type: ignore[union-attr]
    assert len(discovered) <= max(0, target - len(connected))
    assert {f"S{i}" for i in range(static)} - set(connected) <= set(plan)
    relay = {f"t{k}": connected[k::3] for k in range(3)}  # every connected peer relays one topic
    for t, pid in enumerate(connected):
        p.connected(pid, now=t)
    pruned = p.plan_prune(connected)
    assert not any(x.startswith("S") for x in pruned) and len(pruned) == len(set(pruned))
    statics_connected = sum(x.startswith("S") for x in connected)
    assert len(connected) - len(pruned) <= max(maximum, statics_connected)
    kept = set(connected) - set(p.plan_prune(connected, relay))
    assert all(kept & set(peers) for peers in relay.values() if peers)  # no served topic left bare
