"""``waku-bridge drill URL...``: a switchover drill against a live group (like ``patronictl switchover``).

1. Read ``/status`` of every instance: all must answer, exactly one must be active and at least one
   standby must be connected on both sides, or the drill refuses to start (exit 1, nothing touched).
2. Join both networks with a tiny v1 node and v2 node of our own, dialled to the instances'
   advertised ``v1.enode`` / ``v2.listen_addrs`` (or to ``--v1-enode`` / ``--v2-multiaddr``).
3. Canaries: before, during and after the switchover, ``--canaries`` messages per side are
   originated on each network (a dedicated v1 topic, short TTL) and watched for on the other side.
4. ``POST /admin/resign`` to the active; poll every instance until another one reports active:
   that interval is the takeover time.  The new fencing token must be higher than the old one.
5. Report: takeover time, old/new active and tokens, per direction canaries sent / delivered / lost /
   duplicated (two *different* messages for one canary: an echo or a re-translation; identical
   bytes are absorbed by the networks' own dedup, which is the design, specs/failover.md §7.2).

Exit 0 only if the switchover happened, exactly one instance is active at the end, the token
increased, and every canary arrived exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import trio

from bridge.app.admin import fetch_status
from bridge.errors import WakuBridgeError

__all__ = ["CANARY_TOPIC", "DirectionReport", "DrillError", "DrillReport", "drill_main", "run_drill_async"]

CANARY_TOPIC = bytes.fromhex("d1d1c0de")  # a topic of its own, so canaries never mix with user traffic
CANARY_TTL = 30  # s: short, canaries must not linger in v1 pools
CANARY_RATE = 20.0  # per side per second while a phase sends


class DrillError(WakuBridgeError):
    """The drill cannot start or cannot run (a precondition, not a failed switchover)."""


@dataclass(slots=True)
class DirectionReport:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0


@dataclass(slots=True)
class DrillReport:
    ok: bool = False
    old_active: str | None = None
    new_active: str | None = None
    old_token: int | None = None
    new_token: int | None = None
    takeover_s: float | None = None
    active_at_end: list[str] = field(default_factory=list)
    v1_to_v2: DirectionReport = field(default_factory=DirectionReport)
    v2_to_v1: DirectionReport = field(default_factory=DirectionReport)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _free_port() -> int:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


def _base(url: str) -> str:
    base = url.rstrip("/")
    return base if base.startswith("http") else "http://" + base


def _resign(url: str, timeout: float = 10.0) -> dict[str, Any]:
    headers = {}
    token = os.environ.get("WAKU_BRIDGE_ADMIN_TOKEN")
    if token:
        headers["X-Admin-Token"] = token
    r = httpx.post(_base(url) + "/admin/resign", headers=headers, timeout=timeout)
    data: dict[str, Any] = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code != 200 or not data.get("resigned"):
        raise DrillError(f"{url}: resign refused ({r.status_code}): {data.get('reason', r.text.strip())}")
    return data


async def _poll(pred: Any, deadline: float, interval: float = 0.1) -> bool:
    """Wait until ``pred()`` or the deadline; True if it held.  Polling, because the state lives in
    other components (peer tables, meshes, remote processes) that offer no event to wait on."""
    with trio.move_on_at(deadline):
        while not pred():  # noqa: ASYNC110
            await trio.sleep(interval)
        return True
    return False


async def _statuses(urls: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{} for _ in urls]

    async def one(i: int, u: str) -> None:
        out[i] = await trio.to_thread.run_sync(fetch_status, u, 2.0)

    async with trio.open_nursery() as n:
        for i, u in enumerate(urls):
            n.start_soon(one, i, u)
    return out


class _Canaries:
    """Our own v1 node and v2 node, and the bookkeeping of what was sent and what arrived."""

    def __init__(self, run_id: str, v1_static: tuple[str, ...], v2_static: tuple[str, ...],
                 cluster_id: int, num_shards: int, pubsub_topic: str | None) -> None:
        from prometheus_client import CollectorRegistry

        from bridge.topics import content_topic_for
        from v1.node import V1Node, V1NodeConfig
        from v2.core.topics import autoshard
        from v2.node import V2Node, V2NodeConfig

        self.run_id = run_id
        self.content_topic = content_topic_for(CANARY_TOPIC)
        self.pubsub_topic = pubsub_topic or str(autoshard(self.content_topic, cluster_id, num_shards))
        shard = int(self.pubsub_topic.rsplit("/", 1)[1]) if pubsub_topic is None else 0
        self.v1 = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, static_nodes=v1_static,
                                      target_peers=max(4, len(v1_static)), forward_interval=0.1,
                                      client_id="waku-bridge/drill"), CollectorRegistry())
        self.v2 = V2Node(V2NodeConfig(nodekey=os.urandom(32), listen_address="127.0.0.1", tcp_port=_free_port(),
                                      websocket_support=False, staticnodes=v2_static, cluster_id=cluster_id,
                                      shards=(shard,), num_shards_in_network=num_shards,
                                      extra_pubsub_topics=(pubsub_topic,) if pubsub_topic else ()),
                         CollectorRegistry())
        self.sent: dict[str, dict[str, float]] = {"v1_to_v2": {}, "v2_to_v1": {}}  # marker -> sent at
        self.got: dict[str, dict[str, set[bytes]]] = {"v1_to_v2": {}, "v2_to_v1": {}}  # marker -> hashes
        self._n = 0

    def _marker(self, side: str) -> bytes:
        self._n += 1
        return f"waku-bridge drill canary {self.run_id} {side} {self._n}".encode()

    def _match(self, direction: str, data: bytes, h: bytes) -> None:
        prefix = f"waku-bridge drill canary {self.run_id} ".encode()
        i = data.find(prefix)
        if i < 0:
            return
        end = data.find(b"|", i)
        if end < 0:
            return
        marker = data[i:end].decode(errors="replace")
        if marker in self.sent[direction]:
            self.got[direction].setdefault(marker, set()).add(h)

    async def watch(self) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(self._watch_v1)
            n.start_soon(self._watch_v2)

    async def _watch_v1(self) -> None:
        async for rec in self.v1.inbound():  # bridged v2 canaries arrive here as envelopes
            if rec.envelope.topic == CANARY_TOPIC:
                self._match("v2_to_v1", rec.envelope.data, rec.envelope.hash)

    async def _watch_v2(self) -> None:
        async for rm in self.v2.messages():  # bridged v1 canaries arrive here
            if rm.message.content_topic == self.content_topic:
                self._match("v1_to_v2", rm.message.payload, rm.hash)

    async def send_v1(self) -> None:
        from v1.waku.envelope import Envelope
        from v1.waku.pow import mine_smallest_nonce

        marker = self._marker("v1")
        data = marker + b"|" + os.urandom(8)
        pow_target = max([0.002, *(p.pow_requirement for p in self.v1.peers())])
        now = int(time.time())
        nonce = await trio.to_thread.run_sync(mine_smallest_nonce, now + CANARY_TTL, CANARY_TTL, CANARY_TOPIC, data,
                                              pow_target)
        if nonce is None:
            raise DrillError("could not mine a canary envelope")
        res = await self.v1.post(Envelope(now + CANARY_TTL, CANARY_TTL, CANARY_TOPIC, data, nonce))
        if res.accepted:
            self.sent["v1_to_v2"][marker.decode()] = time.monotonic()

    async def send_v2(self) -> None:
        from v2.core.message import WakuMessage

        marker = self._marker("v2")
        payload = marker + b"|" + os.urandom(8)
        await self.v2.publish(self.pubsub_topic, WakuMessage(payload, self.content_topic, version=0,
                                                             timestamp=time.time_ns()))
        self.sent["v2_to_v1"][marker.decode()] = time.monotonic()

    async def send_phase(self, n: int) -> None:
        for _ in range(n):
            await self.send_v1()
            await self.send_v2()
            await trio.sleep(1 / CANARY_RATE)

    def all_delivered(self) -> bool:
        return all(set(self.sent[d]) <= set(self.got[d]) for d in self.sent)

    def report(self, d: str) -> DirectionReport:
        sent, got = self.sent[d], self.got[d]
        return DirectionReport(sent=len(sent), delivered=sum(1 for m in sent if m in got),
                               lost=sum(1 for m in sent if m not in got),
                               duplicates=sum(1 for hs in got.values() if len(hs) > 1))


async def run_drill_async(urls: list[str], *, canaries: int = 20, timeout: float = 60.0,
                          v1_enode: str | None = None, v2_multiaddr: str | None = None,
                          log: Any = None) -> DrillReport:
    """Run the drill; raises :class:`DrillError` when a precondition fails (nothing was changed)."""
    say = log or (lambda _msg: None)
    rep = DrillReport()
    deadline = trio.current_time() + timeout
    before = await _statuses(urls)
    bad = [s["url"] for s in before if "error" in s]
    if bad:
        raise DrillError(f"unreachable: {', '.join(bad)}")
    active = [s for s in before if s.get("role") == "active"]
    if len(active) != 1:
        raise DrillError(f"{len(active)} active instances (want exactly 1): refusing to switch over")
    standbys = [s for s in before if s.get("role") == "standby" and s["peers"]["v1"] and s["peers"]["v2"]]
    if not standbys:
        raise DrillError("no standby connected on both sides: a switchover would leave no active bridge")
    old = active[0]
    rep.old_active, rep.old_token = str(old["peer_id"]), old.get("fencing_token")
    v1_static = (v1_enode,) if v1_enode else tuple(str(s["v1"]["enode"]) for s in before)
    v2_static = (v2_multiaddr,) if v2_multiaddr else tuple(
        next(a for a in s["v2"]["listen_addrs"] if "/ws" not in a) for s in before)
    v2info = old["v2"]
    c = _Canaries(os.urandom(4).hex(), v1_static, v2_static, int(v2info.get("cluster_id", 0)),
                  int(v2info.get("num_shards", 1)), v2info.get("pubsub_topic"))
    async with trio.open_nursery() as nursery:
        await nursery.start(c.v1.run)
        await nursery.start(c.v2.run)
        nursery.start_soon(c.watch)
        say(f"drill canary nodes: v1 {c.v1.enode} | v2 {c.v2.peer_id} on {c.pubsub_topic}")
        if not await _poll(lambda: c.v1.peers() and c.v2.relay.mesh_peers(c.pubsub_topic), deadline):
            raise DrillError("could not join the v1 and v2 networks of the group")
        # Every instance should hear our canaries directly; give the meshes a few heartbeats.
        await _poll(lambda: len(c.v1.peers()) >= len(v1_static)
                    and len(c.v2.relay.mesh_peers(c.pubsub_topic)) >= len(v2_static),
                    min(deadline, trio.current_time() + 10))
        await trio.sleep(1.5)  # gossipsub heartbeat (1 s): let every bridge graft us

        say(f"phase before: {canaries} canaries per side; active {rep.old_active} (token {rep.old_token})")
        await c.send_phase(canaries)
        await _poll(c.all_delivered, deadline)

        say(f"phase during: resigning {rep.old_active}")
        t0 = time.monotonic()
        await trio.to_thread.run_sync(_resign, str(old["url"]))
        async with trio.open_nursery() as during:
            during.start_soon(c.send_phase, canaries)
            with trio.move_on_at(deadline):
                while True:
                    now_st = await _statuses(urls)
                    new = [s for s in now_st if s.get("role") == "active" and s.get("peer_id") != rep.old_active]
                    if new:
                        rep.takeover_s = round(time.monotonic() - t0, 3)
                        rep.new_active, rep.new_token = str(new[0]["peer_id"]), new[0].get("fencing_token")
                        break
                    await trio.sleep(0.05)
        if rep.new_active is None:
            rep.problems.append("no other instance became active")
        else:
            say(f"takeover: {rep.new_active} active after {rep.takeover_s:.3f} s (token {rep.new_token})")

        say(f"phase after: {canaries} canaries per side")
        await c.send_phase(canaries)
        await _poll(c.all_delivered, deadline)
        await trio.sleep(1.0)  # a duplicate or an echo would show up by now
        nursery.cancel_scope.cancel()

    after = await _statuses(urls)
    rep.active_at_end = [str(s["peer_id"]) for s in after if s.get("role") == "active"]
    rep.v1_to_v2, rep.v2_to_v1 = c.report("v1_to_v2"), c.report("v2_to_v1")
    if len(rep.active_at_end) != 1:
        rep.problems.append(f"{len(rep.active_at_end)} active instances at the end (want 1)")
    if rep.new_token is not None and rep.old_token is not None and not rep.new_token > rep.old_token:
        rep.problems.append(f"fencing token did not increase ({rep.old_token} -> {rep.new_token})")
    for d, r in (("v1->v2", rep.v1_to_v2), ("v2->v1", rep.v2_to_v1)):
        if r.lost:
            rep.problems.append(f"{r.lost} of {r.sent} {d} canaries lost")
        if r.duplicates:
            rep.problems.append(f"{r.duplicates} {d} canaries duplicated")
    rep.ok = not rep.problems
    return rep


def drill_main(args: argparse.Namespace) -> int:
    """Entry point of ``waku-bridge drill``; exit 0 = switchover without loss, 1 = failed or refused."""
    as_json = bool(getattr(args, "json", False))

    def say(msg: str) -> None:
        if not as_json:
            print(msg, flush=True)

    try:
        rep = trio.run(lambda: run_drill_async(list(args.urls), canaries=args.canaries, timeout=args.timeout,
                                               v1_enode=args.v1_enode, v2_multiaddr=args.v2_multiaddr, log=say))
    except (DrillError, httpx.HTTPError) as exc:
        if as_json:
            print(json.dumps({"ok": False, "problems": [str(exc)]}))
        else:
            print(f"drill refused/failed: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(rep.as_dict(), indent=1))
    else:
        for d, r in (("v1->v2", rep.v1_to_v2), ("v2->v1", rep.v2_to_v1)):
            print(f"canaries {d}: sent {r.sent} delivered {r.delivered} lost {r.lost} duplicated {r.duplicates}")
        print(f"switchover {rep.old_active} (token {rep.old_token}) -> {rep.new_active} (token {rep.new_token}) "
              f"in {rep.takeover_s} s; active now: {', '.join(rep.active_at_end) or 'none'}")
        print("drill OK" if rep.ok else "drill FAILED: " + "; ".join(rep.problems))
    return 0 if rep.ok else 1
