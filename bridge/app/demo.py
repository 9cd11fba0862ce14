"""``waku-bridge demo``: the local sandbox, on loopback, nothing outside a temp dir.

A small Waku v1 network (three of our v1 nodes in a line) and a small Waku v2 network (two of our
v2 nodes), joined by two bridge processes (A and B) started exactly as operators start them.
Traffic is originated on both sides; the share originated on v2 grows over the run (a simulated
migration).  A live view shows the bridges' rates, skew and drops; the summary checks that every
message reached the far side exactly once.  With failover on, bridge A is killed (SIGKILL) midway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client import CollectorRegistry

from bridge.app.ports import free_ports

__all__ = ["run_demo"]

TOPIC = bytes.fromhex("1a2b3c4d")
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/0/0"


class _BridgeProcess:
    def __init__(self, name: str, data: Path, v1_static: str, v2_static: str, failover: str | None) -> None:
        self.name = name
        self.ports = free_ports(4)
        p1, p2, ws, http = self.ports
        self.url = f"http://127.0.0.1:{http}"
        self.args = [sys.executable, "-m", "bridge.app.cli", "--peer-id", name, "--listen-address", "127.0.0.1",
                     "--devp2p-tcp-port", str(p1), "--libp2p-tcp-port", str(p2), "--websocket-port", str(ws),
                     "--metrics-server-port", str(http), "--data-dir", str(data), "--staticnode-v1", v1_static,
                     "--staticnode-v2", v2_static, "--cluster-id", "0", "--waku-v1-pow", "0.002",
                     "--log-level", "warning"]
        if failover:
            self.args += ["--failover", failover, "--failover-ttl", "3"]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        assert self.proc.stdout is not None
        json.loads(self.proc.stdout.readline())

    def status(self) -> dict[str, Any] | None:
        try:
            return httpx.get(self.url + "/status", timeout=2).json()  # type: ignore[no-any-return]
        except (httpx.HTTPError, ValueError):
            return None

    def kill(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)


async def _demo(duration: float, rate: float, failover: bool) -> int:
    from v1.node import V1Node, V1NodeConfig
    from v1.waku.envelope import Envelope
    from v1.waku.pow import mine_smallest_nonce
    from v2.core.message import WakuMessage
    from v2.node import V2Node, V2NodeConfig

    tmp = Path(tempfile.mkdtemp(prefix="waku-bridge-demo-"))
    sent_v1: set[bytes] = set()  # sha256(topic ‖ data) of what was originated on each side
    sent_v2: set[bytes] = set()
    at_v2: dict[bytes, int] = {}
    at_v1: dict[bytes, int] = {}
    bridges: list[_BridgeProcess] = []
    import hashlib

    def key(data: bytes) -> bytes:
        return hashlib.sha256(TOPIC + data).digest()

    try:
        async with trio.open_nursery() as nursery:
            def v1node(static: tuple[str, ...] = ()) -> V1Node:
                return V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, static_nodes=static,
                                           forward_interval=0.3), CollectorRegistry())

            hub = v1node()
            await nursery.start(hub.run)
            mid = v1node((hub.enode,))
            await nursery.start(mid.run)
            edge = v1node((mid.enode,))  # Status-style v1 users live here
            await nursery.start(edge.run)
            t1, w1, t2, w2 = free_ports(4)
            v2hub = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", t1, True, w1), CollectorRegistry())
            await nursery.start(v2hub.run)
            v2edge = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", t2, True, w2,
                                         staticnodes=(v2hub.listen_addrs[0],)), CollectorRegistry())
            await nursery.start(v2edge.run)
            print("v1 network: edge - mid - hub (3 nodes)   v2 network: edge - hub (2 nodes)   all on 127.0.0.1")

            lease = f"sqlite:{tmp / 'failover.sqlite3'}" if failover else None
            for name in ("A", "B"):
                b = _BridgeProcess(name, tmp / name, hub.enode, v2hub.listen_addrs[0], lease)
                await trio.to_thread.run_sync(b.start)
                bridges.append(b)
            print(f"bridges A and B started ({'one active, one standby' if failover else 'both active'})")
            with trio.fail_after(30):
                while not all((s := b.status()) and s["peers"]["v1"] and s["peers"]["v2"] for b in bridges):
                    await trio.sleep(0.2)
            await trio.sleep(2)

            async def collect_v1() -> None:
                async for rec in edge.inbound():
                    k = key(rec.envelope.data)
                    at_v1[k] = at_v1.get(k, 0) + 1

            async def collect_v2() -> None:
                async for m in v2edge.messages():
                    if m.message.content_topic == CONTENT:
                        k = key(m.message.payload)
                        at_v2[k] = at_v2.get(k, 0) + 1

            async def drain(ch: Any) -> None:
                async for _ in ch:
                    pass

            nursery.start_soon(collect_v1)
            nursery.start_soon(collect_v2)
            for ch in (hub.inbound(), mid.inbound(), v2hub.messages()):
                nursery.start_soon(drain, ch)

            start = time.time()
            i = 0
            next_view = start
            killed = False
            while (now := time.time()) - start < duration:
                share_v2 = 0.1 + 0.8 * (now - start) / duration  # the migration: v2's share grows
                if (i * 0.618034) % 1.0 < share_v2:
                    data = f"v2 user message {i}".encode() + os.urandom(4)
                    await v2edge.publish(PUBSUB, WakuMessage(data, CONTENT, version=1, timestamp=time.time_ns()))
                    sent_v2.add(key(data))
                else:
                    data = f"v1 user message {i}".encode() + os.urandom(4)
                    exp = int(now) + 30
                    nonce = mine_smallest_nonce(exp, 30, TOPIC, data, 0.002)
                    assert nonce is not None
                    if (await edge.post(Envelope(exp, 30, TOPIC, data, nonce))).accepted:
                        sent_v1.add(key(data))
                i += 1
                if failover and not killed and now - start > duration / 2:
                    active = next((b for b in bridges if (s := b.status()) and s["role"] == "active"), None)
                    if active is not None:
                        token = (active.status() or {}).get("fencing_token")
                        print(f"--- killing the active bridge {active.name} (SIGKILL, fencing token {token}) ---")
                        t_kill = time.monotonic()
                        await trio.to_thread.run_sync(active.kill, signal.SIGKILL)
                        killed = True
                        nursery.start_soon(_report_takeover, bridges, active, t_kill)
                if now >= next_view:
                    _view(now - start, bridges, len(sent_v1), len(sent_v2), at_v1, at_v2)
                    next_view = now + 2
                await trio.sleep(1 / rate)
            with trio.move_on_after(15):
                while not (sent_v1 <= set(at_v2) and sent_v2 <= set(at_v1)):
                    await trio.sleep(0.2)
            await trio.sleep(1)
            _view(time.time() - start, bridges, len(sent_v1), len(sent_v2), at_v1, at_v2)
            nursery.cancel_scope.cancel()
    finally:
        for b in bridges:
            b.kill(signal.SIGTERM)
    lost = len(sent_v1 - set(at_v2)) + len(sent_v2 - set(at_v1))
    doubled = sum(1 for v in (*at_v1.values(), *at_v2.values()) if v > 1)
    echoed = len(set(at_v1) - sent_v2) + len(set(at_v2) - sent_v1)  # came back to where it started
    ok = lost == 0 and doubled == 0 and echoed == 0
    print(f"\nsummary: {len(sent_v1)} messages v1->v2, {len(sent_v2)} v2->v1; lost {lost}, doubled {doubled}, "
          f"echoed {echoed}: "
          f"{'every message delivered exactly once' if ok else 'FAILED'}")
    return 0 if ok else 1


async def _report_takeover(bridges: list[_BridgeProcess], dead: _BridgeProcess, t_kill: float) -> None:
    """Show the failover: which standby took the lease, how fast, with which (higher) token."""
    with trio.move_on_after(30):
        while True:
            for b in bridges:
                if b is dead:
                    continue
                s = await trio.to_thread.run_sync(b.status)
                if s is not None and s["role"] == "active":
                    print(f"--- {b.name} took over {time.monotonic() - t_kill:.2f} s after the kill "
                          f"(fencing token {s['fencing_token']}) ---", flush=True)
                    return
            await trio.sleep(0.05)
    print(f"--- no standby took over within 30 s of killing {dead.name} ---", flush=True)


def _view(t: float, bridges: list[_BridgeProcess], n1: int, n2: int, at_v1: dict[bytes, int],
          at_v2: dict[bytes, int]) -> None:
    parts = []
    for b in bridges:
        s = b.status()
        if s is None:
            parts.append(f"{b.name}: down")
            continue
        r = s["rates"]
        drops = sum(s["dropped"].values()) - s["dropped"].get("duplicate", 0)
        per_min = f"{r['v1_to_v2']['1m'] * 60:4.0f}/{r['v2_to_v1']['1m'] * 60:4.0f}"
        parts.append(f"{b.name}[{s['role'][:3]}] {per_min} per min drops {drops}")
    share = n2 / (n1 + n2) if n1 + n2 else 0.0
    print(f"t={t:5.1f}s originated v1 {n1:4d} v2 {n2:4d} (v2 share {share:4.0%}) | delivered v1->v2 "
          f"{len(at_v2):4d} v2->v1 {len(at_v1):4d} | " + " | ".join(parts), flush=True)


def run_demo(duration: float = 40.0, rate: float = 10.0, failover: bool = True) -> int:
    return trio.run(_demo, duration, rate, failover)
