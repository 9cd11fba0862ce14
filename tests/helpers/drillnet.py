"""The drill network: third-party peers on both sides, two bridge processes, and the ledger of traffic.

v1: @ethereumjs/devp2p waku/1 peer (originates on v1, receives) <-> our v1 hub (forwards, receives)
    <-> bridges A and B.   v2: js-waku relay node (originates on v2, receives) <-> bridges A and B
    and our v2 witness (receives; mounts the store, as fleet store nodes do, and the bridges dial
    it: it is the sink history a bridge asks at takeover, specs/failover.md §7.5).

Every message carries a marker ``drill <side> <run> <n>|`` in its payload, so each receiver's
copies can be counted per message: *exactly once per receiver* means one arrival with one hash.
A second distinct hash for a marker would be an echo or a re-translation (different bytes);
identical bytes published twice are absorbed by the networks (v1 pools, gossipsub seen-cache),
which is the design (specs/failover.md §7.2) and is what the receivers would see in production.

With ``netns`` (tests/helpers/netns.py) every process has its own network namespace and address:
roles ``A`` and ``B`` (the bridges), ``v1`` (ethereumjs) and ``v2`` (js-waku); the in-process hub
and witness bind root-namespace addresses ``hub`` and ``witness`` on the same segment, so a cut
between a bridge and either is made in the bridge's namespace.  ``v2_route`` may put something in
the bridges' path to a v2 peer (it maps a multiaddr to the one the bridges dial).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from tests.helpers.bridgeproc import BridgeProc
from tests.helpers.jsproc import JsPeer, JsPeerError
from tests.helpers.net import LOOPBACK, free_ports
from tests.helpers.netns import NetNs
from v1.node import V1Node, V1NodeConfig
from v1.waku.envelope import Envelope
from v1.waku.messages import encode_messages
from v1.waku.pow import mine_smallest_nonce
from v2.node import V2Node, V2NodeConfig

__all__ = ["CONTENT", "PUBSUB", "DrillNet", "Ledger"]

JS_V1_KEY = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291"
TOPIC_V1 = bytes.fromhex("1a2b3c4d")
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/0/0"
V1_TTL = 20  # s, envelopes originated on v1
BRIDGE_TTL = 10  # s, the bridge's TTL for v2->v1 envelopes (--bridge-ttl default)
RECEIVERS = {"v1_to_v2": ("js-waku", "witness"), "v2_to_v1": ("ethereumjs", "hub")}


@dataclass(slots=True)
class Ledger:
    """What was originated on each side, and what each receiver got (marker -> hashes, first arrival)."""

    run: str = field(default_factory=lambda: os.urandom(3).hex())
    sent: dict[str, dict[str, float]] = field(default_factory=lambda: {"v1_to_v2": {}, "v2_to_v1": {}})
    v1_hash: dict[str, bytes] = field(default_factory=dict)  # v1 original's envelope hash, by marker
    got: dict[str, dict[str, set[bytes]]] = field(default_factory=lambda: {r: {} for rs in RECEIVERS.values()
                                                                           for r in rs})
    first: dict[str, dict[str, float]] = field(default_factory=lambda: {r: {} for rs in RECEIVERS.values()
                                                                        for r in rs})
    n: int = 0
    bridge_ttl: float = BRIDGE_TTL
    v1_ttl: float = V1_TTL

    def marker(self, side: str) -> bytes:
        self.n += 1
        return f"drill {side} {self.run} {self.n}|".encode()

    def record(self, receiver: str, data: bytes, h: bytes) -> None:
        i = data.find(b"drill v")
        if i < 0:
            return
        j = data.find(b"|", i)
        if j < 0:
            return
        m = data[i:j + 1].decode(errors="replace")
        self.got[receiver].setdefault(m, set()).add(h)
        self.first[receiver].setdefault(m, time.time())

    def delivered(self) -> bool:
        return all(m in self.got[r] for d, rs in RECEIVERS.items() for r in rs for m in self.sent[d])

    def problems(self) -> list[str]:
        """Lost, duplicated, late or echoed messages, per receiver (empty = exactly once everywhere)."""
        out: list[str] = []
        for d, rs in RECEIVERS.items():
            ttl = self.v1_ttl if d == "v1_to_v2" else self.bridge_ttl
            for r in rs:
                lost = [m for m in self.sent[d] if m not in self.got[r]]
                dup = [m for m in self.sent[d] if len(self.got[r].get(m, ())) > 1]
                late = [m for m in self.sent[d] if m in self.first[r] and self.first[r][m] - self.sent[d][m] > ttl]
                if lost:
                    out.append(f"{r}: {len(lost)} of {len(self.sent[d])} {d} lost, e.g. {lost[:3]}")
                if dup:
                    out.append(f"{r}: {len(dup)} {d} arrived as two different messages, e.g. {dup[:3]}")
                if late:
                    out.append(f"{r}: {len(late)} {d} arrived after their TTL")
        # echoes: a message coming back to its own side as different bytes (the hub re-offering the
        # original itself to ethereumjs after a reconnect is v1 behaviour, not an echo)
        for m in self.sent["v1_to_v2"]:
            if self.got["ethereumjs"].get(m, set()) - {self.v1_hash.get(m)} or len(self.got["hub"].get(m, ())) > 1:
                out.append(f"v1 message {m} echoed back to v1")
        for m in self.sent["v2_to_v1"]:
            if m in self.got["js-waku"] or len(self.got["witness"].get(m, ())) > 1:
                how = "js-waku got a copy" if m in self.got["js-waku"] else "the witness got two messages"
                out.append(f"v2 message {m} echoed back to v2 ({how}; sent at {self.sent['v2_to_v1'][m]:.3f},"
                           f" witness first at {self.first['witness'].get(m, 0):.3f})")
        return out

    def counts(self) -> dict[str, int]:
        return {d: len(s) for d, s in self.sent.items()}


class DrillNet:
    """Start with :meth:`start` inside a test's nursery; :meth:`aclose` in ``finally``."""

    def __init__(self, tmp: Path, failover: str, *, ttl: float = 3.0, bridge_ttl: int = BRIDGE_TTL,
                 netns: NetNs | None = None, extra: list[str] | None = None,
                 v2_route: Callable[[str], Awaitable[str]] | None = None, v1_ttl: int = V1_TTL) -> None:
        self.tmp = tmp
        self.netns = netns
        self.extra = extra or []
        self.v2_route = v2_route
        self.failover = failover
        self.ttl = ttl
        self.bridge_ttl = bridge_ttl
        self.ledger = Ledger(bridge_ttl=bridge_ttl, v1_ttl=v1_ttl)
        self.v1_ttl = v1_ttl
        self.bridges: list[BridgeProc] = []
        self.js_v1: JsPeer | None = None
        self.js_v2: JsPeer | None = None
        self._hub_peer = ""
        self._ev_pos = {"ethereumjs": 0, "js-waku": 0}
        self.v1_send_failures = 0

    @property
    def link_events(self) -> list[dict[str, Any]]:
        """The ethereumjs peer's connection changes (a dropped hub link explains send failures)."""
        assert self.js_v1 is not None
        return [e for e in self.js_v1.events if e.get("event") in ("peer_added", "peer_removed", "error")][1:]

    def host(self, role: str) -> str:
        """``role``'s address: its namespace's, or loopback without namespaces."""
        if self.netns is None:
            return LOOPBACK
        if role in self.netns.nodes or role in self.netns.root_addrs:
            return self.netns.addr(role)
        return self.netns.root_addr(role)

    def prefix(self, role: str) -> list[str]:
        return [] if self.netns is None else self.netns.prefix(role)

    async def start(self, nursery: trio.Nursery) -> None:
        if self.netns is not None:
            for role in ("A", "B", "v1", "v2"):
                if role not in self.netns.nodes:
                    self.netns.add(role)
        (v1_port,) = free_ports(1)
        self.js_v1 = await JsPeer.start(nursery, "devp2p", "peer.mjs", prefix=self.prefix("v1"))
        self.js_v2 = await JsPeer.start(nursery, "waku-relay", "relay.mjs", env={"NODE_ENV": "test"},
                                        node_args=["--import", "./polyfill.mjs"], prefix=self.prefix("v2"))
        enode = (await self.js_v1.request("start", privateKey=JS_V1_KEY, port=v1_port, pow=0.002,
                                          host=self.host("v1")))["enode"]
        v2 = await self.js_v2.request("start", pubsubTopic=PUBSUB, contentTopic=CONTENT, host=self.host("v2"))
        js_addr = v2["addrs"][0]
        self.hub = V1Node(V1NodeConfig(listen_address=self.host("hub"), port=0, static_nodes=(enode,),
                                       forward_interval=0.1, pool_capacity=20_000), CollectorRegistry())
        await nursery.start(self.hub.run)
        self._hub_peer = (await self.js_v1.wait_event("peer_added", timeout=20))[0]["peer"]
        tcp, ws = free_ports(2)
        self.witness = V2Node(V2NodeConfig(os.urandom(32), self.host("witness"), tcp, True, ws, staticnodes=(js_addr,),
                                           store=True, data_dir=self.tmp,
                                           store_message_db_url="sqlite://witness-store.sqlite3"),
                              CollectorRegistry())
        await nursery.start(self.witness.run)
        witness_addr = next(a for a in self.witness.listen_addrs if "/ws" not in a)
        nursery.start_soon(self._collect_hub)
        nursery.start_soon(self._collect_witness)
        nursery.start_soon(self._collect_js)
        v2_static = [js_addr, witness_addr]
        if self.v2_route is not None:
            v2_static = [await self.v2_route(a) for a in v2_static]
        self.bridges = [BridgeProc(n, self.tmp, [self.hub.enode], v2_static, failover=self.failover,
                                   failover_ttl=self.ttl, extra=["--bridge-ttl", str(self.bridge_ttl), *self.extra],
                                   host=self.host(n), prefix=self.prefix(n))
                        for n in ("A", "B")]
        if self.netns is not None:
            for b in self.bridges:
                self.netns.allow_control(b.name, b.ports[3])  # /status and /metrics through any cut
        async with trio.open_nursery() as n:
            for b in self.bridges:
                n.start_soon(trio.to_thread.run_sync, b.start)
        await self.settle()

    async def settle(self) -> None:
        """Every live bridge connected on both sides and in js-waku's mesh; exactly one active."""
        assert self.js_v2 is not None
        for b in self.bridges:
            await trio.to_thread.run_sync(b.wait_status, lambda s: s["peers"]["v1"] >= 1 and s["peers"]["v2"] >= 1)
        with trio.fail_after(30):
            while len((await self.js_v2.request("meshPeers"))["peers"]) < len(self.bridges) + 1:
                await trio.sleep(0.2)
        await self.one_active()
        await trio.sleep(1.2)  # a gossipsub heartbeat: meshes settle on every node

    async def one_active(self, timeout: float = 30.0) -> tuple[BridgeProc, dict[str, Any]]:
        with trio.fail_after(timeout):
            while True:
                sts = [await trio.to_thread.run_sync(b.status) for b in self.bridges]
                act = [(b, s) for b, s in zip(self.bridges, sts, strict=True) if s and s["role"] == "active"]
                if len(act) == 1 and all(s is not None for s in sts):
                    return act[0]
                await trio.sleep(0.1)

    async def wait_active(self, b: BridgeProc, timeout: float = 30.0) -> dict[str, Any]:
        with trio.move_on_after(timeout):
            while True:
                s = await trio.to_thread.run_sync(b.status, 1.0)
                if s is not None and s["role"] == "active":
                    return s
                await trio.sleep(0.05)
        raise AssertionError(f"{b.name} not active after {timeout} s; logs:\n"
                             + "\n".join(f"--- {x.name}\n{x.log_tail(3000)}" for x in self.bridges))

    # --- receivers ---

    async def _collect_hub(self) -> None:
        async for rec in self.hub.inbound():
            self.ledger.record("hub", rec.envelope.data, rec.envelope.hash)

    async def _collect_witness(self) -> None:
        async for m in self.witness.messages():
            self.ledger.record("witness", m.message.payload, m.hash)

    async def _collect_js(self) -> None:
        assert self.js_v1 is not None and self.js_v2 is not None
        while True:
            await trio.sleep(0.1)
            for name, peer, kind in (("ethereumjs", self.js_v1, "envelope"), ("js-waku", self.js_v2, "raw")):
                evs = peer._events  # appended by JsPeer's reader; read incrementally
                for e in evs[self._ev_pos[name]:]:
                    if e.get("event") != kind:
                        continue
                    if kind == "envelope":
                        self.ledger.record(name, Envelope.decode(bytes.fromhex(e["hex"])).data,
                                           bytes.fromhex(e["hash"]))
                    elif e.get("contentTopic") == CONTENT:
                        data = bytes.fromhex(e["payload"])
                        self.ledger.record(name, data, data)  # gossipsub id = sha256(data): data names it
                self._ev_pos[name] = len(evs)

    # --- senders: the third-party peers, >= 100 msg/s each ---

    async def traffic(self, seconds: float, rate: float = 100.0) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(self._send_v1, seconds, rate)
            n.start_soon(self._send_v2, seconds, rate)

    async def _send_v1(self, seconds: float, rate: float) -> None:
        """ethereumjs posts Messages packets of 5 envelopes every 5/rate s."""
        assert self.js_v1 is not None
        per, t0 = 5, trio.current_time()
        batches = int(seconds * rate / per)
        for k in range(batches):
            now = int(time.time())
            envs: list[Envelope] = []
            marks: list[str] = []
            for _ in range(per):
                m = self.ledger.marker("v1")
                data = m + os.urandom(16)
                ttl = self.v1_ttl
                nonce = mine_smallest_nonce(now + ttl, ttl, TOPIC_V1, data, 0.002)
                assert nonce is not None
                envs.append(Envelope(now + ttl, ttl, TOPIC_V1, data, nonce))
                marks.append(m.decode())
            try:
                await self.js_v1.request("send", peer=self._hub_peer, code=1, hex=encode_messages(envs).hex())
            except JsPeerError as exc:
                if "no peer" not in str(exc):
                    raise
                self.v1_send_failures += 1  # the hub link is down (see link_events); it redials
                await trio.sleep_until(t0 + (k + 1) * per / rate)
                continue
            sent = time.time()
            for mark, env in zip(marks, envs, strict=True):
                self.ledger.sent["v1_to_v2"][mark] = sent
                self.ledger.v1_hash[mark] = env.hash
            await trio.sleep_until(t0 + (k + 1) * per / rate)

    async def _send_v2(self, seconds: float, rate: float) -> None:
        """js-waku publishes one message every 1/rate s (its ``sendMany`` paces itself)."""
        assert self.js_v2 is not None
        marks = [self.ledger.marker("v2") for _ in range(int(seconds * rate))]
        payloads = [(m + os.urandom(12)).hex() for m in marks]
        t = time.time()
        r = await self.js_v2.request("sendMany", contentTopic=CONTENT, payloads=payloads,
                                     intervalMs=1000 / rate, timeout=seconds * 3 + 30)
        failed = set(r["failed"])
        for i, m in enumerate(marks):
            if i not in failed:  # sent at t + i/rate (paced); a failed one reached no peer at all
                self.ledger.sent["v2_to_v1"][m.decode()] = t + i / rate

    async def drained(self, timeout: float = 30.0) -> None:
        with trio.move_on_after(timeout):
            while not self.ledger.delivered():
                await trio.sleep(0.2)
        await trio.sleep(1.5)  # a duplicate or echo would show up by now

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for b in self.bridges:
                await trio.to_thread.run_sync(b.kill, 15)
            for p in (self.js_v1, self.js_v2):
                if p is not None:
                    await p.aclose()
