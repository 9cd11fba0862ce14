"""Two bridge processes between a v1 network and a v2 network of our own nodes.

Both forward at once: every receiver on each side sees each message exactly once (translation is
deterministic, so the networks' own dedup absorbs the second copy).  Then kill -9 of a bridge and
a restart: what v1 peers re-send from their pools is not bridged again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.bridgeproc import BridgeProc
from tests.helpers.envelopes import mined_envelope
from tests.helpers.net import free_ports
from tests.helpers.wait import wait_until
from v1.node import V1Node, V1NodeConfig
from v2.core.message import WakuMessage
from v2.node import V2Node, V2NodeConfig

CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/0/0"


async def test_two_active_bridges_each_receiver_sees_each_message_once(nursery: trio.Nursery,
                                                                      tmp_path: Path) -> None:
    v1a = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, forward_interval=0.1), CollectorRegistry())
    await nursery.start(v1a.run)
    v1b = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, forward_interval=0.1,
                              static_nodes=(v1a.enode,)), CollectorRegistry())
    await nursery.start(v1b.run)
    tcp_a, ws_a, tcp_b, ws_b = free_ports(4)
    v2a = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp_a, True, ws_a), CollectorRegistry())
    await nursery.start(v2a.run)
    v2b = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp_b, True, ws_b,
                              staticnodes=(v2a.listen_addrs[0],)), CollectorRegistry())
    await nursery.start(v2b.run)
    v1_got: dict[bytes, int] = {}
    v2_got: dict[bytes, int] = {}
    seen_msgs: list[WakuMessage] = []

    async def collect_v1() -> None:
        async for rec in v1b.inbound():
            v1_got[rec.envelope.hash] = v1_got.get(rec.envelope.hash, 0) + 1

    async def collect_v2() -> None:
        async for m in v2b.messages():
            v2_got[m.hash] = v2_got.get(m.hash, 0) + 1
            seen_msgs.append(m.message)

    async def drain(ch) -> None:  # type: ignore[no-untyped-def]
        async for _ in ch:
            pass

    nursery.start_soon(collect_v1)
    nursery.start_soon(collect_v2)
    nursery.start_soon(drain, v1a.inbound())
    nursery.start_soon(drain, v2a.messages())
    bridges = [BridgeProc(n, tmp_path / n, [v1a.enode], [v2a.listen_addrs[0]], failover=None) for n in ("A", "B")]
    try:
        for b in bridges:
            await trio.to_thread.run_sync(b.start)
        for b in bridges:
            await wait_until(lambda b=b: (b.status() or {}).get("peers") == {"v1": 1, "v2": 1})
        await wait_until(lambda: len(v2a.relay.mesh_peers(PUBSUB)) >= 3)  # v2b, A and B all in the mesh
        await trio.sleep(1.5)  # meshes settle (heartbeat 1 s)
        n = 20
        envs = [mined_envelope(b"v1 message %d " % i + os.urandom(4), ttl=60) for i in range(n)]
        for e in envs:
            assert (await v1a.post(e)).accepted
        msgs = [WakuMessage(b"v2 message %d " % i + os.urandom(4), CONTENT, version=1, timestamp=time.time_ns())
                for i in range(n)]
        for m in msgs:
            await v2a.publish(PUBSUB, m)
        await wait_until(lambda: len(v2_got) >= 2 * n and len(v1_got) >= 2 * n, 60)
        await trio.sleep(2)  # any duplicate or echo would have arrived by now
        # v2 receiver: the 20 originals relayed by v2a + the 20 bridged v1 messages, each exactly once
        # (both bridges published identical bytes; nothing came back as an echo)
        assert len(v2_got) == 2 * n and set(v2_got.values()) == {1}, [
            (m.payload[:20], m.timestamp) for m in seen_msgs]
        # v1 receiver: the 20 originals forwarded by v1a + 20 bridged envelopes, each exactly once
        assert len(v1_got) == 2 * n and set(v1_got.values()) == {1}
        sa, sb = bridges[0].status(timeout=5), bridges[1].status(timeout=5)
        assert sa is not None and sb is not None
        assert sa["transfers"]["v1_to_v2"] == sb["transfers"]["v1_to_v2"] == n  # both forwarded all

        # kill -9 of A, restart: v1a re-offers its pool to the new session; nothing is bridged again
        await trio.to_thread.run_sync(bridges[0].kill, signal.SIGKILL)
        before = dict(v2_got)
        await trio.to_thread.run_sync(bridges[0].start)
        await wait_until(lambda: ((bridges[0].status() or {}).get("peers") or {}).get("v1") == 1)
        await trio.sleep(3)
        st = bridges[0].status(timeout=5)
        assert st is not None
        assert st["transfers"]["v1_to_v2"] == 0 and st["dedup_size"] >= 2 * n
        assert v2_got == before
    finally:
        for b in bridges:
            await trio.to_thread.run_sync(b.kill, signal.SIGTERM)
