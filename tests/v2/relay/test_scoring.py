"""Gossipsub v1.1 peer scoring with nwaku's parameters.

First the pure core (v2/relay/scoring.py, time passed in), then real nodes on loopback: a peer
flooding invalid and oversize messages over raw gossipsub RPC frames is graylisted, its RPCs are
ignored, it is disconnected and kept out, and the good peers' messages keep flowing; so is a peer
flooding valid messages above its per-peer relay limit (v2/ratelimit.py).
"""

from __future__ import annotations

import time

import pytest
import trio

from tests.helpers.v2relay import TOPIC, Node, wait_mesh
from v2.core.message import MAX_MESSAGE_SIZE, WakuMessage
from v2.relay.protocol import ValidationResult, classify
from v2.relay.scoring import NWAKU_PEER_SCORE, NWAKU_THRESHOLDS, NWAKU_TOPIC_SCORE, PeerScores

T = "/waku/2/rs/0/0"


def scored(*peers: str, ip: str | None = None) -> PeerScores:
    s = PeerScores()
    s.set_topic(T)
    for p in peers:
        s.add_peer(p, 0.0)
        if ip is not None:
            s.set_ip(p, ip)
    return s


# -- the pure core ------------------------------------------------------------------------------


def test_nwaku_parameters() -> None:
    """The values of nwaku waku/waku_relay/protocol.nim (and go-waku relay/config.go)."""
    t, p, th = NWAKU_TOPIC_SCORE, NWAKU_PEER_SCORE, NWAKU_THRESHOLDS
    assert (th.gossip, th.publish, th.graylist, th.opportunistic_graft) == (-100, -1000, -10000, 0)
    assert (t.topic_weight, t.time_in_mesh_weight, t.time_in_mesh_quantum, t.time_in_mesh_cap) == (1, 0.01, 1, 10)
    assert (t.first_message_deliveries_weight, t.first_message_deliveries_decay,
            t.first_message_deliveries_cap) == (1, 0.5, 10)
    assert t.mesh_message_deliveries_weight == t.mesh_failure_penalty_weight == 0
    assert (t.invalid_message_deliveries_weight, t.invalid_message_deliveries_decay) == (-100, 0.5)
    assert (p.decay_interval, p.decay_to_zero, p.retain_score) == (12, 0.01, 600)
    assert (p.ip_colocation_factor_weight, p.ip_colocation_factor_threshold) == (-50, 5)
    assert (p.behaviour_penalty_weight, p.behaviour_penalty_decay, p.app_specific_weight) == (-10, 0.986, 0)


def test_time_in_mesh_counts_from_the_graft_and_is_capped() -> None:
    s = scored("a")
    s.graft("a", T, 0.0)
    s.refresh(5.0)
    assert s.score("a") == pytest.approx(0.05)
    s.refresh(11.0)
    assert s.score("a") == pytest.approx(0.1)  # cap 10 quanta x 0.01
    s.prune("a", T, 11.0)
    assert s.score("a") == 0.0


def test_first_deliveries_are_capped_and_decay_each_interval() -> None:
    s = scored("a")
    for _ in range(15):
        s.deliver_first("a", T)
    assert s.score("a") == 10.0
    s.refresh(11.9)
    assert s.score("a") == 10.0  # no whole decay interval yet
    s.refresh(12.0)
    assert s.score("a") == 5.0
    s.refresh(12.0 * 11)  # 10 * 0.5**11 < decayToZero 0.01
    assert s.score("a") == 0.0


def test_invalid_messages_are_squared_and_the_eleventh_graylists() -> None:
    s = scored("bad")
    for n in range(1, 11):
        s.reject("bad", T)
        assert s.score("bad") == -100 * n * n
    assert s.score("bad") >= NWAKU_THRESHOLDS.graylist and not s.graylisted("bad")  # -10000 is not below
    s.reject("bad", T)
    assert s.score("bad") == -12100 and s.graylisted("bad")
    s.refresh(12.0)  # halved: 5.5 -> -3025
    assert s.score("bad") == pytest.approx(-3025) and not s.graylisted("bad")
    assert s.invalid_deliveries("bad", T) == 5.5


def test_only_scored_topics_count_and_our_own_messages_not_at_all() -> None:
    s = scored("a")
    s.reject("a", "/waku/2/rs/0/7")  # not a topic we relay
    assert s.score("a") == 0.0
    s.deliver_first("us", T)  # our own publish: not a peer
    assert "us" not in s.scores()


def test_a_disconnected_peer_is_remembered_for_retain_score() -> None:
    s = scored("bad", "good")
    for _ in range(11):
        s.reject("bad", T)
    for _ in range(5):
        s.deliver_first("good", T)
    s.remove_peer("bad", 1.0)
    s.remove_peer("good", 1.0)
    assert s.graylisted("bad")
    assert s.score("good") == 0.0  # first-delivery credit is dropped (nim-libp2p unsubscribePeer)
    assert s.connected() == []
    s.add_peer("bad", 2.0)  # reconnecting does not wipe the record
    assert s.graylisted("bad")
    s.remove_peer("bad", 2.0)
    s.refresh(2.0 + NWAKU_PEER_SCORE.retain_score)
    assert s.scores() == {}


def test_ip_colocation_spares_loopback() -> None:
    s = scored(*[f"p{i}" for i in range(7)], ip="198.51.100.7")
    assert s.score("p0") == (7 - 5) ** 2 * -50
    s.remove_peer("p6", 1.0)
    assert s.score("p0") == -50
    local = scored(*[f"p{i}" for i in range(20)], ip="127.0.0.1")
    assert local.score("p0") == 0.0


def test_behaviour_penalty_is_squared_and_decays() -> None:
    s = scored("a")
    for _ in range(3):
        s.penalize("a")
    assert s.score("a") == -90
    s.refresh(12.0)
    assert s.score("a") == pytest.approx(-10 * (3 * 0.986) ** 2)


def test_bands_count_connected_peers_by_threshold() -> None:
    s = scored("pos", "zero", "neg", "gossip", "publish", "gray")
    s.deliver_first("pos", T)
    s.reject("neg", T)  # -100: at the gossip threshold, still "negative"
    s.penalize("gossip", 4)  # -160
    for peer, n in (("publish", 4), ("gray", 11)):  # -1600, -12100
        for _ in range(n):
            s.reject(peer, T)
    assert dict(s.bands()) == {"positive": 1, "zero": 1, "negative": 1, "below_gossip": 1,
                               "below_publish": 1, "graylisted": 1}


def test_classify() -> None:
    ok = WakuMessage(b"x", "/t/1/x/p").encode()
    assert classify(ok, MAX_MESSAGE_SIZE) == (ValidationResult.ACCEPT, "")
    assert classify(b"\xff\xfe", MAX_MESSAGE_SIZE) == (ValidationResult.REJECT, "malformed")
    assert classify(ok, 3) == (ValidationResult.REJECT, "too_large")
    empty = WakuMessage(b"", "/t/1/x/p").encode()
    assert classify(empty, MAX_MESSAGE_SIZE) == (ValidationResult.IGNORE, "empty_payload")


def test_py_libp2p_gates_use_the_spec_thresholds() -> None:
    """Fault 9 (v2/relay/gossipsub_compat.py): py-libp2p's scorer interface over our scores; its
    incoming-message gate ("allow_publish") drops only graylisted peers, as nim-libp2p does."""
    from libp2p.peer.id import ID

    from v2.relay.gossipsub_compat import WakuPeerScorer

    s = scored()
    scorer = WakuPeerScorer(s, lambda: 0.0)
    peer = ID(b"\x00\x25" + bytes(range(37)))
    s.add_peer(str(peer), 0.0)
    scorer.on_join_mesh(peer, T)
    scorer.on_first_delivery(peer, T)
    assert scorer.score(peer, []) == 1.0 and scorer.allow_gossip(peer, [T]) and scorer.allow_px_from(peer, [])
    scorer.on_invalid_message(peer, T)  # the relay scores Rejects itself (Ignore verdicts cost nothing)
    assert s.score(str(peer)) == 1.0
    for _ in range(4):
        s.reject(str(peer), T)  # 1 - 1600: below gossip and publish, above graylist
    assert not scorer.allow_gossip(peer, [T]) and scorer.allow_publish(peer, [T]) and not scorer.is_graylisted(peer, [])
    for _ in range(7):
        s.reject(str(peer), T)
    assert not scorer.allow_publish(peer, [T]) and scorer.is_graylisted(peer, [T])
    scorer.penalize_graft_flood(peer)  # py-libp2p's amount 10 is one misbehaviour in the spec
    assert s.score(str(peer)) == 1 - 12100 - 10
    scorer.remove_peer(peer)
    assert scorer.is_graylisted(peer, [T])  # retained, not wiped


async def test_no_score_driven_heartbeat_or_mesh_changes() -> None:
    """Fault 10 (v2/relay/gossipsub_compat.py): the stock adaptive gossip turns a 1 s heartbeat
    into 30 s when the mesh is small; ours keeps nwaku's parameters, and never swaps mesh peers."""
    from libp2p.peer.id import ID
    from libp2p.pubsub.gossipsub import GossipSub

    from v2.relay.gossipsub_compat import WAKU_RELAY_CODEC, WakuGossipSub

    peer = ID(b"\x00\x25" + bytes(range(37)))
    stock = GossipSub(protocols=[WAKU_RELAY_CODEC], degree=6, degree_low=4, degree_high=8, heartbeat_interval=1)
    ours = WakuGossipSub(degree=6, degree_low=4, degree_high=8, heartbeat_interval=1)
    for g in (stock, ours):
        g.mesh = {T: {peer}}
        g.last_health_update -= 31
        g._update_network_health()
        g._adapt_gossip_parameters()
    assert stock.heartbeat_interval >= 30  # what the fix prevents
    assert ours.heartbeat_interval == 1 and not ours.adaptive_gossip_enabled
    ours.pubsub = None
    await ours._maintain_mesh_quality(T)  # a no-op: it would need pubsub
    assert ours.mesh == {T: {peer}}


# -- real nodes ---------------------------------------------------------------------------------


def good(i: int, tag: str) -> WakuMessage:
    return WakuMessage(f"good {tag}{i}".encode(), "/test/1/scoring/proto", version=0, timestamp=time.time_ns())


class Flooder(Node):
    """A node of ours that writes raw gossipsub RPC frames to one peer, bypassing every check of its own."""

    async def send_raw(self, to: Node, *datas: bytes) -> None:
        from libp2p.pubsub.pb import rpc_pb2

        ps = self.relay._pubsub
        assert ps is not None
        stream = next(s for pid, s in ps.peers.items() if str(pid) == to.host.peer_id)
        for data in datas:
            await ps.write_msg(stream, rpc_pb2.RPC(publish=[rpc_pb2.Message(data=data, topicIDs=[TOPIC])]))


def flood() -> list[bytes]:
    """6 undecodable and 6 oversize messages (under the RPC frame limit, over 150 KiB): 12 Rejects,
    one more than the 11 that take a peer below -10000 with nwaku's P4 weight of -100."""
    malformed = [b"\xff\xfe garbage %d" % i for i in range(6)]
    oversize = [WakuMessage(bytes([i]) * (MAX_MESSAGE_SIZE + 1000), "/t/1/x/p").encode() for i in range(6)]
    return malformed + oversize


def tcp(node: Node) -> str:
    """The hub's TCP address: py-libp2p 0.8.1 knows no remote IP of a websocket connection."""
    return next(a for a in node.host.listen_addrs if "/ws" not in a)


async def wait_until(pred: object, timeout: float = 20) -> None:
    assert callable(pred)
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.05)


async def test_flooder_is_graylisted_and_its_rpcs_ignored(nursery: trio.Nursery) -> None:
    hub = await Node(disconnect_graylisted=False).start(nursery)  # to see its RPCs being ignored
    g1, g2, bad = await Node().start(nursery), await Node().start(nursery), await Flooder().start(nursery)
    for n in (g1, g2, bad):
        await n.host.connect(tcp(hub))
    await wait_mesh([g1, g2, bad])
    await wait_until(lambda: len(hub.relay.mesh_peers(TOPIC)) == 3)

    def rejected() -> list[float]:
        return [hub.metric("waku_relay_rejected_total", reason=r) for r in ("malformed", "too_large")]

    def ignored() -> float:
        return hub.metric("waku_relay_graylisted_ignored_total", kind="message")

    await bad.send_raw(hub, *flood())
    await wait_until(lambda: sum(rejected()) + ignored() == 12)
    assert hub.relay.graylisted(bad.host.peer_id)
    scores = hub.relay.peer_scores()
    assert scores[bad.host.peer_id] < hub.relay.graylist_threshold
    assert scores[g1.host.peer_id] >= 0 and scores[g2.host.peer_id] >= 0
    assert hub.relay.scores.ip_of(g1.host.peer_id) == "127.0.0.1"  # learnt for P6 (loopback: not counted)
    # Each message is validated without a suspension in between, so exactly 11 are rejected (and
    # count in P4) and the 12th, in whatever order they ran, finds its sender graylisted.
    assert sum(rejected()) == 11 and min(rejected()) >= 5 and ignored() == 1

    # A valid message from the graylisted peer is ignored too, unvalidated and undelivered.
    await bad.send_raw(hub, good(0, "bad").encode())
    await wait_until(lambda: ignored() == 2)
    # Its mesh place is taken away at the next heartbeat (negative score).
    await wait_until(lambda: bad.host.peer_id not in hub.relay.mesh_peers(TOPIC))

    sent = [await g1.relay.publish(TOPIC, good(i, "g1-")) for i in range(20)]
    await wait_until(lambda: len(hub.got) >= 20 and len(g2.got) >= 20)
    assert sorted(hub.got) == sorted(g2.got) == sorted(sent)  # the good messages flow; nothing of bad's
    assert bad.host.peer_id in hub.host.connected_peers()  # disconnect_graylisted=False
    await hub.relay._police()
    assert hub.metric("waku_relay_peer_score_peers", band="graylisted") == 1


async def test_flooder_is_disconnected_kept_out_and_replaced(nursery: trio.Nursery) -> None:
    hub, g1, bad = await Node().start(nursery), await Node().start(nursery), await Flooder().start(nursery)
    for n in (g1, bad):
        await n.host.connect(tcp(hub))
    await wait_mesh([g1, bad])

    await bad.send_raw(hub, *flood())
    await wait_until(lambda: bad.host.peer_id not in hub.host.connected_peers())
    cuts = hub.metric("waku_relay_graylist_disconnects_total")
    assert cuts >= 1 and hub.relay.graylisted(bad.host.peer_id)

    # It dials back: it is cut again at once (its record is retained, and it is blocked).
    await bad.host.connect(tcp(hub))
    await wait_until(lambda: hub.metric("waku_relay_graylist_disconnects_total") > cuts)
    await wait_until(lambda: bad.host.peer_id not in hub.host.connected_peers())

    # A replacement joins the mesh and the good messages flow through the hub.
    g2 = await Node().start(nursery)
    await g2.host.connect(tcp(hub))
    await wait_until(lambda: g2.host.peer_id in hub.relay.mesh_peers(TOPIC))
    sent = [await g1.relay.publish(TOPIC, good(i, "g1-")) for i in range(10)]
    await wait_until(lambda: len(g2.got) >= 10)
    assert sorted(g2.got) == sorted(hub.got) == sorted(sent)
    assert hub.relay.peer_scores()[g1.host.peer_id] > 0  # first deliveries (P2) and time in mesh (P1)


async def test_oversize_rpc_frames_are_counted_and_scored(nursery: trio.Nursery) -> None:
    """Fault 11: a frame above the relay's RPC limit (150 KiB + 64 KiB) resets the stream; it is
    counted and costs the sender one behaviour penalty (P7), squared: -10, then -40, ..."""
    hub, bad = await Node(disconnect_graylisted=False).start(nursery), await Flooder().start(nursery)
    await bad.host.connect(tcp(hub))
    await wait_mesh([bad])
    await wait_until(lambda: bad.host.peer_id in hub.relay.mesh_peers(TOPIC))
    huge = WakuMessage(b"x" * (MAX_MESSAGE_SIZE + 70 * 1024), "/t/1/x/p").encode()
    await bad.send_raw(hub, huge)
    await wait_until(lambda: hub.metric("waku_relay_rejected_total", reason="rpc_too_large") == 1)
    assert hub.relay.peer_scores()[bad.host.peer_id] <= -10 + 10.1  # P7 -10; at most P1 + P2 on top
    assert hub.metric("waku_relay_rejected_total", reason="too_large") == 0  # never parsed


async def test_rate_limited_flooder_is_cut_off_while_a_normal_peer_flows(nursery: trio.Nursery) -> None:
    """A peer sending valid messages far above its per-peer limit: the excess is ignored before
    validation (neither delivered nor forwarded), counted, and scored as behaviour penalties (P7)
    until the peer is graylisted and disconnected; a normal peer's messages all arrive."""
    hub = await Node(peer_messages_per_s=20).start(nursery)  # 40 at once (2 s burst), then 20/s
    g1, g2, bad = await Node().start(nursery), await Node().start(nursery), await Flooder().start(nursery)
    for n in (g1, g2, bad):
        await n.host.connect(tcp(hub))
    await wait_mesh([g1, g2, bad])
    await wait_until(lambda: len(hub.relay.mesh_peers(TOPIC)) == 3)

    def limited() -> float:
        return hub.metric("waku_relay_rate_limited_total", kind="messages")

    flood = [good(i, "flood-").encode() for i in range(2000)]
    with trio.move_on_after(30):
        try:
            for i in range(0, len(flood), 100):
                await bad.send_raw(hub, *flood[i:i + 100])
                if bad.host.peer_id not in hub.host.connected_peers():
                    break
        except Exception:  # the hub hung up on us mid-flood: what the test wants
            pass
    await wait_until(lambda: bad.host.peer_id not in hub.host.connected_peers())
    assert hub.relay.graylisted(bad.host.peer_id)
    assert hub.metric("waku_relay_graylist_disconnects_total") >= 1
    # about 32 behaviour penalties graylist (-10 x n^2 below -10000 plus its P1 + P2 of up to 10.1);
    # each refused message is 1/20 of one
    assert limited() >= 31.6 * 20
    assert hub.metric("waku_relay_rate_limited_total", kind="bytes") == 0
    assert hub.metric("waku_relay_rejected_total", reason="malformed") == 0  # nothing was invalid
    # What passed the limit was delivered and forwarded as usual; nothing refused was.
    passed = len([h for h in hub.got if h in set(g2.got)])
    assert 40 <= len(hub.got) < len(flood) - limited() + 1 and passed == len(hub.got)

    before = len(hub.got)
    sent = [await g1.relay.publish(TOPIC, good(i, "g1-")) for i in range(20)]
    await wait_until(lambda: len(hub.got) >= before + 20 and set(sent) <= set(g2.got))
    assert set(sent) <= set(hub.got)
    scores = hub.relay.peer_scores()
    assert scores[g1.host.peer_id] >= 0 and scores[g2.host.peer_id] >= 0
