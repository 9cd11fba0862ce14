"""The bridge's default per-peer v1 limits (config v1.rate_limit_packets / _bytes, from status-go's
own defaults: v1/waku/ratelimit.py DEFAULT_*) against real sockets: a flooding peer is cut off and
counted, a peer sending like a fleet node (one Messages packet every 300 ms) is not."""

from __future__ import annotations

import os
import time

import trio
from prometheus_client import CollectorRegistry

from bridge.app.config import load_config
from tests.v1.test_node import FAST, metric, mined
from v1.node import WAKU, V1Node, V1NodeConfig
from v1.rlpx.keys import NodeKey
from v1.rlpx.session import HelloParams
from v1.rlpx.transport import rlpx_connect
from v1.waku.envelope import Envelope
from v1.waku.messages import WakuCode, encode_messages
from v1.waku.ratelimit import DEFAULT_BYTES_PER_S, DEFAULT_PACKETS_PER_S
from v1.waku.status import RateLimits, StatusOptions, decode_status, encode_status


async def bridge_defaults_node(nursery: trio.Nursery) -> V1Node:
    v1 = load_config(None, {}, env={}).v1  # what `waku-bridge` runs with when nothing is set
    assert (v1.rate_limit_packets, v1.rate_limit_bytes) == (DEFAULT_PACKETS_PER_S, DEFAULT_BYTES_PER_S)
    node = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, pow_requirement=0.002, timeouts=FAST,
                               rate_limit_packets=v1.rate_limit_packets, rate_limit_bytes=v1.rate_limit_bytes),
                  CollectorRegistry())
    await nursery.start(node.run)
    return node


async def test_a_no_pow_flood_is_disconnected_and_counted(nursery: trio.Nursery) -> None:
    node = await bridge_defaults_node(nursery)
    status = encode_status(StatusOptions(pow_requirement=0.002))
    expiry = int(time.time()) + 10
    junk = [encode_messages([Envelope(expiry, 10, b"abcd", os.urandom(64), 0) for _ in range(20)])
            for _ in range(300)]  # 6 000 envelopes without PoW in 300 packets
    sent = 0
    async with rlpx_connect(node.enode, NodeKey.generate(), HelloParams("flood", (WAKU,)), timeouts=FAST) as conn:
        await conn.send(WakuCode.STATUS, status)
        code, payload = await conn.receive()
        assert code == WakuCode.STATUS
        # what we advertise (Status keys 4 and 6: [ip, peer id, topic]) so honest peers pace to it
        theirs = decode_status(payload)
        assert theirs.rate_limits == RateLimits(0, DEFAULT_PACKETS_PER_S, 0)
        assert theirs.bytes_rate_limits == RateLimits(0, DEFAULT_BYTES_PER_S, 0)
        for packet in junk:
            try:
                await conn.send(WakuCode.MESSAGES, packet)
            except Exception:  # the node hung up on us: the point of the test
                break
            sent += 1
        with trio.fail_after(30):
            while not metric(node, "waku_v1_peer_disconnects_total", reason="rate_limit"):
                await trio.sleep(0.05)
    assert metric(node, "waku_v1_rate_limits_exceeded_total", type="packets") >= 5  # the rejection, counted
    # only what fitted in the bucket was processed, not the flood
    assert sent >= DEFAULT_PACKETS_PER_S
    assert metric(node, "envelopes_received_total") <= 20 * (2 * DEFAULT_PACKETS_PER_S + 5) < 6000
    assert not node.peers()


async def test_a_peer_batching_every_300_ms_like_a_fleet_node_stays(nursery: trio.Nursery) -> None:
    node = await bridge_defaults_node(nursery)
    status = encode_status(StatusOptions(pow_requirement=0.002))
    batches = [[mined(data=b"fleet %d %d " % (k, i) + os.urandom(8), ttl=30) for i in range(5)] for k in range(12)]
    async with rlpx_connect(node.enode, NodeKey.generate(), HelloParams("fleet", (WAKU,)), timeouts=FAST) as conn:
        await conn.send(WakuCode.STATUS, status)
        await conn.receive()
        for batch in batches:  # status-go's TransmissionCycle: one bundle every 300 ms
            await conn.send(WakuCode.MESSAGES, encode_messages(batch))
            await trio.sleep(0.3)
        with trio.fail_after(30):
            while metric(node, "envelopes_valid_total") < 60:
                await trio.sleep(0.05)
        assert len(node.peers()) == 1
    assert metric(node, "waku_v1_rate_limits_exceeded_total", type="packets") == 0
    assert metric(node, "waku_v1_rate_limits_exceeded_total", type="bytes") == 0
    assert metric(node, "waku_v1_peer_disconnects_total", reason="rate_limit") == 0
