"""Soak with churn: ``python -m bench soak --rate R --minutes M`` (docs/reliability.md "Soak with churn").

Sockets and real processes, the topology of tests/interop/test_e2e_go.py kept up for a long run::

    bench V1Node -- status-go 1, status-go 2 -- bridge A + standby B -- go-waku 1, go-waku 2 -- bench V2Node

* two ``waku-bridge`` processes A and B sharing the SQLite lease (``--failover sqlite:...``, TTL
  3 s, ``--store`` so a takeover asks the new active's own archive for the sink history);
* two status-go v1.1.0 ``waku`` nodes and two go-waku v0.10.0 nodes (Status's shard
  ``/waku/2/rs/16/32``), each dialled by both bridges, each with a fixed key and port so a restart
  keeps its identity;
* the load generators and receivers in *this* process: a Waku v1 node dialling only the two
  status-go nodes and a Waku v2 node dialling only the two go-waku nodes, so every message crosses
  a churned third-party peer, a bridge, and another churned peer.  Each message carries a marker
  (run id, direction, sequence number) and is made when it is sent (v1 envelopes mined at PoW
  0.002 with a ``--ttl`` TTL; v2 messages stamped now).

Faults, from ``--seed``: every uniform(``--churn-min``, ``--churn-max``) s one Go peer is killed
with SIGKILL (sides alternate, and the two peers of a side in turn) and restarted on the same key and
port after ``--down`` s; a peer is only killed while the other peer of its side is up and linked
again (to both bridges and to the bench node), so a side always has a live path.  Every
``--failover-every`` s the active is faulted (SIGKILL and SIGTERM in turn) and restarted as
standby, once the standby is up on both sides.  Every event goes into ``events`` with its time
(seconds from the start of the load).

Accounting, per receiver (the bench's v1 node for v2->v1, its v2 node for v1->v2), per marker:
``exactly_once``; ``doubled`` (a second distinct hash, or the same hash delivered twice);
``echoes`` (a marker back on its own side as other bytes); ``lost``, split into ``lost_expected``
(its lifetime overlaps a window in which a side had no live peer: ``side_down_windows``, derived
from the event log; empty unless both peers of a side were down at once) and ``lost_unexpected``
(everything else: a failure); ``late`` (arrived after its TTL).  ``bridge_dropped``: the bridges'
own ``waku_bridge_dropped_total`` counters by reason, summed over every process incarnation
(scraped every 10 s and before a fault); ``expired`` is its ``expired`` + ``standby_expired``.

Resources: each bridge's VmRSS every 10 s (``rss``: per process incarnation start/max/end and the
least-squares slope in MiB per 10 min over the last 3/4 of its samples; ``rss_slope_max`` the
largest); CPU per process (utime + stime over the load, in % of one core: ``cpu_percent``, the
bridges also by role); the load average.  ``takeovers``: when, who, the signal, how long until the
standby served, and the fencing tokens (``fencing_increasing``).

The harness itself: ``generator`` counts envelopes our own v1 node refused (never sent, so not
counted) and v2 messages published while our node had no go-waku node in its topic; ``errors``
lists faults it could not carry out (a peer or bridge that would not restart, a failover that timed
out): the run goes on and records them, so an hour is never lost to one bad minute.

One JSON line per run (``--runs``); with ``--progress`` a line a minute on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import platform
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bench.procstat import cpu_s, status_kib
from bench.sustained import paced
from bridge.app.ports import free_ports
from tests.helpers.bridgeproc import BridgeProc
from tests.helpers.jsproc import GoPeer, JsPeer, JsPeerError
from v1.node import V1Node, V1NodeConfig
from v1.rlpx.enode import Enode
from v1.waku.envelope import Envelope
from v1.waku.pow import mine_smallest_nonce
from v2.core.message import WakuMessage
from v2.node import V2Node, V2NodeConfig

__all__ = ["Ledger", "SoakConfig", "cli", "down_windows", "main", "run", "slope_per_10min"]

DIRECTIONS = ("v1_to_v2", "v2_to_v1")
TOPIC_V1 = "1a2b3c4d"
TOPIC = bytes.fromhex(TOPIC_V1)
CONTENT = "/waku/1/0x1a2b3c4d/rfc26"
PUBSUB = "/waku/2/rs/16/32"
SIZE = 300
MAGIC = b"soak"
SAMPLE_S = 10.0  # RSS, CPU and /metrics sampling period
LINK_TIMEOUT = 120.0  # a restarted peer not linked again by then is recorded as such; churn goes on
FAILOVER_TTL = 3.0


@dataclass(frozen=True, slots=True)
class SoakConfig:
    rate: float = 250.0  # messages/s per direction
    minutes: float = 60.0
    churn_min: float = 120.0
    churn_max: float = 300.0
    failover_every: float = 600.0  # 0: no failovers
    seed: int = 1
    workdir: Path | None = None
    ttl: int = 10  # v1 TTL of the generated envelopes; the bridge's --bridge-ttl keeps its default 10
    down: float = 3.0  # seconds a killed peer stays down
    progress: bool = False


# --- accounting (pure) ---


@dataclass(slots=True)
class Ledger:
    """Markers sent and what the far receiver got, per direction."""

    run: bytes = field(default_factory=lambda: os.urandom(4))
    sent: dict[str, dict[int, float]] = field(default_factory=lambda: {d: {} for d in DIRECTIONS})
    orig: dict[str, dict[int, bytes]] = field(default_factory=lambda: {d: {} for d in DIRECTIONS})
    got: dict[str, dict[int, set[bytes]]] = field(default_factory=lambda: {d: {} for d in DIRECTIONS})
    first: dict[str, dict[int, float]] = field(default_factory=lambda: {d: {} for d in DIRECTIONS})
    repeats: dict[str, set[int]] = field(default_factory=lambda: {d: set() for d in DIRECTIONS})
    echoes: dict[str, set[int]] = field(default_factory=lambda: {d: set() for d in DIRECTIONS})
    echo_at: dict[str, list[float]] = field(default_factory=lambda: {d: [] for d in DIRECTIONS})
    returned: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))

    def payload(self, direction: str, seq: int) -> bytes:
        mark = MAGIC + self.run + bytes([DIRECTIONS.index(direction)]) + seq.to_bytes(8, "big")
        return mark + os.urandom(SIZE - len(mark))

    def parse(self, data: bytes) -> tuple[str, int] | None:
        i = data.find(MAGIC + self.run)
        if i < 0 or len(data) < i + 17:
            return None
        d = data[i + 8]
        if d >= len(DIRECTIONS):
            return None
        return DIRECTIONS[d], int.from_bytes(data[i + 9:i + 17], "big")

    def arrive(self, side: str, data: bytes, h: bytes, t: float) -> None:
        """``data`` with hash ``h`` reached the receiver on ``side`` ("v1" or "v2") at ``t``."""
        parsed = self.parse(data)
        if parsed is None:
            return
        d, seq = parsed
        if d.startswith(side):  # back on the side it came from
            if h == self.orig[d].get(seq):
                self.returned[d] += 1  # the original itself re-offered: v1 flooding, not an echo
            else:
                self.echoes[d].add(seq)
                self.echo_at[d].append(t)
            return
        hs = self.got[d].setdefault(seq, set())
        if h in hs:
            self.repeats[d].add(seq)
        hs.add(h)
        self.first[d].setdefault(seq, t)

    def delivered(self) -> int:
        return sum(len(g) for g in self.got.values())

    def report(self, windows: dict[str, list[tuple[float, float]]], ttl: dict[str, float]) -> dict[str, Any]:
        """Counts per direction; a loss is expected only if the message's lifetime overlaps a window
        in which its source or destination side had no live peer."""
        out: dict[str, dict[str, int]] = {k: {} for k in (
            "sent", "delivered", "exactly_once", "doubled", "doubled_distinct", "doubled_repeat", "echoes",
            "lost", "lost_expected", "lost_unexpected", "late", "returned")}
        examples: dict[str, list[int]] = {}
        per_minute: dict[str, dict[int, int]] = {}
        echo_s: dict[str, list[float]] = {}
        for d in DIRECTIONS:
            sent, got = self.sent[d], self.got[d]
            both = windows["v1"] + windows["v2"]
            lost = [s for s in sent if s not in got]
            expected = [s for s in lost if overlaps(sent[s], sent[s] + ttl[d], both)]
            distinct = {s for s in sent if len(got.get(s, ())) > 1}
            doubled = distinct | (self.repeats[d] & set(sent))
            out["sent"][d] = len(sent)
            out["delivered"][d] = sum(1 for s in sent if s in got)
            out["exactly_once"][d] = sum(1 for s in sent if s in got and s not in doubled)
            out["doubled"][d] = len(doubled)
            out["doubled_distinct"][d] = len(distinct)
            out["doubled_repeat"][d] = len(self.repeats[d] & set(sent))
            out["echoes"][d] = len(self.echoes[d])
            out["lost"][d] = len(lost)
            out["lost_expected"][d] = len(expected)
            out["lost_unexpected"][d] = len(lost) - len(expected)
            out["late"][d] = sum(1 for s, t in self.first[d].items() if s in sent and t - sent[s] > ttl[d])
            out["returned"][d] = self.returned[d]
            examples[d] = sorted(set(lost) - set(expected))[:5]
            by_min: dict[int, int] = {}
            for seq in set(lost) - set(expected):
                by_min[int(sent[seq] // 60)] = by_min.get(int(sent[seq] // 60), 0) + 1
            per_minute[d] = by_min
            echo_s[d] = [round(t, 1) for t in self.echo_at[d][:3]] + ([round(self.echo_at[d][-1], 1)]
                                                                      if len(self.echo_at[d]) > 3 else [])
        # when it went wrong, to set beside ``events``: unexpected losses by the minute they were sent
        # in, and the first and last arrival times of echoes
        return {**out, "lost_unexpected_examples": examples, "lost_unexpected_by_minute": per_minute,
                "echo_times_s": echo_s}


def overlaps(t0: float, t1: float, windows: list[tuple[float, float]]) -> bool:
    return any(a <= t1 and t0 <= b for a, b in windows)


def down_windows(events: list[dict[str, Any]], peers: dict[str, str],
                 t_end: float) -> dict[str, list[tuple[float, float]]]:
    """Per side, the intervals in which none of its peers was running (from ``peer_kill`` and
    ``peer_up`` events; ``peers``: name -> side, all running at time 0)."""
    alive = dict.fromkeys(peers, True)
    out: dict[str, list[tuple[float, float]]] = {"v1": [], "v2": []}
    since: dict[str, float | None] = {"v1": None, "v2": None}
    for e in sorted((e for e in events if e["kind"] in ("peer_kill", "peer_up")), key=lambda e: float(e["t"])):
        alive[e["peer"]] = e["kind"] == "peer_up"
        side = peers[e["peer"]]
        none = not any(alive[p] for p, s in peers.items() if s == side)
        start = since[side]
        if none and start is None:
            since[side] = float(e["t"])
        elif not none and start is not None:
            out[side].append((start, float(e["t"])))
            since[side] = None
    for side, start in since.items():
        if start is not None:
            out[side].append((start, t_end))
    return out


def slope_per_10min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t s, MiB) over the last 3/4 of ``samples``, in MiB per 10 minutes."""
    tail = samples[len(samples) // 4:]
    if len(tail) < 3:
        return None
    n = len(tail)
    mt = sum(t for t, _ in tail) / n
    mv = sum(v for _, v in tail) / n
    var = sum((t - mt) ** 2 for t, _ in tail)
    if var == 0:
        return None
    return round(sum((t - mt) * (v - mv) for t, v in tail) / var * 600, 2)


# --- processes ---


def _cpu_s(pid: int) -> float | None:
    """None once the process is gone (a fault may have just killed it)."""
    try:
        return cpu_s(pid)
    except OSError:
        return None


def _rss_kib(pid: int) -> int | None:
    try:
        return status_kib(pid) or None
    except OSError:
        return None


def _dropped(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "waku_bridge_dropped":
            for s in fam.samples:
                if s.name == "waku_bridge_dropped_total":
                    out[s.labels["type"]] = s.value
    return out


@dataclass(slots=True)
class Incarnation:
    """One OS process of a bridge or a Go peer: what was last sampled of it."""

    name: str
    pid: int
    started: float
    cpu0: float = 0.0
    cpu: float = 0.0
    rss: list[tuple[float, float]] = field(default_factory=list)
    dropped: dict[str, float] = field(default_factory=dict)


# The Go harnesses report every envelope and message they cache (sorted keys: Go's encoding/json);
# the bench counts at its own nodes, so these lines are dropped unparsed: two status-go and two
# go-waku nodes at 250 msg/s each way write about 2 000 of them a second.
_NOISE = (b'"event":"envelope"', b'"event":"envelope_seen"', b'"event":"message"', b'"event":"messages"')


class QuietGoPeer(GoPeer):
    """A Go harness whose per-message events are read and dropped (replies and the rest are kept)."""

    drop_lines = _NOISE


@dataclass(slots=True)
class GoNode:
    name: str
    side: str  # "v1" (status-go) or "v2" (go-waku)
    args: list[str]
    handle: JsPeer | None = None
    addr: str = ""  # enode or multiaddr (stable: fixed key and port)
    ident: str = ""  # v1: pubkey hex; v2: peer id
    linked: bool = False

    @property
    def module(self) -> str:
        return "wakuv1" if self.side == "v1" else "wakuv2"

    @property
    def pid(self) -> int:
        assert self.handle is not None
        return self.handle._proc.pid


def _go_nodes() -> list[GoNode]:
    nodes = []
    for i, port in enumerate(free_ports(2), 1):
        key = os.urandom(32).hex()
        nodes.append(GoNode(f"status-go {i}", "v1", ["-port", str(port), "-pow", "0.002", "-key", key]))
    for i, port in enumerate(free_ports(2), 1):
        # each go-waku node on its own loopback address (go-waku admits 5 inbound connections per IP)
        nodes.append(GoNode(f"go-waku {i}", "v2", ["-host", f"127.0.0.{i + 1}", "-port", str(port), "-nodekey",
                                                   os.urandom(32).hex(), "-cluster-id", "16", "-shards", "32"]))
    return nodes


class Soak:
    def __init__(self, cfg: SoakConfig, tmp: Path) -> None:
        self.cfg = cfg
        self.tmp = tmp
        self.rng = random.Random(cfg.seed)
        self.ledger = Ledger()
        self.events: list[dict[str, Any]] = []
        self.go = _go_nodes()
        self.bridges: list[BridgeProc] = []
        self.procs: dict[int, Incarnation] = {}
        self.roles: dict[str, str] = {}
        self.cpu_by_role: dict[str, float] = {"active": 0.0, "standby": 0.0}
        self.t0 = time.monotonic()
        self.loading = False
        self.stop = trio.Event()
        self.takeovers: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.generator = {"v1_post_rejected": 0, "v2_published_to_no_peer": 0}
        self.cpu_load: dict[int, float] = {}  # pid -> CPU s over the load
        self.v1: V1Node
        self.v2: V2Node

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def event(self, kind: str, **kw: Any) -> None:
        self.events.append({"t": self.now(), "kind": kind, **kw})

    # --- Go peers ---

    async def start_go(self, nursery: trio.Nursery, g: GoNode) -> None:
        h = await QuietGoPeer.start_go(nursery, g.module, g.args)
        try:
            ready = (await h.wait_event("ready", timeout=90))[0]
            if g.side == "v1":
                g.addr = ready["enode"]
                g.ident = Enode.parse(g.addr).pubkey.hex()
            else:
                await h.request("subscribe", pubsub_topic=PUBSUB, content_topics=[CONTENT])
                g.addr = next(a for a in ready["multiaddrs"] if "/ws" not in a)
                g.ident = str(ready["peer_id"])
        except BaseException:
            with trio.CancelScope(shield=True):
                if h._proc.returncode is None:
                    h._proc.kill()
                    await h._proc.wait()
            raise
        g.handle = h
        self.procs[h._proc.pid] = Incarnation(g.name, h._proc.pid, self.now(), cpu0=_cpu_s(h._proc.pid) or 0.0)

    async def kill_go(self, g: GoNode) -> None:
        assert g.handle is not None
        h, g.handle, g.linked = g.handle, None, False
        self._sample_cpu(h._proc.pid)
        h._proc.kill()  # SIGKILL
        await h._proc.wait()
        if h._proc.stdin is not None:
            with trio.CancelScope(shield=True):
                try:
                    await h._proc.stdin.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    async def linked(self, g: GoNode) -> bool:
        """``g`` is connected to our node of its side and to every running bridge."""
        if g.handle is None:
            return False
        sts = [await trio.to_thread.run_sync(b.status) for b in self.bridges if b.alive()]
        if g.side == "v1":
            ours = any(g.ident in p.enode for p in self.v1.peers())
            return ours and all(s is not None and s["peers"]["v1"] >= 2 for s in sts)
        try:
            peers = (await g.handle.request("peers", timeout=10))["peers"] or []
        except Exception:  # a request to a peer being restarted: not linked yet
            return False
        connected = {p["peer_id"] for p in peers if p["connected"]}
        want = {self.v2.peer_id} | {s["v2"]["peer_id"] for s in sts if s is not None}
        return all(s is not None for s in sts) and want <= connected

    async def wait_linked(self, g: GoNode, timeout: float = LINK_TIMEOUT) -> bool:
        with trio.move_on_after(timeout):
            while not await self.linked(g):  # noqa: ASYNC110 - polling other processes
                await trio.sleep(0.5)
            g.linked = True
            return True
        return False

    async def drain_go_events(self) -> None:
        """What is left of the Go harnesses' events (peer changes, status packets) is not needed
        after the start either: an hour of them would only grow."""
        while True:
            await trio.sleep(2)
            for g in self.go:
                if g.handle is not None:
                    g.handle._events.clear()

    # --- bench nodes (generators and receivers) ---

    async def start_nodes(self, nursery: trio.Nursery) -> None:
        v1_static = tuple(g.addr for g in self.go if g.side == "v1")
        v2_static = tuple(g.addr for g in self.go if g.side == "v2")
        self.v1 = V1Node(V1NodeConfig(listen_address="127.0.0.1", port=0, static_nodes=v1_static,
                                      forward_interval=0.1, pool_capacity=1_000_000, inbound_capacity=100_000),
                         CollectorRegistry())
        tcp, ws = free_ports(2)
        self.v2 = V2Node(V2NodeConfig(os.urandom(32), "127.0.0.1", tcp, False, ws, staticnodes=v2_static,
                                      cluster_id=16, shards=(32,), num_shards_in_network=0,
                                      inbound_capacity=100_000), CollectorRegistry())
        await nursery.start(self.v1.run)
        await nursery.start(self.v2.run)
        nursery.start_soon(self._collect_v1)
        nursery.start_soon(self._collect_v2)

    async def _collect_v1(self) -> None:
        async for rec in self.v1.inbound():
            if rec.envelope.topic == TOPIC:
                self.ledger.arrive("v1", rec.envelope.data, rec.envelope.hash, self.now())

    async def _collect_v2(self) -> None:
        async for m in self.v2.messages():
            if m.message.content_topic == CONTENT:
                self.ledger.arrive("v2", m.message.payload, m.hash, self.now())

    # --- bridges ---

    def make_bridges(self) -> None:
        v1 = [g.addr for g in self.go if g.side == "v1"]
        v2 = [g.addr for g in self.go if g.side == "v2"]
        self.bridges = [BridgeProc(n, self.tmp, v1, v2, failover=f"sqlite:{self.tmp / 'failover.sqlite3'}",
                                   failover_ttl=FAILOVER_TTL,
                                   extra=["--cluster-id", "16", "--shard", "32", "--num-shards-in-network", "0",
                                          "--bridge-pubsub-topic", PUBSUB, "--store"])
                        for n in ("A", "B")]

    def _track_bridge(self, b: BridgeProc) -> None:
        assert b.proc is not None
        pid = b.proc.pid
        self.procs[pid] = Incarnation(b.name, pid, self.now(), cpu0=_cpu_s(pid) or 0.0)

    async def start_bridge(self, b: BridgeProc) -> None:
        await trio.to_thread.run_sync(b.start)
        self._track_bridge(b)

    async def statuses(self) -> list[dict[str, Any] | None]:
        return [await trio.to_thread.run_sync(b.status) for b in self.bridges]

    async def one_active(self, timeout: float = 60.0) -> BridgeProc:
        with trio.fail_after(timeout):
            while True:
                sts = await self.statuses()
                act = [b for b, s in zip(self.bridges, sts, strict=True) if s and s["role"] == "active"]
                if len(act) == 1 and all(s is not None for s in sts):
                    return act[0]
                await trio.sleep(0.2)

    # --- sampling ---

    def _sample_cpu(self, pid: int) -> None:
        inc = self.procs.get(pid)
        c = _cpu_s(pid)
        if inc is not None and c is not None:
            inc.cpu = c - inc.cpu0

    async def _scrape_bridge(self, b: BridgeProc) -> None:
        if not b.alive():
            self.roles[b.name] = "down"
            return
        assert b.proc is not None
        inc = self.procs.get(b.proc.pid)
        if inc is None:
            return
        rss = _rss_kib(b.proc.pid)
        if rss is not None:
            inc.rss.append((self.now(), round(rss / 1024, 1)))
        before = inc.cpu
        self._sample_cpu(b.proc.pid)
        st = await trio.to_thread.run_sync(b.status)
        if st is not None:
            role = str(st["role"])
            if self.loading and role in self.cpu_by_role:
                self.cpu_by_role[role] += inc.cpu - before
            self.roles[b.name] = role
        try:
            inc.dropped = _dropped(await trio.to_thread.run_sync(b.metrics))
        except Exception:  # a process going down between the check and the scrape
            pass

    async def sampler(self) -> None:
        minute = 0
        while True:
            for b in self.bridges:
                await self._scrape_bridge(b)
            for g in self.go:
                if g.handle is not None:
                    self._sample_cpu(g.pid)
            if self.cfg.progress and self.loading and self.now() >= 60 * (minute + 1):
                minute += 1
                self.progress(minute)
            await trio.sleep(SAMPLE_S)

    def progress(self, minute: int) -> None:
        rss = {}
        for b in self.bridges:
            inc = self.procs.get(b.proc.pid) if b.proc is not None and b.alive() else None
            rss[b.name] = inc.rss[-1][1] if inc and inc.rss else None
        line = {"minute": minute, "sent": {d: len(self.ledger.sent[d]) for d in DIRECTIONS},
                "delivered": {d: len(self.ledger.got[d]) for d in DIRECTIONS}, "rss_mib": rss,
                "roles": dict(self.roles), "churn": sum(e["kind"] == "peer_kill" for e in self.events),
                "takeovers": len(self.takeovers), "load1": round(os.getloadavg()[0], 2)}
        print(json.dumps(line), file=sys.stderr, flush=True)

    # --- load ---

    async def load(self, seconds: float) -> None:
        ttl = self.cfg.ttl

        async def v1(i: int) -> None:
            data = self.ledger.payload("v1_to_v2", i)
            expiry = int(time.time()) + ttl
            nonce = mine_smallest_nonce(expiry, ttl, TOPIC, data, 0.002)
            assert nonce is not None
            env = Envelope(expiry, ttl, TOPIC, data, nonce)
            t = self.now()
            if (await self.v1.post(env)).accepted:
                self.ledger.sent["v1_to_v2"][i] = t
                self.ledger.orig["v1_to_v2"][i] = env.hash
            else:  # our own node refused it (a full pool): it never left, so it is no bridge loss
                self.generator["v1_post_rejected"] += 1

        async def v2(i: int) -> None:
            m = WakuMessage(self.ledger.payload("v2_to_v1", i), CONTENT, version=1, timestamp=time.time_ns())
            self.ledger.sent["v2_to_v1"][i] = self.now()
            r = await self.v2.publish(PUBSUB, m)
            self.ledger.orig["v2_to_v1"][i] = r.hash
            if r.relay_peers == 0:  # no go-waku node in our topic at that moment
                self.generator["v2_published_to_no_peer"] += 1

        async with trio.open_nursery() as n:
            n.start_soon(paced, int(self.cfg.rate * seconds), self.cfg.rate, v1)
            n.start_soon(paced, int(self.cfg.rate * seconds), self.cfg.rate, v2)

    async def settle(self) -> None:
        """Until every marker arrived, or nothing new for TTL + 5 s (then nothing more can come)."""
        total = sum(len(s) for s in self.ledger.sent.values())
        last, since = -1, trio.current_time()
        with trio.move_on_after(300):
            while self.ledger.delivered() < total:
                if self.ledger.delivered() != last:
                    last, since = self.ledger.delivered(), trio.current_time()
                elif trio.current_time() - since > self.cfg.ttl + 5:
                    break
                await trio.sleep(0.2)
        await trio.sleep(3.0)  # a late double or echo shows up by now

    # --- faults ---

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until the load ends; True if the load ended."""
        with trio.move_on_after(seconds):
            await self.stop.wait()
        return self.stop.is_set()

    async def churn(self, nursery: trio.Nursery) -> None:
        turn = {"v1": 0, "v2": 0}
        side = "v1"
        while not await self._pause(self.rng.uniform(self.cfg.churn_min, self.cfg.churn_max)):
            peers = [g for g in self.go if g.side == side]
            g = peers[turn[side] % len(peers)]
            turn[side] += 1
            others = [o for o in peers if o is not g]
            waited = trio.current_time()
            with trio.CancelScope(shield=True):  # a started fault runs to its end (the peer back up)
                for o in others:  # never both peers of a side at once: the other must be linked now
                    if not await self.linked(o):
                        o.linked = await self.wait_linked(o)
                deferred = round(trio.current_time() - waited, 1)
                self.event("peer_kill", peer=g.name, side=side, deferred_s=deferred)
                await self.kill_go(g)
                await trio.sleep(self.cfg.down)
                if await self.restart_go(nursery, g):
                    self.event("peer_up", peer=g.name, side=side)
                    ok = await self.wait_linked(g)
                    self.event("peer_linked" if ok else "peer_not_linked", peer=g.name, side=side)
            side = "v2" if side == "v1" else "v1"

    async def restart_go(self, nursery: trio.Nursery, g: GoNode, tries: int = 5) -> bool:
        """Start ``g`` again on its key and port; an hour's run goes on if it cannot (the peer stays
        down, and ``side_down_windows`` counts what that costs)."""
        for k in range(tries):
            try:
                await self.start_go(nursery, g)
                return True
            except (JsPeerError, trio.TooSlowError, OSError, StopIteration) as exc:
                self.error(f"restart of {g.name} (try {k + 1}): {exc!s:.300}")
                await trio.sleep(2.0)
        return False

    def error(self, what: str) -> None:
        self.errors.append({"t": self.now(), "error": what})
        self.event("error", error=what)

    async def failovers(self) -> None:
        if self.cfg.failover_every <= 0:
            return
        sigs = [signal.SIGKILL, signal.SIGTERM]
        k = 0
        while not await self._pause(self.cfg.failover_every):
            with trio.CancelScope(shield=True):
                try:
                    await self.fail_over(sigs[k % 2])
                except (AssertionError, trio.TooSlowError, OSError) as exc:  # recorded; the run goes on
                    self.error(f"failover {k + 1} ({sigs[k % 2].name}): {exc!s:.300}")
                    await self.revive_bridges()
            k += 1

    async def revive_bridges(self) -> None:
        """After a failed failover step: any bridge process that is not running is started again."""
        for b in self.bridges:
            if not b.alive():
                try:
                    await self.start_bridge(b)
                    self.event("bridge_restarted", bridge=b.name, role="unknown")
                except (AssertionError, OSError) as exc:
                    self.error(f"restart of bridge {b.name}: {exc!s:.300}")

    async def fail_over(self, sig: signal.Signals) -> None:
        active = await self.one_active()
        standby = next(b for b in self.bridges if b is not active)
        # the standby must be able to serve (both sides linked) or the fault would be a total outage
        await trio.to_thread.run_sync(standby.wait_status,
                                      lambda s: s["role"] == "standby" and s["peers"]["v1"] >= 1
                                      and s["peers"]["v2"] >= 1, 120.0)
        old = await trio.to_thread.run_sync(active.status)
        token = old.get("fencing_token") if old else None
        await self._scrape_bridge(active)  # its last counters and CPU
        self.event("bridge_fault", bridge=active.name, signal=sig.name, fencing_token=token)
        t_fault = time.monotonic()
        await trio.to_thread.run_sync(active.kill, sig)
        new = await trio.to_thread.run_sync(standby.wait_status, lambda s: s["role"] == "active", 120.0)
        took = round(time.monotonic() - t_fault, 2)
        self.event("takeover", bridge=standby.name, fencing_token=new.get("fencing_token"), takeover_s=took)
        self.takeovers.append({"t": self.now(), "from": active.name, "to": standby.name, "signal": sig.name,
                               "takeover_s": took, "token_before": token, "token_after": new.get("fencing_token")})
        await self.start_bridge(active)
        st = await trio.to_thread.run_sync(active.wait_status, lambda s: s["peers"]["v1"] >= 1
                                           and s["peers"]["v2"] >= 1, 120.0)
        self.event("bridge_restarted", bridge=active.name, role=st["role"])

    # --- the run ---

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        # py-libp2p warns for every message it queues for a connected peer whose subscription it has
        # not read yet, and for every failed redial of a killed peer: thousands of lines per churn
        logging.getLogger("libp2p").setLevel(logging.ERROR)
        logging.getLogger("libp2p.transport.tcp.tcp").setLevel(logging.CRITICAL)  # "error": a refused redial
        load0 = os.getloadavg()
        async with trio.open_nursery() as nursery:
            for g in self.go:
                await self.start_go(nursery, g)
            nursery.start_soon(self.drain_go_events)
            await self.start_nodes(nursery)
            self.make_bridges()
            try:
                async with trio.open_nursery() as n:
                    for b in self.bridges:
                        n.start_soon(self.start_bridge, b)
                for b in self.bridges:
                    await trio.to_thread.run_sync(
                        b.wait_status, lambda s: s["peers"]["v1"] >= 2 and s["peers"]["v2"] >= 2, 90.0)
                for g in self.go:
                    g.linked = await self.wait_linked(g, 60)
                    if not g.linked:
                        raise AssertionError(f"{g.name} not linked at the start")
                await self.one_active()
                await trio.sleep(2.0)  # gossipsub heartbeats: every node joins the meshes
                nursery.start_soon(self.sampler)
                seconds = cfg.minutes * 60
                self.t0 = time.monotonic()
                for inc in self.procs.values():  # CPU from the start of the load
                    inc.cpu0 += inc.cpu
                    inc.cpu = 0.0
                self_cpu0 = _cpu_s(os.getpid()) or 0.0
                self.loading = True
                async with trio.open_nursery() as chaos:
                    chaos.start_soon(self.churn, nursery)
                    chaos.start_soon(self.failovers)
                    await self.load(seconds)
                    send_s = self.now()
                    self.stop.set()
                self.loading = False
                load_wall = self.now()
                self_cpu = (_cpu_s(os.getpid()) or 0.0) - self_cpu0
                for b in self.bridges:  # CPU over the load only, not the settling after it
                    if b.proc is not None and b.alive():
                        self._sample_cpu(b.proc.pid)
                for g in self.go:
                    if g.handle is not None:
                        self._sample_cpu(g.pid)
                self.cpu_load = {pid: inc.cpu for pid, inc in self.procs.items()}
                await self.settle()
                for b in self.bridges:
                    await self._scrape_bridge(b)
                for g in self.go:
                    if g.handle is not None:
                        self._sample_cpu(g.pid)
                wall = self.now()
            finally:
                with trio.CancelScope(shield=True):
                    for b in self.bridges:
                        await trio.to_thread.run_sync(b.kill, signal.SIGTERM)
                    for g in self.go:
                        if g.handle is not None:
                            await g.handle.aclose()
                nursery.cancel_scope.cancel()
        return self.result(send_s, load_wall, wall, self_cpu, load0)

    def result(self, send_s: float, load_wall: float, wall: float, self_cpu: float,
               load0: tuple[float, float, float]) -> dict[str, Any]:
        cfg = self.cfg
        windows = down_windows(self.events, {g.name: g.side for g in self.go}, wall)
        counts = self.ledger.report(windows, {"v1_to_v2": float(cfg.ttl), "v2_to_v1": 10.0})
        dropped: dict[str, float] = {}
        rss: dict[str, list[dict[str, Any]]] = {}
        cpu: dict[str, float] = {}
        for inc in self.procs.values():
            for k, v in inc.dropped.items():
                dropped[k] = dropped.get(k, 0) + v
            cpu[inc.name] = cpu.get(inc.name, 0.0) + self.cpu_load.get(inc.pid, inc.cpu)
            if inc.name in ("A", "B"):
                vals = [v for _, v in inc.rss]
                rss.setdefault(inc.name, []).append({
                    "pid": inc.pid, "from_s": inc.started, "samples": len(vals),
                    "start_mib": vals[0] if vals else None, "max_mib": max(vals, default=None),
                    "end_mib": vals[-1] if vals else None, "slope_mib_per_10min": slope_per_10min(inc.rss)})
        cpu["bench"] = self_cpu
        bench_hwm = status_kib("self", "VmHWM")
        slopes = [i["slope_mib_per_10min"] for r in rss.values() for i in r if i["slope_mib_per_10min"] is not None]
        tokens = [t["token_after"] for t in self.takeovers]
        first_token = self.takeovers[0]["token_before"] if self.takeovers else None
        seq = [first_token, *tokens] if first_token is not None else tokens
        return {
            "rate_per_direction": cfg.rate, "minutes": cfg.minutes, "seed": cfg.seed, "ttl": cfg.ttl,
            "churn_s": [cfg.churn_min, cfg.churn_max], "failover_every_s": cfg.failover_every, "down_s": cfg.down,
            "send_seconds": send_s, "load_wall_s": load_wall, "wall_s": wall,
            **counts,
            "expired": int(dropped.get("expired", 0) + dropped.get("standby_expired", 0)),
            "bridge_dropped": {k: int(v) for k, v in sorted(dropped.items())},
            "side_down_windows": windows,
            "churn_events": sum(e["kind"] == "peer_kill" for e in self.events),
            "peers_not_relinked": sum(e["kind"] == "peer_not_linked" for e in self.events),
            "takeovers": self.takeovers,
            "generator": self.generator,
            "errors": self.errors,  # faults the harness could not carry out (each also in events)
            "fencing_increasing": all(isinstance(a, int) and isinstance(b, int) and b > a
                                      for a, b in itertools.pairwise(seq)),
            "rss": rss, "rss_slope_max_mib_per_10min": max(slopes, default=None),
            "bench_rss_max_mib": round(bench_hwm / 1024, 1),  # the generators and the ledger of every marker
            "rss_max_mib": max((i["max_mib"] for r in rss.values() for i in r if i["max_mib"] is not None),
                               default=None),
            "cpu_percent": {k: round(v / load_wall * 100, 1) for k, v in sorted(cpu.items())},
            "bridge_cpu_percent_by_role": {k: round(v / load_wall * 100, 1) for k, v in self.cpu_by_role.items()},
            "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "events": self.events,
        }


async def run(cfg: SoakConfig) -> dict[str, Any]:
    if cfg.workdir is not None:
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="soak-", dir=cfg.workdir))
        return await Soak(cfg, tmp).run()
    with tempfile.TemporaryDirectory(prefix="soak-") as d:
        return await Soak(cfg, Path(d)).run()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=250.0, help="messages/s per direction (default 250)")
    p.add_argument("--minutes", type=float, default=60.0, help="length of the load (default 60)")
    p.add_argument("--churn-min", type=float, default=120.0, help="shortest gap between peer kills, s (120)")
    p.add_argument("--churn-max", type=float, default=300.0, help="longest gap between peer kills, s (300)")
    p.add_argument("--failover-every", type=float, default=600.0, help="s between faults of the active (600; 0: none)")
    p.add_argument("--down", type=float, default=3.0, help="s a killed peer stays down before its restart (3)")
    p.add_argument("--ttl", type=int, default=10, help="v1 TTL of the generated envelopes, s (10)")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault schedule (1)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep the data dirs and bridge logs under this dir (default: a temporary dir, removed)")
    p.add_argument("--progress", action="store_true", help="a JSON line a minute on stderr")
    p.add_argument("--runs", type=int, default=1, help="runs, one JSON line each")
    return p


def config_from(argv: list[str]) -> tuple[SoakConfig, int]:
    a = _parser().parse_args(argv)
    return SoakConfig(rate=a.rate, minutes=a.minutes, churn_min=a.churn_min, churn_max=a.churn_max,
                      failover_every=a.failover_every, seed=a.seed, workdir=a.workdir, ttl=a.ttl, down=a.down,
                      progress=a.progress), a.runs


def cli(argv: list[str]) -> None:
    cfg, runs = config_from(argv)
    for k in range(runs):
        r = trio.run(run, dataclasses.replace(cfg, seed=cfg.seed + k))
        print(json.dumps({"bench": "soak", **r}), flush=True)


def main() -> list[dict[str, Any]]:
    """``python -m bench`` (all modules): a 2-minute run at 20 msg/s per direction (the CI shape)."""
    return [trio.run(run, SoakConfig(rate=20, minutes=2, churn_min=20, churn_max=40, failover_every=60))]


if __name__ == "__main__":
    cli(sys.argv[1:])
