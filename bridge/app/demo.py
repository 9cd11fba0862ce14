"""``waku-bridge demo``: a local sandbox on loopback, nothing outside a temp dir.

Today it runs the Waku v1 half of the sandbox: a line of v1 nodes (A - B - C - D), traffic posted
at both ends at a rate that shifts over the run, a live view of rates and drops, and a summary
that checks every envelope arrived exactly once at the far end.  The v2 network and the two
bridges join it as the v2 node and the translator land (see README "Status").
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import trio
from prometheus_client import CollectorRegistry

__all__ = ["run_demo"]


async def _demo(duration: float, rate: float) -> int:
    from v1.node import V1Node, V1NodeConfig
    from v1.waku.envelope import Envelope
    from v1.waku.pow import mine_smallest_nonce

    def node(static: tuple[str, ...] = ()) -> V1Node:
        return V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, static_nodes=static,
                                   forward_interval=0.3), CollectorRegistry())

    sent: dict[str, set[bytes]] = {"A": set(), "D": set()}
    got: dict[str, dict[bytes, int]] = {"A": {}, "D": {}}
    async with trio.open_nursery() as nursery:
        d = node()
        await nursery.start(d.run)
        c = node((d.enode,))
        await nursery.start(c.run)
        b = node((c.enode,))
        await nursery.start(b.run)
        a = node((b.enode,))
        await nursery.start(a.run)
        print(f"v1 network: A {a.enode[:30]}... - B - C - D (4 nodes, loopback)")
        with trio.fail_after(20):
            while not (a.peers() and len(b.peers()) == 2 and len(c.peers()) == 2 and d.peers()):
                await trio.sleep(0.1)

        async def collect(name: str, n: V1Node) -> None:
            async for rec in n.inbound():
                got[name][rec.envelope.hash] = got[name].get(rec.envelope.hash, 0) + 1

        nursery.start_soon(collect, "A", a)
        nursery.start_soon(collect, "D", d)
        start = time.time()
        topic = bytes.fromhex("1a2b3c4d")
        i = 0
        next_view = start
        while (now := time.time()) - start < duration:
            share_d = (now - start) / duration  # the "new" side's share grows over the run
            origin, src = ("D", d) if (i * 0.618) % 1.0 < share_d else ("A", a)
            data = f"demo message {i} from {origin}".encode() + os.urandom(8)
            expiry = int(now) + 30
            nonce = mine_smallest_nonce(expiry, 30, topic, data, 0.002)
            assert nonce is not None
            env = Envelope(expiry, 30, topic, data, nonce)
            if (await src.post(env)).accepted:
                sent[origin].add(env.hash)
            i += 1
            if now >= next_view:
                print(f"t={now - start:5.1f}s sent A:{len(sent['A']):4d} D:{len(sent['D']):4d}  "
                      f"share from D {share_d:4.0%}  received at D:{len(got['D']):4d} at A:{len(got['A']):4d}")
                next_view = now + 2
            await trio.sleep(1 / rate)
        with trio.move_on_after(5):
            while len(got["D"]) < len(sent["A"]) or len(got["A"]) < len(sent["D"]):
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    ok = (set(got["D"]) == sent["A"] and set(got["A"]) == sent["D"]
          and all(v == 1 for v in got["D"].values()) and all(v == 1 for v in got["A"].values()))
    print(f"\nsummary: {len(sent['A'])} envelopes A->D, {len(sent['D'])} D->A; "
          f"{'every envelope delivered exactly once' if ok else 'MISMATCH: some envelope lost or doubled'}")
    return 0 if ok else 1


def run_demo(duration: float = 40.0, rate: float = 10.0, failover: bool = True) -> int:
    with tempfile.TemporaryDirectory(prefix="waku-bridge-demo-"):
        print("waku-bridge demo (v1 half of the sandbox; the v2 network and bridges are not built yet)",
              file=sys.stderr)
        return trio.run(_demo, duration, rate)
