"""Relay between our own nodes on loopback: exactly-once delivery, validation, no self-delivery."""

from __future__ import annotations

import time

import trio

from tests.helpers.v2relay import TOPIC, Node, wait_mesh
from v2.core.message import WakuMessage


def msg(i: int, tag: str = "") -> WakuMessage:
    return WakuMessage(f"payload {tag}{i}".encode(), "/test/1/relay/proto", version=0, timestamp=time.time_ns())


async def test_two_nodes_exchange_both_ways(nursery: trio.Nursery) -> None:
    a, b = await Node().start(nursery), await Node().start(nursery)
    await b.host.connect(a.host.listen_addrs[0])
    await wait_mesh([a, b])
    sent_a = [await a.relay.publish(TOPIC, msg(i, "a")) for i in range(100)]
    sent_b = [await b.relay.publish(TOPIC, msg(i, "b")) for i in range(100)]
    with trio.fail_after(20):
        while len(a.got) < 100 or len(b.got) < 100:
            await trio.sleep(0.05)
    assert sorted(b.got) == sorted(sent_a) and sorted(a.got) == sorted(sent_b)  # none lost, no own echo


async def test_five_node_mesh_delivers_exactly_once(nursery: trio.Nursery) -> None:
    nodes = [await Node().start(nursery) for _ in range(5)]
    for i, n in enumerate(nodes[1:], 1):  # a line plus a chord: not everyone is a direct neighbour
        await n.host.connect(nodes[i - 1].host.listen_addrs[0])
    await nodes[4].host.connect(nodes[0].host.listen_addrs[0])
    await wait_mesh(nodes, 2)
    sent: dict[int, list[bytes]] = {i: [] for i in range(5)}
    for k in range(20):
        for i, n in enumerate(nodes):
            sent[i].append(await n.relay.publish(TOPIC, msg(k, f"n{i}-")))
    with trio.fail_after(30):
        while any(len(n.got) < 80 for n in nodes):
            await trio.sleep(0.1)
    await trio.sleep(1.0)  # late duplicates would show up now
    for i, n in enumerate(nodes):
        expected = sorted(h for j, hs in sent.items() if j != i for h in hs)
        assert sorted(n.got) == expected, f"node {i}"


async def test_invalid_messages_are_rejected_and_counted(nursery: trio.Nursery) -> None:
    a, b = await Node().start(nursery), await Node().start(nursery)
    await b.host.connect(a.host.listen_addrs[0])
    await wait_mesh([a, b])
    assert a.relay._pubsub is not None
    a.relay._pubsub.remove_topic_validator(TOPIC)  # a misbehaving peer: no validation on its side
    await a.relay._pubsub.publish(TOPIC, b"\xff\xfe garbage")  # bypasses our own publish checks
    await a.relay._pubsub.publish(TOPIC, WakuMessage(b"", "/t/1/x/p").encode())
    good = await a.relay.publish(TOPIC, msg(1))
    with trio.fail_after(10):
        while not b.got:
            await trio.sleep(0.05)
    assert b.got == [good]
    assert b.metric("waku_relay_rejected_total", reason="malformed") >= 1
    assert b.metric("waku_relay_rejected_total", reason="empty_payload") >= 1


async def test_signed_peer_records_are_cached_but_still_verified(nursery: trio.Nursery) -> None:
    """Fault 8 (v2/relay/gossipsub_compat.py): our record is built once per refresh, a peer's
    identical record is verified once, and a tampered one is still refused."""
    import libp2p.pubsub.gossipsub as gossipsub_mod
    from libp2p.pubsub.pb import rpc_pb2

    a, b = await Node().start(nursery), await Node().start(nursery)
    await b.host.connect(a.host.listen_addrs[0])
    await wait_mesh([a, b])
    env = gossipsub_mod.env_to_send_in_RPC
    assert getattr(env, "waku_cached", False)
    first = env(a.host.libp2p_host)[0]
    assert env(a.host.libp2p_host)[0] is first  # cached: no new lookup, no new signature
    consume = gossipsub_mod.maybe_consume_signed_record
    a_id = a.host.libp2p_host.get_id()
    rpc = rpc_pb2.RPC(senderRecord=first)
    assert consume(rpc, b.host.libp2p_host, a_id) and consume(rpc, b.host.libp2p_host, a_id)
    bad = bytearray(first)
    bad[-1] ^= 1  # the signature's last byte
    assert not consume(rpc_pb2.RPC(senderRecord=bytes(bad)), b.host.libp2p_host, a_id)
    assert consume(rpc_pb2.RPC(), b.host.libp2p_host, a_id)  # no record: nothing to check
    sent = [await a.relay.publish(TOPIC, msg(i, "rec")) for i in range(20)]
    with trio.fail_after(20):
        while len(b.got) < 20:
            await trio.sleep(0.05)
    assert sorted(b.got) == sorted(sent)


async def test_own_messages_are_flood_published(nursery: trio.Nursery) -> None:
    """Fault 12 (v2/relay/gossipsub_compat.py): our own message goes to every topic peer, in the
    mesh or not (a peer back after a reset is not grafted before the next heartbeat); a
    forwarded one goes to the mesh only, as gossipsub v1.1 says."""
    from libp2p.peer.id import ID

    a, b = await Node().start(nursery), await Node().start(nursery)
    await b.host.connect(a.host.listen_addrs[0])
    await wait_mesh([a, b])
    router = a.relay._router
    assert router is not None
    me, them = a.host.libp2p_host.get_id(), b.host.libp2p_host.get_id()
    router.mesh[TOPIC].discard(them)  # no checkpoint until the selections below: no heartbeat regrafts
    assert set(router._get_peers_to_send([TOPIC], me, ID(b""))) == {them}
    assert set(router._get_peers_to_send([TOPIC], ID(b"a forwarder"), ID(b""))) == set()
    assert a.relay.publish_peers(TOPIC) == [b.host.peer_id]  # what the bridge asks before it publishes
    h = await a.relay.publish(TOPIC, msg(1, "flood"))
    with trio.fail_after(20):
        while h not in b.got:
            await trio.sleep(0.05)
