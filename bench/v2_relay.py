"""Waku relay throughput between two processes on loopback: our node vs stock py-libp2p gossipsub.

``python -m bench v2_relay``.  Each run starts a receiver process and a sender process; the sender
dials the receiver over TCP (noise + yamux), waits until the receiver is in its mesh, then
publishes N messages as fast as publish returns (our relay applies Q1 back-pressure; stock
py-libp2p does not and drops on its 32-RPC queue).  The receiver reports how many distinct
messages arrived and when; msg/s = received / (last arrival - first publish).  Each payload
carries its send time, so the receiver also reports latency (meaningful in the paced runs; in the
unthrottled ones it is queueing time).

"stock" is py-libp2p 0.8.1's GossipSub + Pubsub with its defaults (signing on, from+seqno message
ids, 120 s heartbeat, the 10 msg/s per-peer spam limiter, the 32-slot subscription channel) and
only the mesh degrees it requires (6/4/12), on ``/meshsub/1.1.0``.  It is here for comparison
only, so this module (outside the v2 package) builds it from libp2p directly.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trio

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "/waku/2/rs/0/0"
CONTENT = "/bench/1/relay/proto"
# (impl, payload bytes, messages, publish rate per second or 0 = as fast as publish returns)
RUNS = [("ours", 300, 5000, 0), ("ours", 10 * 1024, 2000, 0), ("stock", 300, 2000, 0), ("stock", 10 * 1024, 1000, 0),
        ("ours", 300, 1000, 200), ("stock", 300, 50, 5)]
IDLE_END = 5.0  # the receiver reports once nothing arrived for this long
RUN_TIMEOUT = 90.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the two node flavours -------------------------------------------------------------------

class _Ours:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        from v2.node import V2Node, V2NodeConfig

        cfg = V2NodeConfig(secrets.token_bytes(32), "127.0.0.1", _free_port(), websocket_support=False,
                           peer_exchange=False)
        self.node = V2Node(cfg, CollectorRegistry())

    async def start(self, nursery: trio.Nursery) -> str:
        await nursery.start(self.node.run)
        return self.node.listen_addrs[0]

    async def connect(self, addr: str) -> None:
        await self.node.host.connect(addr)

    def meshed(self) -> bool:
        return bool(self.node.relay.mesh_peers(TOPIC))

    async def publish(self, data: bytes) -> None:
        from v2.core.message import WakuMessage

        await self.node.publish(TOPIC, WakuMessage(data, CONTENT, version=0, timestamp=time.time_ns()))

    async def received(self, on_msg: Any) -> None:
        async for m in self.node.messages():
            on_msg(m.message.payload)


class _Stock:
    def __init__(self) -> None:
        import multiaddr
        from libp2p import new_host
        from libp2p.crypto.secp256k1 import create_new_key_pair
        from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
        from libp2p.pubsub.pubsub import Pubsub

        self._addrs = [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{_free_port()}")]
        self.host = new_host(key_pair=create_new_key_pair(secrets.token_bytes(32)), listen_addrs=self._addrs)
        self.router = GossipSub(protocols=[PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12)
        self.pubsub = Pubsub(self.host, self.router)
        self.sub: Any = None

    async def start(self, nursery: trio.Nursery) -> str:
        from libp2p.tools.anyio_service import background_trio_service

        ready = trio.Event()

        async def serve() -> None:
            async with self.host.run(listen_addrs=self._addrs), background_trio_service(self.pubsub), \
                    background_trio_service(self.router):
                await self.pubsub.wait_until_ready()
                self.sub = await self.pubsub.subscribe(TOPIC)
                ready.set()
                await trio.sleep_forever()

        nursery.start_soon(serve)
        await ready.wait()
        return f"{self._addrs[0]}/p2p/{self.host.get_id()}"

    async def connect(self, addr: str) -> None:
        import multiaddr
        from libp2p.peer.peerinfo import info_from_p2p_addr

        await self.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))

    def meshed(self) -> bool:
        return bool(self.router.mesh.get(TOPIC))

    async def publish(self, data: bytes) -> None:
        await self.pubsub.publish(TOPIC, data)

    async def received(self, on_msg: Any) -> None:
        while True:
            msg = await self.sub.get()
            on_msg(bytes(msg.data))


# -- the worker processes --------------------------------------------------------------------

async def _receiver(impl: str, n: int) -> None:
    node: _Ours | _Stock = _Ours() if impl == "ours" else _Stock()
    seen: set[bytes] = set()
    times: list[float] = []
    latencies: list[float] = []

    def on_msg(payload: bytes) -> None:
        key = payload[:8]
        if key not in seen:
            seen.add(key)
            times.append(time.time())
            latencies.append(time.time_ns() / 1e6 - int.from_bytes(payload[8:16], "big") / 1e6)

    async with trio.open_nursery() as nursery:
        _emit({"addr": await node.start(nursery)})
        nursery.start_soon(node.received, on_msg)
        with trio.move_on_after(RUN_TIMEOUT):
            while len(seen) < n:
                last = len(seen)
                await trio.sleep(IDLE_END if not seen else 0.5)
                if seen and len(seen) == last and time.time() - times[-1] > IDLE_END:
                    break
        lat = sorted(latencies)
        _emit({"received": len(seen), "first": times[0] if times else None, "last": times[-1] if times else None,
               "rss_mib": round(_rss_mib(), 1),
               "p50_ms": round(lat[len(lat) // 2], 2) if lat else None,
               "p99_ms": round(lat[min(len(lat) - 1, len(lat) * 99 // 100)], 2) if lat else None})
        nursery.cancel_scope.cancel()


async def _sender(impl: str, n: int, size: int, rate: float, addr: str) -> None:
    node: _Ours | _Stock = _Ours() if impl == "ours" else _Stock()
    async with trio.open_nursery() as nursery:
        await node.start(nursery)
        await node.connect(addr)
        with trio.fail_after(30):
            while not node.meshed():  # noqa: ASYNC110 (the router has no mesh event)
                await trio.sleep(0.05)
        await trio.sleep(0.5)  # let the receiver's side of the mesh settle too
        fillers = [os.urandom(size - 16) for _ in range(n)]
        t0 = time.time()
        for i, filler in enumerate(fillers):
            if rate:
                await trio.sleep_until(trio.current_time() + max(0.0, t0 + i / rate - time.time()))
            # seq ‖ send time (ns) ‖ filler: distinct payloads, and the latency without a shared clock API
            await node.publish(i.to_bytes(8, "big") + time.time_ns().to_bytes(8, "big") + filler)
        t1 = time.time()
        _emit({"t0": t0, "t1": t1, "cpu_s": round(time.process_time(), 2)})
        await trio.to_thread.run_sync(sys.stdin.read)  # stay up until the run is over
        nursery.cancel_scope.cancel()


def _run(impl: str, size: int, n: int, rate: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench.v2_relay"]
    recv = subprocess.Popen([*cmd, "_receiver", impl, str(n)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=ROOT, env=env)
    send = None
    try:
        assert recv.stdout is not None
        addr = json.loads(recv.stdout.readline())["addr"]
        send = subprocess.Popen([*cmd, "_sender", impl, str(n), str(size), str(rate), addr], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
        assert send.stdout is not None
        sent = json.loads(send.stdout.readline())
        got = json.loads(recv.stdout.readline())
    finally:
        for p in (send, recv):
            if p is not None:
                if p.stdin is not None:
                    p.stdin.close()
                p.terminate()
                p.wait(10)
    span = (got["last"] - sent["t0"]) if got["last"] else None
    return {"impl": impl, "payload_bytes": size, "rate": rate or "max", "sent": n, "received": got["received"],
            "publish_msg_s": round(n / (sent["t1"] - sent["t0"]), 1),
            "delivered_msg_s": round(got["received"] / span, 1) if span else 0.0,
            "latency_p50_ms": got["p50_ms"], "latency_p99_ms": got["p99_ms"],
            "sender_cpu_s": sent["cpu_s"], "receiver_rss_mib": got["rss_mib"]}


def main() -> Iterable[dict[str, Any]]:
    for impl, size, n, rate in RUNS:
        yield _run(impl, size, n, rate)


if __name__ == "__main__":
    import sys as _sys

    from bench import help_or_continue

    help_or_continue("bench.v2_relay", __doc__, _sys.argv[1:], '')
    if len(sys.argv) > 1 and sys.argv[1] == "_receiver":
        trio.run(_receiver, sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_sender":
        trio.run(_sender, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        for r in main():
            _emit(r)
