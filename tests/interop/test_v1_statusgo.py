"""waku/1 interop with status-go's real ``waku`` package (v1.1.0) on go-ethereum's p2p.Server.

The peer is ``tests/interop/go/wakuv1`` (JSON lines; command protocol at the top of its main.go).
It tees every waku packet it reads and writes, so the tests see status-go's own Status options,
Status Updates, Message Responses and Batch Acks as it encodes them.  Our side is a full
:class:`V1Node`.  Every wait returns as soon as its condition holds; nothing asserts on timing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.jsproc import GoPeer, JsPeer
from v1.node import V1Node, V1NodeConfig
from v1.waku.bloom import FULL_BLOOM, bloom_or, topic_to_bloom
from v1.waku.envelope import Envelope
from v1.waku.messages import (
    P2PRequestComplete,
    WakuCode,
    decode_message_response,
    decode_p2p_request_complete,
    encode_messages,
)
from v1.waku.pow import SizeRule, mine_smallest_nonce, pow_value
from v1.waku.status import RateLimits, decode_status

pytestmark = pytest.mark.interop

log = logging.getLogger(__name__)

T1 = bytes.fromhex("1a2b3c4d")
T2 = bytes.fromhex("00010200")
T3 = bytes.fromhex("deadbeef")


# --- helpers ---


async def start_statusgo(nursery: trio.Nursery, *flags: str) -> tuple[JsPeer, dict[str, Any]]:
    peer = await GoPeer.start_go(nursery, "wakuv1", ["-port", "0", *flags])
    ready = (await peer.wait_event("ready", timeout=60))[0]
    return peer, ready


async def start_node(nursery: trio.Nursery, **cfg: Any) -> V1Node:
    cfg.setdefault("forward_interval", 0.1)
    node = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, **cfg), CollectorRegistry())
    await nursery.start(node.run)
    return node


async def until(cond: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    with trio.fail_after(timeout):
        while not cond():  # the node exposes no event for these conditions: poll
            await trio.sleep(interval)


def envelope(data: bytes, topic: bytes = T1, pow_: float = 0.002, ttl: int = 30) -> Envelope:
    expiry = int(time.time()) + ttl
    nonce = mine_smallest_nonce(expiry, ttl, topic, data, pow_)
    assert nonce is not None
    return Envelope(expiry, ttl, topic, data, nonce)


def seen(go: JsPeer, h: bytes) -> bool:
    return any(e.get("event") in ("envelope", "envelope_seen") and e.get("hash") == h.hex() for e in go.events)


def go_status(go: JsPeer, dir_: str, code: int = 0) -> list[dict[str, Any]]:
    return [e for e in go.events if e.get("event") == "status" and e["dir"] == dir_ and e["code"] == code]


def check_statusgo_options(ev: dict[str, Any]) -> None:
    """Our parser reads every key status-go sends, to the values its own decoder reads."""
    opts, keys = ev["options"], ev["keys"]
    log.info("status-go Status (code %d) keys %s: %s", ev["code"], keys, opts)
    assert "error" not in opts
    assert set(keys) <= {0, 1, 2, 3, 4, 5, 6}, f"status-go sent a key we do not know: {keys}"
    ours = decode_status(bytes.fromhex(ev["raw"]))
    if 0 in keys:
        assert ours.pow_requirement == opts["pow"]
    if 1 in keys:
        assert ours.bloom is not None and ours.bloom.hex() == opts["bloom"]
    if 2 in keys:
        assert ours.light_node is opts["light"]
    if 3 in keys:
        assert ours.confirmations is opts["confirmations"]
    if 4 in keys:
        assert ours.rate_limits == RateLimits(*opts["rate_limits"])
    if 5 in keys:
        assert ours.topic_interest is not None
        assert [t.hex() for t in ours.topic_interest] == opts["topic_interest"]
    if 6 in keys:
        assert ours.bytes_rate_limits == RateLimits(*opts["bytes_rate_limits"])


def our_peer(node: V1Node) -> Any:
    """The one connected peer's internal state (its filter, pacer and RLPx connection)."""
    peers = list(node._peers.values())
    assert len(peers) == 1
    return peers[0]


async def connected(node: V1Node, count: int = 1) -> None:
    await until(lambda: len(node.peers()) >= count)


# --- handshake, status options, envelopes both ways ---


@pytest.mark.parametrize("dialer", ["ours", "statusgo"])
async def test_handshake_status_and_envelopes(nursery: trio.Nursery, dialer: str) -> None:
    # A limiter and confirmations on, so that every key status-go sends carries a real value.
    go, ready = await start_statusgo(
        nursery, "-pow", "0.002", "-confirmations", "-rate-packets-ip", "1000", "-rate-packets-peer", "500",
        "-rate-bytes-ip", "8000000", "-rate-bytes-peer", "4000000", "-rate-tolerance", "0")
    try:
        if dialer == "ours":
            node = await start_node(nursery, static_nodes=(ready["enode"],))
        else:
            node = await start_node(nursery)
            await go.request("connect", enode=node.enode)
        await connected(node)
        add = (await go.wait_event("peer_add"))[0]
        assert "waku/1" in add["caps"]
        p = our_peer(node)
        # RLPx + Hello: p2p v5 on both sides, hence snappy; waku/1 shared.
        assert p.conn.remote_hello.version == 5 and p.conn._session.snappy
        assert ("waku", 1) in p.conn.remote_hello.capabilities
        assert [(c.name, c.version) for c in p.conn.shared_capabilities] == [("waku", 1)]

        theirs = (await until_event(go, "status", dir="out", code=0))[0]
        check_statusgo_options(theirs)
        # status-go v1.1.0 sends keys 0-4 and 6 (a full node: bloom, no topic interest), all set.
        assert theirs["keys"] == [0, 1, 2, 3, 4, 6]
        assert theirs["options"]["rate_limits"] == [1000, 500, 0]
        assert theirs["options"]["bytes_rate_limits"] == [8000000, 4000000, 0]
        assert p.filter.pow_requirement == 0.002 and p.filter.bloom == FULL_BLOOM
        assert p.pacer.packets_per_s == pytest.approx(500 * 0.9) and p.pacer.bytes_per_s == pytest.approx(4e6 * 0.9)
        # What status-go read from us, decoded by its own v1.StatusOptions.
        mine = (await until_event(go, "status", dir="in", code=0))[0]["options"]
        assert mine["pow"] == 0.002 and mine["bloom"] == "ff" * 64 and mine["light"] is False
        assert mine["confirmations"] is False

        # ours -> status-go
        ours = envelope(b"from python " + os.urandom(8))
        assert (await node.post(ours)).accepted
        got = (await go.wait_event("envelope", hash=ours.hash.hex()))[0]
        assert bytes.fromhex(got["data"]) == ours.data and got["nonce"] == ours.nonce
        assert got["expiry"] == ours.expiry and got["ttl"] == ours.ttl and got["topic"] == T1.hex()
        # status-go -> ours (status-go seals with its own Seal)
        data = b"from status-go " + os.urandom(8)
        reply = await go.request("post", topic=T1.hex(), data=data.hex(), ttl=30, pow=0.002)
        with trio.fail_after(30):
            rec = await node.inbound().receive()
        assert rec.envelope.data == data and rec.envelope.hash.hex() == reply["hash"]
        assert pow_value(rec.envelope, SizeRule.SPEC) == pytest.approx(reply["pow"])
        assert not [e for e in go.events if e.get("event") == "peer_drop"]
    finally:
        await go.aclose()


async def until_event(go: JsPeer, event: str, timeout: float = 30.0, **match: Any) -> list[dict[str, Any]]:
    return await go.wait_event(event, timeout=timeout, **match)


# --- Status Update (22) from status-go at run time ---


async def test_statusgo_status_updates_are_honoured(nursery: trio.Nursery) -> None:
    # Not a full node: status-go only announces bloom / topic-interest changes then.
    go, ready = await start_statusgo(nursery, "-pow", "0.002", "-full-node=false")
    try:
        node = await start_node(nursery, static_nodes=(ready["enode"],))
        await connected(node)
        check_statusgo_options((await until_event(go, "status", dir="out", code=0))[0])

        # PoW raised to 1.0: a lower-PoW envelope is no longer forwarded to it.
        await go.request("set_pow", pow=1.0)
        upd = (await until_event(go, "status", dir="out", code=22))[-1]
        check_statusgo_options(upd)
        assert upd["keys"] == [0]
        await until(lambda: our_peer(node).filter.pow_requirement == 1.0)
        low, high = envelope(b"low " + os.urandom(8)), envelope(b"high " + os.urandom(8), pow_=1.0)
        assert pow_value(low) < 1.0 <= pow_value(high)
        assert (await node.post(low)).accepted and (await node.post(high)).accepted
        await go.wait_event("envelope", hash=high.hash.hex())
        assert not seen(go, low.hash)  # queued before `high`: it would have been sent first
        await go.request("set_pow", pow=0.002)
        await until(lambda: our_peer(node).filter.pow_requirement == 0.002)

        # Topic interest [T1]: only T1 envelopes go to it.
        await go.request("set_topic_interest", topics=[T1.hex()])
        upd = (await until_event(go, "status", dir="out", code=22, count=3))[-1]
        check_statusgo_options(upd)
        assert upd["keys"] == [5] and upd["options"]["topic_interest"] == [T1.hex()]
        await until(lambda: our_peer(node).filter.topic_interest == frozenset({T1}))
        other, wanted = envelope(b"t2 " + os.urandom(8), T2), envelope(b"t1 " + os.urandom(8), T1)
        assert (await node.post(other)).accepted and (await node.post(wanted)).accepted
        await go.wait_event("envelope", hash=wanted.hash.hex())
        assert not seen(go, other.hash)

        # Bloom of [T2]: clears the topic interest; only envelopes matching the bloom go to it.
        await go.request("set_bloom", topics=[T2.hex()])
        upd = (await until_event(go, "status", dir="out", code=22, count=4))[-1]
        check_statusgo_options(upd)
        # status-go assigns bits within a byte (common/topic.go ToBloom): T2's 3 bits collide in
        # byte 0 and only the last survives, 04 where the OR variant has 07.
        go_bloom = topic_to_bloom(T2, assign=True)
        assert go_bloom != bloom_or([T2])
        assert upd["keys"] == [1] and upd["options"]["bloom"] == go_bloom.hex()
        await until(lambda: our_peer(node).filter.topic_interest is None and our_peer(node).filter.bloom == go_bloom)
        other, wanted = envelope(b"t3 " + os.urandom(8), T3), envelope(b"t2 " + os.urandom(8), T2)
        assert (await node.post(other)).accepted and (await node.post(wanted)).accepted
        await go.wait_event("envelope", hash=wanted.hash.hex())
        assert not seen(go, other.hash)

        # Back to everything with a full bloom.  (SetFullNode(true) would announce nothing:
        # notifyPeersAboutBloomFilterChange returns early once FullNode is set, waku/waku.go.)
        await go.request("set_bloom", bloom="ff" * 64)
        await until(lambda: our_peer(node).filter.bloom == FULL_BLOOM)
        again = envelope(b"t3 again " + os.urandom(8), T3)
        assert (await node.post(again)).accepted
        await go.wait_event("envelope", hash=again.hash.hex())

        # SetFullNode(true) announces nothing; SetFullNode(false) then announces its topic
        # interest, which the bloom cleared: nil, an empty Status Update (c0), a no-op for us.
        await go.request("set_full_node", full=True)
        await go.request("set_full_node", full=False)
        upd = (await until_event(go, "status", dir="out", code=22, count=6))[-1]
        assert upd["raw"] == "c0" and upd["keys"] == []
        late = envelope(b"t3 late " + os.urandom(8), T3)
        assert (await node.post(late)).accepted
        await go.wait_event("envelope", hash=late.hash.hex())
        assert our_peer(node).filter.bloom == FULL_BLOOM and our_peer(node).filter.topic_interest is None
        assert not [e for e in go.events if e.get("event") == "peer_drop"]
    finally:
        await go.aclose()


# --- our sending paced to status-go's real rate limiter ---


async def test_pacing_to_statusgo_rate_limits(nursery: trio.Nursery) -> None:
    """60 s at 200 envelopes/s towards a status-go whose limiter drops a peer at the first excess.

    The envelopes come in bursts of 400 every 2 s (48 kB), more than the 40 kB byte bucket
    status-go holds for us: an unpaced sender is dropped on the first burst (checked by hand with
    the pacer's limits cleared: "exceeded rate limit by peer").  Paced, each burst drains within
    about a second at 90 % of the limit, and the bucket refills before the next one.
    """
    packets_peer, bytes_peer = 10, 40_000
    go, ready = await start_statusgo(
        nursery, "-pow", "0.002", "-rate-packets-ip", "20", "-rate-packets-peer", str(packets_peer),
        # Tolerance 2: one spurious excess (a status-go starved past several 100 ms refill ticks
        # on a loaded machine) is forgiven; an unpaced sender exceeds on every burst.
        "-rate-bytes-ip", "64000", "-rate-bytes-peer", str(bytes_peer), "-rate-tolerance", "2")
    try:
        node = await start_node(nursery, static_nodes=(ready["enode"],), forward_interval=0.3, pool_capacity=16384)
        await connected(node)
        theirs = (await until_event(go, "status", dir="out", code=0))[0]
        check_statusgo_options(theirs)
        assert theirs["options"]["rate_limits"] == [20, packets_peer, 0]
        assert theirs["options"]["bytes_rate_limits"] == [64000, bytes_peer, 0]
        p = our_peer(node)
        assert p.pacer.bytes_per_s == pytest.approx(bytes_peer * 0.9)
        assert p.pacer.packets_per_s == pytest.approx(packets_peer * 0.9)

        posted: set[str] = set()
        burst_bytes = 0
        for second in range(0, 60, 2):
            start = trio.current_time()
            burst = [envelope(f"{second:03d}-{i:04d} ".encode() + os.urandom(88), ttl=30) for i in range(400)]
            burst_bytes = sum(e.size for e in burst)
            for e in burst:
                assert (await node.post(e)).accepted
                posted.add(e.hash.hex())
            assert not [e for e in go.events if e.get("event") == "peer_drop"], go.stderr
            await trio.sleep_until(start + 2.0)
        assert burst_bytes > bytes_peer  # the limit binds: pacing is what keeps us connected

        def delivered() -> set[str]:
            return {e["hash"] for e in go.events if e.get("event") == "envelope"}

        await until(lambda: delivered() >= posted, timeout=60, interval=0.5)
        assert delivered() == posted
        assert not [e for e in go.events if e.get("event") == "peer_drop"], go.stderr
        assert len(node.peers()) == 1
        assert node.metrics.send_expired._value.get() == 0
        metrics = (await go.request("info"))["metrics"]
        log.info("status-go rate limiter: %s", {k: v for k, v in metrics.items() if "rate_limits" in k})
        assert metrics["waku_rate_limits_processed_total"] >= 30  # its limiter saw every packet
    finally:
        await go.aclose()


# --- a line: status-go A - ours - status-go B ---


async def test_line_statusgo_ours_statusgo(nursery: trio.Nursery) -> None:
    a, ready_a = await start_statusgo(nursery, "-pow", "0.002")
    b, _ = await start_statusgo(nursery, "-pow", "0.002")
    try:
        node = await start_node(nursery, static_nodes=(ready_a["enode"],))
        await b.request("connect", enode=node.enode)  # one dialled by us, one dialling us
        await connected(node, 2)
        data_a, data_b = b"from A " + os.urandom(8), b"from B " + os.urandom(8)
        ha = (await a.request("post", topic=T1.hex(), data=data_a.hex(), ttl=30, pow=0.002))["hash"]
        hb = (await b.request("post", topic=T2.hex(), data=data_b.hex(), ttl=30, pow=0.002))["hash"]
        got_b = (await b.wait_event("envelope", hash=ha))[0]
        got_a = (await a.wait_event("envelope", hash=hb))[0]
        assert bytes.fromhex(got_b["data"]) == data_a and got_b["own"] is False
        assert bytes.fromhex(got_a["data"]) == data_b and got_a["own"] is False
        assert {e["peer"] for e in b.events if e.get("event") == "envelope_seen" and e["hash"] == ha} == {
            (await b.request("info"))["peers"][0]["peer"]}
    finally:
        await a.aclose()
        await b.aclose()


# --- confirmations: Message Response (12) and Batch Ack (11) ---


async def test_confirmations_from_statusgo(nursery: trio.Nursery) -> None:
    go, ready = await start_statusgo(nursery, "-pow", "0.002", "-confirmations")
    try:
        node = await start_node(nursery, static_nodes=(ready["enode"],))
        await connected(node)
        ours = envelope(b"confirm me " + os.urandom(8))
        assert (await node.post(ours)).accepted
        await go.wait_event("envelope", hash=ours.hash.hex())
        batch = next(e["batch"] for e in go.events if e.get("event") == "messages" and e["dir"] == "in")
        resp = (await go.wait_event("message_response", dir="out", batch=batch))[0]
        assert resp["version"] == 1 and resp["errors"] == []
        ack = (await go.wait_event("batch_ack", dir="out", batch=batch))[0]
        mr = decode_message_response(bytes.fromhex(resp["raw"]))
        assert mr.batch_hash.hex() == batch and mr.errors == ()
        assert ack["raw"] == "a0" + batch  # the bare 32-byte hash as an RLP string

        # An envelope status-go refuses (PoW below its 0.002), put on the wire directly: our
        # forwarder would never send it.  status-go answers with an error entry of code 21
        # (EnvelopeTimeNotSynced) although the error is a low PoW: `type TimeSyncError error` is an
        # interface, so ErrorToEnvelopeError's type switch matches every error (waku/common/
        # errors.go, envelope.go).  The code says nothing about the cause.
        low = next(e for e in (Envelope(int(time.time()) + 30, 30, T1, b"weak " + os.urandom(8), n)
                               for n in range(100)) if pow_value(e) < 0.002)
        await our_peer(node).conn.send(WakuCode.MESSAGES, encode_messages([low]))
        resp = (await go.wait_event("message_response", dir="out", count=2))[-1]
        assert [(e["hash"], e["code"]) for e in resp["errors"]] == [(low.hash.hex(), 21)]
        mr = decode_message_response(bytes.fromhex(resp["raw"]))
        assert [(e.envelope_hash, e.code) for e in mr.errors] == [(low.hash, 21)]
        await until(lambda: node.metrics.peer_envelope_errors.labels("21")._value.get() == 1)
        assert len(node.peers()) == 1 and not [e for e in go.events if e.get("event") == "peer_drop"]
    finally:
        await go.aclose()


# --- mail server side: P2P Messages (127) and P2P Request Complete (125) ---


async def test_statusgo_mailserver_p2p_messages(nursery: trio.Nursery) -> None:
    """status-go v1.1.0 has only the server side of mail (no RequestHistoricMessages), and our
    node no client side: status-go's P2P Messages and Request Complete reach us unrequested;
    we must stay connected, never pool or forward the P2P envelopes, and parse the completion."""
    go, ready = await start_statusgo(nursery, "-pow", "0.002", "-mailserver")
    other, ready_o = await start_statusgo(nursery, "-pow", "0.002")
    try:
        node = await start_node(nursery, static_nodes=(ready["enode"], ready_o["enode"]))
        await connected(node, 2)
        me = next(e["peer"] for e in go.events if e.get("event") == "peer_add")
        old = Envelope(int(time.time()) - 3600, 30, T1, b"history " + os.urandom(8), 0)  # long expired
        sent = await go.request("p2p_messages", peer=me, envelopes=[
            {"expiry": old.expiry, "ttl": old.ttl, "topic": T1.hex(), "data": old.data.hex(), "nonce": 0}])
        assert sent["hashes"] == [old.hash.hex()]
        req_id, cursor = os.urandom(32), os.urandom(36)
        done = await go.request("request_complete", peer=me, request_id=req_id.hex(),
                                last_envelope_hash=old.hash.hex(), cursor=cursor.hex())
        raw = (await go.wait_event("p2p_request_complete", dir="out"))[0]["raw"]
        assert decode_p2p_request_complete(bytes.fromhex(raw)) == P2PRequestComplete(req_id, old.hash, cursor)
        assert bytes.fromhex(done["payload"]) == req_id + old.hash + cursor
        # status-go sent the P2P packets before it broadcast this one (300 ms tick), and we
        # read in order: once it reached the other peer, the P2P envelope would have too.
        marker = await go.request("post", topic=T1.hex(), data=os.urandom(8).hex(), ttl=30, pow=0.002)
        first = (await other.wait_event("envelope", own=False))[0]
        assert first["hash"] == marker["hash"] and not seen(other, old.hash)
        assert old.hash not in node.pool
        assert node.metrics.envelopes_dropped.labels("p2p_message")._value.get() == 1
        assert len(node.peers()) == 2
    finally:
        await go.aclose()
        await other.aclose()





async def test_confirmations_do_not_count_against_our_rate_limit(nursery: trio.Nursery) -> None:
    """status-go answers every Messages packet with two packets (12 and 11) and ignores the
    limits we advertise (v1/peer.go: stored, never used to send): those answers, which our own
    sending provokes, must not make our limiter drop it as abusive."""
    go, ready = await start_statusgo(nursery, "-pow", "0.002", "-confirmations")
    try:
        node = await start_node(nursery, static_nodes=(ready["enode"],), rate_limit_packets=4)
        await connected(node)
        mine = (await until_event(go, "status", dir="in", code=0))[0]["options"]
        assert mine["rate_limits"] == [0, 4, 0]
        for i in range(30):  # one Messages packet each: 60 confirmation packets back
            e = envelope(f"paced {i} ".encode() + os.urandom(8))
            assert (await node.post(e)).accepted
            await go.wait_event("envelope", hash=e.hash.hex())
        await go.wait_event("batch_ack", dir="out", count=30)
        marker = await go.request("post", topic=T1.hex(), data=os.urandom(8).hex(), ttl=30, pow=0.002)
        with trio.fail_after(30):
            rec = await node.inbound().receive()
        assert rec.envelope.hash.hex() == marker["hash"]  # read after all 60 answers: still connected
        assert len(node.peers()) == 1 and not [e for e in go.events if e.get("event") == "peer_drop"]
        assert node.metrics.rate_limited.labels("packets")._value.get() == 0
    finally:
        await go.aclose()


async def test_an_envelope_too_big_for_a_1_mib_packet_is_not_sent_to_statusgo(nursery: trio.Nursery) -> None:
    """status-go takes an envelope with Size() = 20 + len(data) up to its MaxMessageSize (1 MiB),
    but disconnects on any *packet* over it (v1/peer.go Run: "oversize message received", seen
    live when such a packet is forced on it): the lone envelope's list header is 4 bytes too many.
    We keep it from that peer (counted) and stay connected."""
    go, ready = await start_statusgo(nursery, "-pow", "0.002")
    try:
        node = await start_node(nursery, static_nodes=(ready["enode"],))
        await connected(node)
        expiry, blob = int(time.time()) + 30, os.urandom(1 << 20)
        for cut in range(30, 15, -1):  # the largest envelope we accept (full RLP <= 1 MiB)
            data = blob[:(1 << 20) - cut]
            nonce = mine_smallest_nonce(expiry, 30, T1, data, 0.002)
            assert nonce is not None
            if Envelope(expiry, 30, T1, data, nonce).size > 1 << 20:
                break
            huge = Envelope(expiry, 30, T1, data, nonce)
        assert 20 + len(huge.data) <= 1 << 20 < len(encode_messages([huge]))  # status-go takes it, not its packet
        assert (await node.post(huge)).accepted
        await until(lambda: node.metrics.send_oversize._value.get() == 1)
        small = envelope(b"after the huge one " + os.urandom(8))
        assert (await node.post(small)).accepted
        await go.wait_event("envelope", hash=small.hash.hex())
        assert not seen(go, huge.hash) and len(node.peers()) == 1
        assert not [e for e in go.events if e.get("event") == "peer_drop"]
    finally:
        await go.aclose()
