"""End to end with the Go implementations a Status deployment runs, and a takeover under load.

status-go v1 network (two `waku` nodes, status-go v1.1.0) <-> `waku-bridge --peer-id A` and its
standby B (SQLite lease) <-> go-waku v2 network (two v0.10.0 nodes on Status's shard
``/waku/2/rs/16/32``).  Both directions carry 100 msg/s; A is SIGKILLed midway and B takes over.
What counts is what the Go peers themselves report (their ``envelope`` and ``message`` events):
every message reaches every receiver on the far side exactly once (one hash), nothing comes back
to its own side as other bytes (an echo), and the topic mapping shows on both sides
(v1 topic ``0x1a2b3c4d`` <-> content topic ``/waku/1/0x1a2b3c4d/rfc26``).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.bridgeproc import BridgeProc
from tests.helpers.jsproc import GoPeer, JsPeer

pytestmark = pytest.mark.interop

log = logging.getLogger(__name__)

TOPIC_V1 = "1a2b3c4d"
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/16/32"
V1_TTL = 20
RATE = 100.0  # messages per second, each way
SECONDS = 20.0
KILL_AT = 8.0  # s into the traffic


class GoLedger:
    """marker -> hashes seen, per Go receiver; what each side originated."""

    def __init__(self) -> None:
        self.run = os.urandom(3).hex()
        self.n = 0
        self.sent: dict[str, dict[str, str]] = {"v1": {}, "v2": {}}  # side -> marker -> original hash
        self.got: dict[str, dict[str, set[str]]] = {}

    def marker(self, side: str) -> str:
        self.n += 1
        return f"e2e {side} {self.run} {self.n}|"

    def record(self, receiver: str, data: bytes, h: str) -> None:
        i = data.find(b"e2e v")
        j = data.find(b"|", i)
        if i >= 0 and j > i:
            self.got.setdefault(receiver, {}).setdefault(data[i:j + 1].decode(), set()).add(h)

    def missing(self, side: str, receivers: tuple[str, ...]) -> dict[str, int]:
        return {r: sum(m not in self.got.get(r, {}) for m in self.sent[side]) for r in receivers}

    def problems(self, v1_receivers: tuple[str, ...], v2_receivers: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for side, far, near in (("v1", v2_receivers, v1_receivers), ("v2", v1_receivers, v2_receivers)):
            for r in far:
                lost = [m for m in self.sent[side] if m not in self.got.get(r, {})]
                doubled = [m for m in self.sent[side] if len(self.got.get(r, {}).get(m, ())) > 1]
                if lost:
                    out.append(f"{r}: {len(lost)} of {len(self.sent[side])} {side}-originated lost, e.g. {lost[:3]}")
                if doubled:
                    out.append(f"{r}: {len(doubled)} {side}-originated arrived as two messages, e.g. {doubled[:3]}")
            for r in near:  # anything but the original itself on its own side is an echo
                echoed = [m for m, h in self.sent[side].items() if self.got.get(r, {}).get(m, {h}) - {h}]
                if echoed:
                    out.append(f"{r}: {len(echoed)} {side}-originated came back as other bytes, e.g. {echoed[:3]}")
        return out


async def start_go(nursery: trio.Nursery, module: str, *args: str) -> tuple[JsPeer, dict[str, Any]]:
    peer = await GoPeer.start_go(nursery, module, list(args))
    return peer, (await peer.wait_event("ready", timeout=90))[0]


async def collect(ledger: GoLedger, name: str, peer: JsPeer, kind: str) -> None:
    pos = 0
    while True:
        await trio.sleep(0.1)
        evs = peer._events  # appended by the reader task; read incrementally
        for e in evs[pos:]:
            if e.get("event") != kind:
                continue
            if kind == "envelope":
                assert e["topic"] == TOPIC_V1, e
                ledger.record(name, bytes.fromhex(e["data"]), e["hash"])
            elif e.get("via") == "relay":
                assert e["content_topic"] == CONTENT and e["pubsub_topic"] == PUBSUB, e
                ledger.record(name, bytes.fromhex(e["payload"]), e["hash"])
        pos = len(evs)


async def one_active(bridges: list[BridgeProc], timeout: float = 60.0) -> BridgeProc:
    with trio.fail_after(timeout):
        while True:
            sts = [await trio.to_thread.run_sync(b.status) for b in bridges]
            act = [b for b, s in zip(bridges, sts, strict=True) if s and s["role"] == "active"]
            if len(act) == 1 and all(s is not None for s in sts):
                return act[0]
            await trio.sleep(0.1)


async def post_v1(ledger: GoLedger, sg: JsPeer) -> None:
    t0 = trio.current_time()
    for k in range(int(SECONDS * RATE)):
        m = ledger.marker("v1")
        data = (m.encode() + os.urandom(16)).hex()
        r = await sg.request("post", topic=TOPIC_V1, data=data, ttl=V1_TTL, pow=0.003)
        ledger.sent["v1"][m] = r["hash"]
        await trio.sleep_until(t0 + (k + 1) / RATE)


async def publish_v2(ledger: GoLedger, gw: JsPeer) -> None:
    t0 = trio.current_time()
    for k in range(int(SECONDS * RATE)):
        m = ledger.marker("v2")
        payload = (m.encode() + os.urandom(12)).hex()
        r = await gw.request("publish", pubsub_topic=PUBSUB, content_topic=CONTENT, payload=payload,
                             timestamp=time.time_ns())
        ledger.sent["v2"][m] = r["hash"]
        await trio.sleep_until(t0 + (k + 1) / RATE)


async def test_statusgo_bridge_pair_gowaku_with_sigkill(nursery: trio.Nursery, tmp_path: Path) -> None:
    ledger = GoLedger()
    sg1, r1 = await start_go(nursery, "wakuv1", "-port", "0", "-pow", "0.002")
    sg2, r2 = await start_go(nursery, "wakuv1", "-port", "0", "-pow", "0.002")
    await sg2.request("connect", enode=r1["enode"])
    await sg2.wait_event("peer_add", timeout=30)
    # Each go-waku node on its own loopback address (go-waku admits 5 inbound connections per IP).
    gw1, g1 = await start_go(nursery, "wakuv2", "-host", "127.0.0.2", "-cluster-id", "16", "-shards", "32")
    gw2, g2 = await start_go(nursery, "wakuv2", "-host", "127.0.0.3", "-cluster-id", "16", "-shards", "32")
    for gw in (gw1, gw2):
        await gw.request("subscribe", pubsub_topic=PUBSUB, content_topics=[CONTENT])
    g1_addr = next(a for a in g1["multiaddrs"] if "/ws" not in a)
    g2_addr = next(a for a in g2["multiaddrs"] if "/ws" not in a)
    await gw2.request("connect", multiaddr=g1_addr)

    bridges = [BridgeProc(n, tmp_path, [r1["enode"], r2["enode"]], [g1_addr, g2_addr],
                          failover=f"sqlite:{tmp_path / 'failover.sqlite3'}", failover_ttl=3.0,
                          # go-waku v0.10.0 serves no store v3, so each bridge's own archive
                          # (--store) is the sink history its takeover asks (docs/failover.md)
                          extra=["--cluster-id", "16", "--shard", "32", "--num-shards-in-network", "0",
                                 "--bridge-pubsub-topic", PUBSUB, "--store"])
               for n in ("A", "B")]
    try:
        async with trio.open_nursery() as n:
            for b in bridges:
                n.start_soon(trio.to_thread.run_sync, b.start)
        for b in bridges:
            await trio.to_thread.run_sync(
                b.wait_status, lambda s: s["peers"]["v1"] >= 2 and s["peers"]["v2"] >= 2, 60.0)
        active = await one_active(bridges)
        standby = next(b for b in bridges if b is not active)
        await trio.sleep(1.5)  # a gossipsub heartbeat or two: the bridges join the go-waku meshes

        for name, peer, kind in (("status-go 1", sg1, "envelope"), ("status-go 2", sg2, "envelope"),
                                 ("go-waku 1", gw1, "message"), ("go-waku 2", gw2, "message")):
            nursery.start_soon(collect, ledger, name, peer, kind)

        async def kill_active() -> None:
            await trio.sleep(KILL_AT)
            await trio.to_thread.run_sync(active.kill, signal.SIGKILL)

        async with trio.open_nursery() as n:
            n.start_soon(post_v1, ledger, sg1)
            n.start_soon(publish_v2, ledger, gw1)
            n.start_soon(kill_active)
        status = await trio.to_thread.run_sync(standby.wait_status, lambda s: s["role"] == "active", 60.0)
        assert status["peers"]["v1"] >= 2 and status["peers"]["v2"] >= 2

        v1_rx, v2_rx = ("status-go 1", "status-go 2"), ("go-waku 1", "go-waku 2")
        with trio.move_on_after(60):
            while any(ledger.missing("v1", v2_rx).values()) or any(ledger.missing("v2", v1_rx).values()):
                await trio.sleep(0.2)
        await trio.sleep(2.0)  # a duplicate or an echo would show up by now
        assert len(ledger.sent["v1"]) == len(ledger.sent["v2"]) == int(SECONDS * RATE)
        problems = ledger.problems(v1_rx, v2_rx)
        log.info("markers per receiver: %s", {r: len(g) for r, g in ledger.got.items()})
        assert not problems, "\n".join(problems) + "\n--- standby log\n" + standby.log_tail(3000)
    finally:
        with trio.CancelScope(shield=True):
            for b in bridges:
                await trio.to_thread.run_sync(b.kill, signal.SIGTERM)
            for p in (sg1, sg2, gw1, gw2):
                await p.aclose()
