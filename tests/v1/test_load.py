"""Three of our Waku v1 nodes under load must never break the protocol with each other.

Finding from the failover drills: at ~100 envelopes/s each way on a busy 2-core machine, a bridge
sometimes disconnected the v1 hub with BREACH_OF_PROTOCOL.  Here a hub and two "bridges" (static
dials to the hub) each post >= 250 envelopes/s for a few seconds, every link carries traffic in
both directions, keepalive Pings fly every 20 ms both ways (Pongs then interleave with Messages
batches on every stream), the consumers pause now and then (back-pressure reaches TCP), and a
busy subprocess competes for the CPU.  Every envelope must arrive everywhere, and no session may
end: no peer disconnected, no RLPx protocol error, no disconnect of any reason counted.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import rlp
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.jsproc import JsPeer
from tests.helpers.net import free_port
from tests.helpers.rlpx import handshake_by_hand
from v1.node import WAKU, V1Node, V1NodeConfig
from v1.rlpx.base import DisconnectReason
from v1.rlpx.keys import NodeKey
from v1.rlpx.session import HelloParams, Session
from v1.rlpx.transport import Timeouts
from v1.waku.envelope import Envelope
from v1.waku.messages import WakuCode, encode_messages
from v1.waku.status import StatusOptions, encode_status

RATE = 250  # envelopes/s posted by each node
SECONDS = 4.0
# Pings every 20 ms both ways: a Pong or Ping is due while a Messages batch is being written far
# more often than with the 15 s default, which is what made the ordering bug show up in minutes.
STRESS = Timeouts(ping_interval=0.02, idle=20.0)
TOPIC = bytes.fromhex("1a2b3c4d")


def total(node: V1Node, name: str) -> float:
    """Sum of every sample of metric ``name`` (all label values) in the node's registry."""
    return sum(s.value for fam in node.metrics.registry.collect() for s in fam.samples if s.name == name)


def labelled(node: V1Node, name: str) -> dict[str, float]:
    return {",".join(f"{k}={v}" for k, v in sorted(s.labels.items())): s.value
            for fam in node.metrics.registry.collect() for s in fam.samples if s.name == name and s.value}


def envelope(tag: bytes, i: int, now: float) -> Envelope:
    # pow requirement 0 on every node: no mining, so the CPU goes to the transport under test
    return Envelope(int(now) + 60, 60, TOPIC, tag + i.to_bytes(4, "big") + os.urandom(200), 0)


async def start(nursery: trio.Nursery, **kw: object) -> V1Node:
    base: dict[str, object] = {"listen_address": "127.0.0.1", "port": 0, "pow_requirement": 0.0,
                               "forward_interval": 0.05, "pool_capacity": 20_000, "inbound_capacity": 256,
                               "timeouts": STRESS}
    base.update(kw)
    node = V1Node(V1NodeConfig(**base), CollectorRegistry())  # type: ignore[arg-type]
    await nursery.start(node.run)
    return node


async def post_at_rate(node: V1Node, tag: bytes, n: int) -> None:
    t0 = trio.current_time()
    for i in range(n):
        res = await node.post(envelope(tag, i, time.time()))
        assert res.accepted, res.reason
        if i % 10 == 9:
            await trio.sleep_until(t0 + (i + 1) / RATE)


async def consume(node: V1Node, got: dict[bytes, int]) -> None:
    """Counts arrivals per origin tag; pauses every 300 envelopes so back-pressure reaches TCP."""
    n = 0
    async for rec in node.inbound():
        tag = rec.envelope.data[:2]
        got[tag] = got.get(tag, 0) + 1
        n += 1
        if n % 300 == 0:
            await trio.sleep(0.15)


Arrivals = dict[bytes, dict[bytes, int]]  # receiver tag -> origin tag -> envelopes


async def load_until(nodes: dict[bytes, V1Node], n: int, done: Callable[[Arrivals], bool], *,
                     also: Callable[[], Awaitable[None]] | None = None, timeout: float = 60.0) -> Arrivals:
    """Every node posts ``n`` envelopes tagged with its key (``also``: one more poster) while all
    of them count arrivals, until ``done(got)``; returns ``got[receiver][origin tag]``."""
    got: Arrivals = {tag: {} for tag in nodes}
    async with trio.open_nursery() as load:
        for tag, node in nodes.items():
            load.start_soon(consume, node, got[tag])
        async with trio.open_nursery() as posters:
            for tag, node in nodes.items():
                posters.start_soon(post_at_rate, node, tag, n)
            if also is not None:
                posters.start_soon(also)
        with trio.fail_after(timeout):
            while not done(got):
                await trio.sleep(0.1)
        load.cancel_scope.cancel()
    return got


async def test_hub_and_two_bridges_at_250_per_s_each_way_stay_connected(nursery: trio.Nursery) -> None:
    hub = await start(nursery)
    a = await start(nursery, static_nodes=(hub.enode,))
    b = await start(nursery, static_nodes=(hub.enode,))
    with trio.fail_after(15):
        while len(hub.peers()) < 2 or not a.peers() or not b.peers():
            await trio.sleep(0.02)
    nodes = {b"H0": hub, b"A0": a, b"B0": b}
    n = int(RATE * SECONDS)
    # CPU contention: a busy process on the same 2 cores, as in the drills (bounded by the test)
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 60\nwhile time.time() < t: pass"])
    try:
        got = await load_until(nodes, n, lambda got: all(got[me].get(tag, 0) >= n
                                                         for me in nodes for tag in nodes if tag != me))
    finally:
        busy.kill()
        busy.wait()
    # every envelope exactly once at every other node
    assert got == {me: {tag: n for tag in nodes if tag != me} for me in nodes}
    assert len(hub.peers()) == 2 and len(a.peers()) == 1 and len(b.peers()) == 1
    for tag, node in nodes.items():
        assert labelled(node, "waku_v1_peer_disconnects_total") == {}, tag
        assert labelled(node, "waku_v1_peer_lost_total") == {}, tag
        assert labelled(node, "rlpx_disconnects_total") == {}, tag
        assert labelled(node, "rlpx_protocol_errors_total") == {}, tag
        assert total(node, "waku_v1_dials_total") == (1 if node is not hub else 0), tag
        assert total(node, "waku_v1_rate_limits_exceeded_total") == 0, tag


async def frozen_peer(node: V1Node) -> trio.SocketStream:
    """A peer that completes handshake, Hello and Status, then never reads again (SIGSTOP-like)."""
    stream = await trio.open_tcp_stream("127.0.0.1", node.port)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up sooner
    s = Session(NodeKey.generate(), HelloParams("frozen", (WAKU,)), os.urandom,
                remote_pubkey=node.config.node_key.pubkey)
    with trio.fail_after(10):
        await handshake_by_hand(stream, s)
        await stream.send_all(s.send_message(WakuCode.STATUS, encode_status(StatusOptions(pow_requirement=0.0))))
        while not node.peers():
            await trio.sleep(0.02)
    return stream


async def test_a_frozen_peer_does_not_hold_up_the_others(nursery: trio.Nursery) -> None:
    # Write and idle timeouts far beyond the wait below: only per-peer forwarding can pass.
    hub = await start(nursery, timeouts=Timeouts(write=300.0, idle=300.0))
    stuck = await frozen_peer(hub)
    b = await start(nursery, static_nodes=(hub.enode,))
    with trio.fail_after(15):
        while len(hub.peers()) < 2:
            await trio.sleep(0.02)
    got: dict[bytes, int] = {}
    nursery.start_soon(consume, b, got)
    now = time.time()
    for i in range(200):  # ~13 MB: more than the frozen peer's socket buffers hold
        assert (await hub.post(Envelope(int(now) + 60, 60, TOPIC, b"BG" + i.to_bytes(4, "big") + os.urandom(65_000),
                                        0))).accepted
    await trio.sleep(1.0)  # a few ticks: the hub is now blocked writing to the frozen peer
    for i in range(50):
        assert (await hub.post(envelope(b"SM", i, time.time()))).accepted
    with trio.fail_after(30):
        while got.get(b"SM", 0) < 50:
            await trio.sleep(0.05)
    assert got[b"BG"] == 200
    assert len(hub.peers()) == 2
    await stuck.aclose()


async def limited_hub_and_sender(nursery: trio.Nursery,
                                 **limits: object) -> tuple[V1Node, V1Node, dict[bytes, int]]:
    """A hub that enforces and advertises ``limits``, a node dialled to it, and the hub's arrivals."""
    hub = await start(nursery, **limits)
    a = await start(nursery, static_nodes=(hub.enode,))
    with trio.fail_after(15):
        while not hub.peers() or not a.peers():
            await trio.sleep(0.02)
    got: dict[bytes, int] = {}
    nursery.start_soon(consume, hub, got)
    return hub, a, got


async def test_a_busy_bridge_paces_to_status_go_like_limits(nursery: trio.Nursery) -> None:
    # The hub enforces status-go's per-peer defaults (5 packets/s, 1 MiB/s) and advertises them;
    # a bridge posting 250 envelopes/s with a 50 ms tick would send 20 packets/s unpaced.
    hub, a, got = await limited_hub_and_sender(nursery, rate_limit_packets=5, rate_limit_bytes=1 << 20)
    n = 600
    await post_at_rate(a, b"A0", n)
    with trio.fail_after(30):
        while got.get(b"A0", 0) < n:
            await trio.sleep(0.05)
    assert total(hub, "waku_v1_rate_limits_exceeded_total") == 0
    assert labelled(hub, "waku_v1_peer_disconnects_total") == {}
    assert len(hub.peers()) == 1


async def test_sending_is_paced_to_the_bytes_per_s_a_peer_advertised(nursery: trio.Nursery) -> None:
    # status-go's option 6 (bytes/s): 60 envelopes of ~210 B are 12.6 kB; at 4 kB/s (3.6 kB/s with
    # our margin) they cannot leave in one packet, and all of them must still arrive.
    hub, a, got = await limited_hub_and_sender(nursery, rate_limit_bytes=4000)
    now = time.time()
    for i in range(60):
        assert (await a.post(envelope(b"BY", i, now))).accepted
    with trio.fail_after(30):
        while got.get(b"BY", 0) < 60:
            await trio.sleep(0.05)
    packets = hub.metrics.registry.get_sample_value("waku_v1_packets_total", {"code": "messages"}) or 0
    assert packets >= 4  # 12.6 kB at <= 3.6 kB per second of burst: at least four packets
    assert total(hub, "waku_v1_rate_limits_exceeded_total") == 0 and total(a, "waku_v1_send_expired_total") == 0


JS_KEY = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291"


async def test_hub_bridge_and_ethereumjs_under_load_stay_connected(nursery: trio.Nursery) -> None:
    # The drill topology's v1 half: @ethereumjs/devp2p <-> our hub <-> a bridge-side node, all
    # three originating >= 250 envelopes/s, our Pings every 20 ms (ethereumjs answers each).
    js = await JsPeer.start(nursery, "devp2p", "peer.mjs")
    try:
        enode = (await js.request("start", privateKey=JS_KEY, port=free_port(), pow=0))["enode"]
        hub = await start(nursery, static_nodes=(enode,))
        a = await start(nursery, static_nodes=(hub.enode,))
        js_peer = (await js.wait_event("peer_added", timeout=20))[0]["peer"]
        with trio.fail_after(15):
            while len(hub.peers()) < 2 or not a.peers():
                await trio.sleep(0.02)
        nodes = {b"H0": hub, b"A0": a}
        n = int(RATE * SECONDS)

        async def js_posts() -> None:
            t0 = trio.current_time()
            for i in range(0, n, 25):  # Messages packets of 25, 10 a second
                batch = [envelope(b"J0", k, time.time()) for k in range(i, min(n, i + 25))]
                await js.request("send", peer=js_peer, code=1, hex=encode_messages(batch).hex())
                await trio.sleep_until(t0 + (i + 25) / RATE)

        def js_got(tag: bytes) -> int:
            return sum(1 for e in js.events if e.get("event") == "envelope"
                       and rlp.decode(bytes.fromhex(e["hex"]))[3][:2] == tag)

        def all_arrived(got: Arrivals) -> bool:  # each of ours has the other two origins', and so has js
            return (all(got[me].get(tag, 0) >= n for me in nodes for tag in (b"J0", *nodes) if tag != me)
                    and js_got(b"H0") >= n and js_got(b"A0") >= n)

        await load_until(nodes, n, all_arrived, also=js_posts)
        assert js_got(b"H0") == n and js_got(b"A0") == n and js_got(b"J0") == 0
        assert [e for e in js.events if e.get("event") in ("peer_removed", "error")] == []
        for tag, node in nodes.items():
            assert labelled(node, "waku_v1_peer_disconnects_total") == {}, tag
            assert labelled(node, "waku_v1_peer_lost_total") == {}, tag
            assert labelled(node, "rlpx_protocol_errors_total") == {}, tag
        # its goodbye (sent uncompressed by ethereumjs) is the peer leaving, not a breach
        await js.request("disconnect", peer=js_peer, reason=int(DisconnectReason.CLIENT_QUITTING))
        with trio.fail_after(10):
            while not labelled(hub, "waku_v1_peer_lost_total"):
                await trio.sleep(0.05)
        assert labelled(hub, "waku_v1_peer_lost_total") == {"reason=client_quitting": 1}
        assert labelled(hub, "waku_v1_peer_disconnects_total") == {}
    finally:
        await js.aclose()
