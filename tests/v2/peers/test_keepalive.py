"""Keep-alive pings (waku-v2.md §16) and the per-protocol peer gauge (§18): the pure policy, then
real nodes on 127.0.0.1 (answering peers, a peer that accepts the ping stream and never echoes,
a static peer that is never dropped)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.helpers.net import free_ports
from tests.helpers.wait import wait_until
from v2.node import V2Node, V2NodeConfig
from v2.peers.keepalive import KeepAliveAction, KeepAlivePolicy, PingError, ping
from v2.protocol_ids import METADATA, PING, RELAY, STORE_V3
from v2.stream import Stream

# -- pure policy -------------------------------------------------------------------------------


def test_first_ping_one_interval_after_the_peer_appears() -> None:
    p = KeepAlivePolicy(10.0)
    p.sync(["a", "b"], now=100.0)
    assert p.due(105.0) == [] and p.next_due() == 110.0
    assert p.due(110.0) == ["a", "b"]
    assert p.due(111.0) == [] and p.next_due() is None  # in flight: never twice at once
    p.succeeded("a", 112.0)
    assert p.next_due() == 122.0 and p.due(121.0) == [] and p.due(122.0) == ["a"]


def test_disconnect_on_the_third_failure_in_a_row_only() -> None:
    p = KeepAlivePolicy(1.0)
    p.sync(["a"], 0.0)
    now = 0.0
    actions: list[KeepAliveAction | None] = []
    for ok in (False, False, True, False, False, False):
        now += 1.0
        assert p.due(now) == ["a"]
        if ok:
            p.succeeded("a", now)
            actions.append(None)
        else:
            actions.append(p.failed("a", now))
    assert actions == [KeepAliveAction.KEEP, KeepAliveAction.KEEP, None, KeepAliveAction.KEEP,
                       KeepAliveAction.KEEP, KeepAliveAction.DISCONNECT]
    assert p.failures("a") == 0 and p.due(100.0) == []  # forgotten once given up


def test_a_static_peer_is_never_given_up() -> None:
    p = KeepAlivePolicy(1.0, max_failures=2)
    p.sync(["s"], 0.0)
    for i in range(1, 6):
        assert p.due(float(i)) == ["s"]
        assert p.failed("s", float(i), static=True) is KeepAliveAction.KEEP
    assert p.failures("s") == 5


def test_sync_forgets_lost_peers_and_results_for_them_are_ignored() -> None:
    p = KeepAlivePolicy(1.0)
    p.sync(["a"], 0.0)
    p.due(1.0)
    p.sync([], 1.5)
    assert p.failed("a", 2.0) is KeepAliveAction.KEEP and p.failures("a") == 0
    p.succeeded("a", 2.0)
    p.sync(["a"], 3.0)  # a reconnect starts clean
    assert p.due(3.5) == [] and p.due(4.0) == ["a"]


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        KeepAlivePolicy(0.0)
    with pytest.raises(ValueError):
        KeepAlivePolicy(1.0, max_failures=0)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=60), st.booleans(),
       st.integers(1, 4))
def test_property_disconnect_exactly_after_max_consecutive_failures(results: list[tuple[str, bool]],
                                                                   static: bool, max_failures: int) -> None:
    p = KeepAlivePolicy(1.0, max_failures)
    p.sync("abc", 0.0)
    streak = dict.fromkeys("abc", 0)
    gone: set[str] = set()
    now = 0.0
    for peer, ok in results:
        now += 1.0
        if peer in gone:
            continue
        p.due(now)  # marks due peers in flight; a result still lands on any tracked peer
        if ok:
            p.succeeded(peer, now)
            streak[peer] = 0
            continue
        streak[peer] += 1
        action = p.failed(peer, now, static=static)
        expect = streak[peer] >= max_failures and not static
        assert (action is KeepAliveAction.DISCONNECT) == expect
        if expect:
            gone.add(peer)


# -- real nodes --------------------------------------------------------------------------------


def make_node(**kw: Any) -> V2Node:
    (tcp,) = free_ports(1)
    kw.setdefault("keepalive_interval", 0.2)
    kw.setdefault("keepalive_timeout", 0.5)
    return V2Node(V2NodeConfig(secrets.token_bytes(32), "127.0.0.1", tcp, websocket_support=False, **kw),
                  CollectorRegistry())


def metric(node: V2Node, name: str, **labels: str) -> float:
    return node.registry.get_sample_value(name, labels) or 0.0


async def connect(a: V2Node, b: V2Node) -> None:
    await a.host.connect(b.listen_addrs[0])
    await wait_until(lambda: b.peer_id in a.peer_metadata and a.peer_id in b.peer_metadata)


async def mute_ping(node: V2Node) -> list[Stream]:
    """Replace py-libp2p's ping handler with one that accepts the stream and never answers."""
    held: list[Stream] = []

    async def silent(stream: Stream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    node.host.set_stream_handler(PING, silent)
    return held


async def test_pings_succeed_and_are_counted(nursery: trio.Nursery) -> None:
    a, b = make_node(), make_node()
    await nursery.start(a.run)
    await nursery.start(b.run)
    await connect(a, b)
    rtt = await ping(a.host, b.peer_id, timeout=5)
    assert 0 <= rtt < 5
    with pytest.raises(ValueError):
        await ping(a.host, b.peer_id, payload=b"short")
    await wait_until(lambda: metric(a, "waku_node_keep_alive_pings_total", result="ok") >= 3
                   and metric(b, "waku_node_keep_alive_pings_total", result="ok") >= 3)
    assert metric(a, "waku_node_errors_total", type="keep_alive_failure") == 0
    assert b.peer_id in a.peers() and a.peer_id in b.peers()


async def test_a_silent_peer_is_disconnected_after_three_failures(nursery: trio.Nursery) -> None:
    a, b = make_node(keepalive_timeout=0.3), make_node(keepalive_interval=0)
    held = await mute_ping(b)
    await nursery.start(a.run)
    await nursery.start(b.run)
    await connect(a, b)
    with pytest.raises(PingError):
        await ping(a.host, b.peer_id, timeout=0.3)
    await wait_until(lambda: metric(a, "waku_node_keep_alive_disconnects_total") == 1)
    await wait_until(lambda: b.peer_id not in a.peers())
    assert metric(a, "waku_node_errors_total", type="keep_alive_failure") == 3
    assert metric(a, "waku_node_keep_alive_pings_total", result="ok") == 0
    assert len(held) >= 4  # ours and each failure was a real ping stream the peer accepted


async def test_a_silent_static_peer_stays_connected(nursery: trio.Nursery) -> None:
    b = make_node(keepalive_interval=0)
    await mute_ping(b)
    await nursery.start(b.run)
    a = make_node(keepalive_interval=0.1, keepalive_timeout=0.2, staticnodes=(b.listen_addrs[0],))
    await nursery.start(a.run)
    await wait_until(lambda: metric(a, "waku_node_errors_total", type="keep_alive_failure") >= 5)
    assert b.peer_id in a.peers()
    assert metric(a, "waku_node_keep_alive_disconnects_total") == 0


async def test_connected_peers_by_direction_and_protocol(nursery: trio.Nursery) -> None:
    a, b = make_node(), make_node(store=True, store_message_db_url="sqlite://:memory:")
    await nursery.start(a.run)
    await nursery.start(b.run)
    await connect(a, b)

    def seen() -> bool:
        return (metric(a, "waku_connected_peers", direction="outbound", protocol=STORE_V3) == 1
                and metric(b, "waku_connected_peers", direction="inbound", protocol=RELAY) == 1)

    await wait_until(seen)
    for proto in (RELAY, METADATA, PING):
        assert metric(a, "waku_connected_peers", direction="outbound", protocol=proto) == 1
    assert metric(b, "waku_connected_peers", direction="inbound", protocol=STORE_V3) == 0  # a serves no store
    assert metric(a, "libp2p_peers") == 1 and metric(b, "libp2p_peers") == 1
    await a.host.disconnect(b.peer_id)
    await wait_until(lambda: metric(a, "libp2p_peers") == 0
                   and metric(a, "waku_connected_peers", direction="outbound", protocol=STORE_V3) == 0)
    assert a.registry.get_sample_value("waku_connected_peers", {"direction": "outbound",
                                                                "protocol": RELAY}) is None  # removed, not stale
