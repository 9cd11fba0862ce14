"""Envelopes per second through one Waku v1 node (receive -> validate -> pool -> forward).

Three real processes' worth of roles on loopback in one trio loop: a sender connected over RLPx
pushes pre-mined 300 B envelopes in Messages packets of 50; the node under test validates
(expiry, size, PoW 0.002, bloom), pools and forwards them on its 300 ms tick to a receiver, which
counts them.  The figure is envelopes delivered to the receiver per second of wall time.

``_mesh`` is the drill topology's v1 half under load: a hub and two bridge-side nodes, each
posting ``rate`` envelopes/s for a while, so every link carries traffic both ways while keepalive
Pings (every 20 ms in the stress run) interleave with Messages batches.  It reports delivered
envelopes/s, post-to-arrival latency and every session that ended (there must be none).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from v1.node import WAKU, V1Node, V1NodeConfig
from v1.rlpx.keys import NodeKey
from v1.rlpx.session import HelloParams
from v1.rlpx.transport import Timeouts, rlpx_connect
from v1.waku.envelope import Envelope
from v1.waku.messages import WakuCode, decode_messages, encode_messages
from v1.waku.pow import mine_smallest_nonce
from v1.waku.status import StatusOptions, encode_status


def _envelopes(n: int, size: int) -> list[Envelope]:
    expiry = int(time.time()) + 120
    out = []
    for _ in range(n):
        data = os.urandom(size)
        nonce = mine_smallest_nonce(expiry, 120, b"\x1a\x2b\x3c\x4d", data, 0.002)
        assert nonce is not None
        out.append(Envelope(expiry, 120, b"\x1a\x2b\x3c\x4d", data, nonce))
    return out


async def _run(n: int, size: int, batch: int) -> dict[str, Any]:
    envs = _envelopes(n, size)
    node = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, pool_capacity=n + 10,
                               inbound_capacity=n + 10), CollectorRegistry())
    hello = HelloParams("bench", (WAKU,))
    status = encode_status(StatusOptions(pow_requirement=0.0))
    received = 0
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)

        async def drain() -> None:  # the bridge would consume these; here we just empty the channel
            async for _ in node.inbound():
                pass

        nursery.start_soon(drain)
        async with rlpx_connect(node.enode, NodeKey.generate(), hello) as rx, \
                rlpx_connect(node.enode, NodeKey.generate(), hello) as tx:
            for c in (rx, tx):
                await c.send(WakuCode.STATUS, status)
                await c.receive()

            async def count() -> None:
                nonlocal received
                while received < n:
                    code, data = await rx.receive()
                    if code == WakuCode.MESSAGES:
                        received += len(decode_messages(data))
                done.set()

            nursery.start_soon(count)
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                await tx.send(WakuCode.MESSAGES, encode_messages(envs[i:i + batch]))
            with trio.fail_after(300):
                await done.wait()
            elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return {"envelopes": n, "payload": size, "batch": batch, "seconds": round(elapsed, 2),
            "envelopes_per_s": round(n / elapsed)}


async def _mesh(rate: int, seconds: float, ping_interval: float) -> dict[str, Any]:
    timeouts = Timeouts(ping_interval=ping_interval)

    def config(**kw: Any) -> V1NodeConfig:
        return V1NodeConfig(listen_address="127.0.0.1", port=0, pow_requirement=0.0, forward_interval=0.1,
                            pool_capacity=50_000, timeouts=timeouts, **kw)

    n = int(rate * seconds)
    latencies: list[float] = []
    delivered = 0
    async with trio.open_nursery() as nursery:
        hub = V1Node(config(), CollectorRegistry())
        await nursery.start(hub.run)
        sides = [V1Node(config(static_nodes=(hub.enode,)), CollectorRegistry()) for _ in range(2)]
        for node in sides:
            await nursery.start(node.run)
        nodes = [hub, *sides]
        with trio.fail_after(20):
            # the node exposes no connection event: poll (setup only, not measured)
            while len(hub.peers()) < 2 or not all(node.peers() for node in sides):  # noqa: ASYNC110
                await trio.sleep(0.02)

        everything = trio.Event()

        async def consume(node: V1Node) -> None:
            nonlocal delivered
            async for rec in node.inbound():
                latencies.append(time.time() - struct.unpack(">d", rec.envelope.data[:8])[0])
                delivered += 1
                if delivered == 2 * len(nodes) * n:  # every envelope reached the two other nodes
                    everything.set()

        async def post(node: V1Node) -> None:
            t0 = trio.current_time()
            for i in range(n):
                now = time.time()
                data = struct.pack(">d", now) + os.urandom(292)
                await node.post(Envelope(int(now) + 60, 60, b"\x1a\x2b\x3c\x4d", data, 0))
                if i % 10 == 9:
                    await trio.sleep_until(t0 + (i + 1) / rate)

        t0 = time.perf_counter()
        for node in nodes:
            nursery.start_soon(consume, node)
        async with trio.open_nursery() as posters:
            for node in nodes:
                posters.start_soon(post, node)
        with trio.fail_after(120):
            await everything.wait()
        elapsed = time.perf_counter() - t0
        ended: dict[str, float] = {}
        for node in nodes:
            for fam in node.metrics.registry.collect():
                for smp in fam.samples:
                    if smp.name in ("waku_v1_peer_disconnects_total", "waku_v1_peer_lost_total") and smp.value:
                        key = f"{smp.name}{{{smp.labels['reason']}}}"
                        ended[key] = ended.get(key, 0) + smp.value
        nursery.cancel_scope.cancel()
    latencies.sort()
    return {"mesh": "hub + 2", "posted_per_node_per_s": rate, "seconds": round(elapsed, 2),
            "ping_interval": ping_interval, "delivered": delivered,
            "delivered_per_s": round(delivered / elapsed),
            "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "latency_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
            "sessions_ended": ended}


def _pool_tick(peers: int, pool_size: int, new: int, ticks: int = 20) -> dict[str, Any]:
    """The forwarding work of one tick: ``new`` envelopes added, then every peer flushed, with a pool
    of ``pool_size`` that every peer already has (the steady state of a busy node)."""
    from v1.waku.pool import EnvelopePool, PeerFilter

    pool = EnvelopePool(capacity=pool_size + new * ticks + 1)
    names = [f"p{i}" for i in range(peers)]
    for p in names:
        pool.add_peer(p)
    wants = PeerFilter(pow_requirement=0)
    topic = b"\x1a\x2b\x3c\x4d"
    for i in range(pool_size):
        pool.add(Envelope(10_000, 10, topic, i.to_bytes(8, "big"), 0), 1000.0)
    for p in names:
        pool.pending_for(p, wants, 1000.0)
    t0 = time.perf_counter()
    for t in range(ticks):
        for j in range(new):
            pool.add(Envelope(10_000, 10, topic, (1 << 40 | t * new + j).to_bytes(8, "big"), 0), 1000.0)
        for p in names:
            pool.pending_for(p, wants, 1000.0)
    ms = (time.perf_counter() - t0) / ticks * 1000
    return {"case": "forwarding tick", "peers": peers, "pool": pool_size, "new_per_tick": new,
            "ms_per_tick": round(ms, 1)}


def _full_pool_add(capacity: int, adds: int = 500) -> dict[str, Any]:
    """An add into a full pool (overload): expire what is due, then evict the lowest PoW or refuse."""
    from v1.waku.pool import EnvelopePool

    pool = EnvelopePool(capacity=capacity)
    topic = b"\x1a\x2b\x3c\x4d"
    for i in range(capacity):
        pool.add(Envelope(10_000, 10, topic, i.to_bytes(8, "big"), 0), 1000.0)
    t0 = time.perf_counter()
    for j in range(adds):
        pool.add(Envelope(10_000, 10, topic, (1 << 40 | j).to_bytes(8, "big"), 1), 1000.0)
    return {"case": "add into a full pool", "capacity": capacity,
            "ms_per_add": round((time.perf_counter() - t0) / adds * 1000, 3)}


def main() -> Iterator[dict[str, Any]]:
    yield _pool_tick(50, 30_000, 100)
    yield _full_pool_add(32_768)
    yield trio.run(_run, 20_000, 300, 50)
    yield trio.run(_mesh, 250, 10.0, 15.0)
    yield trio.run(_mesh, 250, 10.0, 0.02)


if __name__ == "__main__":
    import sys as _sys

    from bench import help_or_continue

    help_or_continue("bench.v1_node", __doc__, _sys.argv[1:], '')
    for r in main():
        print(r)
