"""discv5 at scale: thousands of nodes running our discv5 core on an in-memory network, one process,
virtual clock (docs/performance.md "discv5 at scale").

Every simulated node is a real :class:`v2.discv5.core.Discv5Core` (sessions, WHOAREYOU handshakes,
nonces, request queues, timeouts, NODES verification) with a real :class:`~v2.discv5.table.RoutingTable`
and real :class:`~v2.discv5.lookup.Lookup` state machines; this module replaces only the trio shell
(v2/discv5/service.py) with a driver doing what the shell does, on a heap of timed events:

* bootstrap: the bootnodes go into the table, a self lookup, then random walks every
  ``lookup_interval`` s (5, the service's), or every ``idle_lookup_interval`` s while the node has
  its peers (``Discv5Service._walk_loop``; 900 here, the service's 30 costs too much at 10 000 nodes);
* revalidation: a PING to a random bucket's least recently seen entry after ``U(0, revalidate_max)`` s
  (300 here, the service's 10), again when it is answered (``_revalidate_loop``); a node that
  handshakes with us is tabled unverified and pinged back (``_contact``); answered calls mark
  live, three failures evict (``call``);
* records found by lookups pass :func:`v2.discv5.filters.waku_filter` and queue for a minimal
  connection manager: dial queued peers (at most 8 at once, ``PolicyConfig.max_parallel_dials``)
  until ``target`` = 6 are connected.  A dial succeeds after 2 RTTs when the peer is alive,
  reachable and has fewer than ``max_inbound`` inbound peers (rejected after 1 RTT when full);
  otherwise it fails after the 10 s dial timeout (``PeerManager`` ``dial_timeout``).  A good peer
  is a connected one; it is lost when that peer leaves.

The network: each node has a latency ``U(10, 75)`` ms, a link's one-way delay is the sum of its
two ends (20-150 ms), no loss, no reordering on a link.  Unreachable nodes (``--unreachable``)
sit behind a port-restricted NAT: they send from a mapped port other than the one in their ENR,
and a packet reaches them only on that mapping from an address they have sent to; packets to
their advertised endpoint are dropped.  So they can dial out and look up, but a liveness check
never reaches them and they are never relayed.  Churn (``--churn-per-hour``): a Poisson process
removes random non-bootnode nodes at that share of the network per hour, and each is replaced at
once by a node with a fresh identity (it bootstraps like the rest).

Measured per node: the bootstrap latency (join -> 6 connected peers), the lookups' hops (the
query depth at which the closest answering node was learned), queries and virtual duration, and
every ``sample_every`` s the share of live nodes with >= 6 peers.

Speed switches (docs/performance.md says which parts are real): by default the session crypto is
nulled (``--real-crypto`` keeps it): AES-GCM becomes ``plaintext ‖ key`` (a wrong key still fails
to open, so undecryptable packets still trigger WHOAREYOU), the ECDH + HKDF key agreement a
SHA-256 of the challenge data and both ids, and the id-signature a SHA-256 binding the signer's
public key (a wrong signer still fails).  Header masking (AES-CTR), the packet and message codecs,
and ENR decoding stay real; ENR decoding (with its signature check) is memoised per distinct record.

``python -m bench discv5_sim [--nodes N] [--hours H] [--scenario S] [--out-dir D] [--quick] ...``
writes ``D/discv5_sim_<scenario>.json`` and, for several scenarios, the PNG plots;
``python -m bench discv5_sim --plot-only --out-dir D`` redraws them from the JSON files.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import heapq
import itertools
import json
import math
import os
import platform
import random
import resource
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import v2.discv5.core as core_mod
import v2.discv5.packet as packet_mod
import v2.discv5.table as table_mod
from v2.discv5.core import CallDone, CallFailed, Discv5Core, Dropped, DropReason, NodeContact, Send
from v2.discv5.errors import Discv5DecodeError
from v2.discv5.filters import FilterResult, waku_filter
from v2.discv5.lookup import Lookup
from v2.discv5.messages import FindNode, Ping
from v2.discv5.table import NodeEntry
from v2.enr.enr import Enr, RelayShards, Waku2

__all__ = ["SCENARIOS", "SimConfig", "Simulation", "cli", "main", "run_scenario"]

SCENARIOS: dict[str, tuple[float, float]] = {  # name -> (churn per hour, unreachable share)
    "baseline": (0.0, 0.0),
    "churn": (-1.0, 0.0),  # -1: the configured churn rate
    "unreachable": (0.0, -1.0),
    "both": (-1.0, -1.0),
}
_UDP = 9000
_NAT_PORT = 9001  # the NAT mapping's port (differs from the advertised one)
_TCP = 60000
_GCM_TAG = 16

# Event kinds on the heap.
_DELIVER, _TIMER, _WALK, _REVAL, _DIAL, _JOIN, _CHURN, _SAMPLE = range(8)
# Call kinds.
_QUERY, _PING, _REVAL_PING = range(3)


@dataclass(frozen=True, slots=True)
class SimConfig:
    nodes: int = 10_000
    hours: float = 1.0
    churn_per_hour: float = 0.0
    unreachable: float = 0.0
    seed: int = 1
    bootnodes: int = 3
    ramp: float = 600.0  # the initial nodes join uniformly over this many seconds
    target: int = 6  # connected peers a node wants (issue 10: "6 good peers")
    max_inbound: int = 44  # nwaku --max-connections 50, less the outbound target
    max_parallel_dials: int = 8
    dial_timeout: float = 10.0
    lookup_interval: float = 5.0  # Discv5Config.lookup_interval (while short of peers)
    # The service's idle walks (30 s) and revalidation (0..10 s) cost ~16 000 packets per node and
    # hour, 10-30x what 10 000 nodes can afford here; slower background cadences by default
    # (docs/performance.md "discv5 at scale" says what that changes).
    idle_lookup_interval: float = 900.0  # Discv5Config.idle_lookup_interval: 30
    revalidate_max: float = 300.0  # Discv5Config.revalidate_max: 10
    request_timeout: float = 4.0
    sample_every: float = 60.0
    real_crypto: bool = False
    scenario: str = "custom"


class _Walk:
    __slots__ = ("busy", "depth", "finished", "inflight", "is_self", "lk", "start")

    def __init__(self, lk: Lookup, start: float, is_self: bool) -> None:
        self.lk = lk
        self.start = start
        self.is_self = is_self
        self.inflight = 0
        self.busy = False
        self.finished = False
        self.depth: dict[bytes, int] = {}


class _Node:
    __slots__ = ("addr", "alive", "boot", "boot_done", "checking", "contacted", "core", "dialing", "enr", "found",
                 "good", "idx", "inbound", "lat", "pending", "reachable", "rng", "src", "start", "timer_at", "waiters")

    def __init__(self, idx: int, enr: Enr, core: Discv5Core, addr: tuple[str, int], src: tuple[str, int],
                 reachable: bool, lat: float, start: float, boot: bool, rng: random.Random) -> None:
        self.idx = idx
        self.enr = enr
        self.core = core
        self.addr = addr  # advertised (ENR) endpoint
        self.src = src  # where its packets come from (the NAT mapping when unreachable)
        self.reachable = reachable
        self.lat = lat
        self.start = start
        self.boot = boot
        self.rng = rng
        self.alive = True
        self.boot_done: float | None = None
        self.contacted: set[tuple[str, int]] = set()  # NAT: remotes with an open mapping
        self.waiters: dict[bytes, tuple[int, Enr, _Walk | None]] = {}
        self.found: dict[bytes, Enr] = {}
        self.pending: deque[Enr] = deque()
        self.good: dict[int, None] = {}  # connected peers we dialled (ordered, for determinism)
        self.inbound: dict[int, None] = {}  # peers that dialled us
        self.dialing: dict[int, None] = {}
        self.checking: dict[bytes, None] = {}  # liveness checks in flight
        self.timer_at = math.inf


# ---------------------------------------------------------------------------------------- crypto switches

_PUBS: dict[bytes, bytes] = {}  # private -> compressed public key (the null id-signature needs the signer's)


def _null_encrypt(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    return plaintext + key


def _null_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    if len(ciphertext) < _GCM_TAG or ciphertext[-_GCM_TAG:] != key:
        raise Discv5DecodeError("message authentication failed")
    return ciphertext[:-_GCM_TAG]


def _null_derive_keys(eph_private: bytes | None, remote_public: bytes, node_id_a: bytes, node_id_b: bytes,
                      challenge_data: bytes, *, secret: bytes | None = None) -> tuple[bytes, bytes]:
    kd = hashlib.sha256(challenge_data + node_id_a + node_id_b).digest()
    return kd[:16], kd[16:]


def _null_sig(public_key: bytes, challenge_data: bytes, eph_pubkey: bytes, node_id_b: bytes) -> bytes:
    return hashlib.sha256(public_key + challenge_data + eph_pubkey + node_id_b).digest() * 2


def _null_id_sign(static_private: bytes, challenge_data: bytes, eph_pubkey: bytes, node_id_b: bytes) -> bytes:
    return _null_sig(_PUBS[static_private], challenge_data, eph_pubkey, node_id_b)


def _null_id_verify(public_key: bytes, signature: bytes, challenge_data: bytes, eph_pubkey: bytes,
                    node_id_b: bytes) -> bool:
    return signature == _null_sig(public_key, challenge_data, eph_pubkey, node_id_b)


class _NullEphemeralKey:
    """Stands in for coincurve's PrivateKey for the handshake's ephemeral key (no EC point multiply)."""

    __slots__ = ("public_key", "secret")

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.public_key = self

    def format(self, compressed: bool = True) -> bytes:
        return b"\x02" + self.secret


def _memo_by_record(fn: Callable[[Enr], Any]) -> Callable[[Enr], Any]:
    cache: dict[bytes, Any] = {}

    def wrapper(enr: Enr) -> Any:
        raw = enr.raw
        try:
            return cache[raw]
        except KeyError:
            v = cache[raw] = fn(enr)
            return v

    return wrapper


def _memo(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    cache: dict[str, Any] = {}

    def wrapper(arg: str) -> Any:
        try:
            return cache[arg]
        except KeyError:
            v = cache[arg] = fn(arg)
            return v

    return wrapper


class _FastCtr:
    """``packet.AES`` for header masking: the same AES-128-CTR, from the ``cryptography`` package
    (about 3x less per-call overhead than pycryptodome's ``AES.new``)."""

    MODE_CTR = 6

    @staticmethod
    def new(key: bytes, mode: int, *, nonce: bytes, initial_value: bytes) -> Any:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        assert mode == _FastCtr.MODE_CTR and nonce == b""
        ctx = Cipher(algorithms.AES(key), modes.CTR(initial_value)).encryptor()
        return _CtrStream(ctx)


class _CtrStream:
    __slots__ = ("decrypt", "encrypt")

    def __init__(self, ctx: Any) -> None:
        self.encrypt = self.decrypt = ctx.update


@contextlib.contextmanager
def _patched(real_crypto: bool) -> Iterator[None]:
    """Memoise ENR decoding (always) and null the session crypto (unless ``real_crypto``), then undo."""
    saved: list[tuple[object, str, object]] = []

    def put(obj: object, name: str, value: object) -> None:
        saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    decode = Enr.from_rlp.__func__  # type: ignore[attr-defined]
    cache: dict[bytes, Enr] = {}

    def from_rlp(cls: type[Enr], raw: bytes) -> Enr:
        e = cache.get(raw)
        if e is None:
            e = decode(cls, raw)
            cache[bytes(raw)] = e
        return e

    put(Enr, "from_rlp", classmethod(from_rlp))
    ids: dict[bytes, bytes] = {}
    node_id = Enr.node_id.fget  # type: ignore[attr-defined]

    def memo_node_id(self: Enr) -> bytes:
        try:
            return ids[self.raw]
        except KeyError:
            v = ids[self.raw] = node_id(self)
            return v

    put(Enr, "node_id", property(memo_node_id))
    # Pure helpers that parse a record's fields on every call: memoised per record (same results).
    for mod, name in ((table_mod, "udp_endpoint"), (core_mod, "udp_endpoint"), (table_mod, "_subnet")):
        put(mod, name, _memo_by_record(getattr(mod, name)))
    for name in ("_is_lan", "_ip_bytes"):
        put(core_mod, name, _memo(getattr(core_mod, name)))
    put(packet_mod, "AES", _FastCtr)
    if not real_crypto:
        put(packet_mod, "aes_gcm_encrypt", _null_encrypt)
        put(packet_mod, "aes_gcm_decrypt", _null_decrypt)
        put(core_mod, "derive_keys", _null_derive_keys)
        put(core_mod, "id_sign", _null_id_sign)
        put(core_mod, "id_verify", _null_id_verify)
        put(core_mod, "PrivateKey", _NullEphemeralKey)
    try:
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


# ---------------------------------------------------------------------------------------- the simulation


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _summary(xs: list[float], digits: int = 3) -> dict[str, Any]:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "mean": round(sum(xs) / len(xs), digits),
            **{f"p{int(q * 100)}": round(_pct(xs, q) or 0.0, digits) for q in (0.5, 0.9, 0.99)},
            "max": round(max(xs), digits)}


class Simulation:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = itertools.count()
        self.nodes: list[_Node] = []
        self.by_id: dict[bytes, _Node] = {}
        self.net: dict[tuple[str, int], _Node] = {}
        self._alive_pool: list[int] = []  # non-bootnode live nodes (swap-remove)
        self._pool_pos: dict[int, int] = {}
        self.boot_enrs: list[Enr] = []
        self.boot_ids: frozenset[bytes] = frozenset()
        self.shards = RelayShards(1, (0,))
        self.packets = 0
        self.packets_lost = 0
        self.drops: Counter[str] = Counter()
        self.filtered: Counter[str] = Counter()
        self.calls = Counter[str]()
        self.lookups: list[tuple[float, int, int, float, bool]] = []  # (t, hops, queries, duration, self)
        self.bootstrap: list[tuple[float, float, str, bool]] = []  # (join t, latency, cohort, reachable)
        self.samples: list[dict[str, Any]] = []
        self.left = 0
        self.joined = 0
        self._verdicts: dict[bytes, FilterResult] = {}

    # ------------------------------------------------------------------ plumbing

    def _push(self, t: float, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), kind, a, b, c))

    def _new_node(self, boot: bool, start: float) -> _Node:
        idx = len(self.nodes)
        key = self.rng.randbytes(32)
        ip = f"{20 + (idx >> 16)}.{(idx >> 8) & 255}.{idx & 255}.1"  # one public /24 each (table IP limits)
        enr = Enr.build(key, 1, ip=ip, udp=_UDP, tcp=_TCP, waku2=Waku2.RELAY, cluster=self.shards.cluster,
                        shards=self.shards.shards)
        _PUBS[key] = enr.public_key
        nrng = random.Random(self.rng.getrandbits(64))
        c = Discv5Core(key, enr, nrng.randbytes, request_timeout=self.cfg.request_timeout)
        reachable = boot or self.rng.random() >= self.cfg.unreachable
        addr = (ip, _UDP)
        src = addr if reachable else (ip, _NAT_PORT)
        n = _Node(idx, enr, c, addr, src, reachable, self.rng.uniform(0.010, 0.075), start, boot, nrng)
        self.nodes.append(n)
        self.by_id[enr.node_id] = n
        self.net[src] = n
        return n

    def _start(self, n: _Node) -> None:
        for b in self.boot_enrs:
            if b.node_id != n.enr.node_id:
                n.core.remember(b)
                n.core.table.add(b, self.now)
        if not n.boot:
            self._pool_pos[n.idx] = len(self._alive_pool)
            self._alive_pool.append(n.idx)
        self._begin_walk(n, n.core.local_id)
        self._push(self.now + n.rng.uniform(0, self.cfg.revalidate_max), _REVAL, n)

    def _send(self, n: _Node, o: Send) -> None:
        dst = self.net.get(o.addr)
        self.packets += 1
        if not n.reachable:
            n.contacted.add(o.addr)
        if dst is None or not dst.alive:
            self.packets_lost += 1
            return
        self._push(self.now + n.lat + dst.lat, _DELIVER, dst, n.src, o.data)

    def _handle(self, n: _Node, outs: list[Any]) -> None:
        for o in outs:
            t = type(o)
            if t is Send:
                self._send(n, o)
            elif t is CallDone or t is CallFailed:
                self._resolve(n, o)
            elif t is NodeContact:
                self._contact(n, o)
            elif t is Dropped:
                why = f" ({o.detail})" if o.reason == DropReason.BAD_HANDSHAKE else ""
                self.drops[o.reason.name.lower() + why] += 1
        d = n.core.next_deadline()
        if d is not None and d < n.timer_at:
            n.timer_at = d
            self._push(d, _TIMER, n)

    # ------------------------------------------------------------------ the shell's logic

    def _call(self, n: _Node, enr: Enr, msg: Any, kind: int, walk: _Walk | None = None) -> None:
        rid, outs = n.core.request(enr, msg, self.now)
        n.waiters[rid] = (kind, enr, walk)
        self._handle(n, outs)

    def _resolve(self, n: _Node, o: CallDone | CallFailed) -> None:
        w = n.waiters.pop(o.request_id, None)
        if w is None:
            return
        kind, enr, walk = w
        table = n.core.table
        if kind != _QUERY:
            n.checking.pop(enr.node_id, None)
        ok = type(o) is CallDone
        self.calls[("findnode" if kind == _QUERY else "ping") + ("_ok" if ok else "_failed")] += 1
        if ok:
            table.add(enr, self.now)
            table.mark_live(enr.node_id, self.now)
        else:
            table.mark_failed(enr.node_id, max_failures=3)
        if kind == _QUERY:
            assert walk is not None
            walk.inflight -= 1
            nid = enr.node_id
            if isinstance(o, CallDone):
                walk.lk.on_nodes(nid, o.enrs)
                d = walk.depth.get(nid, 1) + 1
                for rec in o.enrs:
                    walk.depth.setdefault(rec.node_id, d)
                    n.core.remember(rec)
                    check = table.add(rec, self.now)
                    if check is not None:
                        self._liveness(n, check)
            else:
                walk.lk.on_failure(nid)
            self._advance(n, walk)
        elif kind == _REVAL_PING and n.alive:
            self._push(self.now + n.rng.uniform(0, self.cfg.revalidate_max), _REVAL, n)

    def _liveness(self, n: _Node, entry: NodeEntry, kind: int = _PING) -> None:
        nid = entry.node_id
        if nid in n.checking:  # Discv5Service._liveness: one check per node at a time
            if kind == _REVAL_PING:
                self._push(self.now + n.rng.uniform(0, self.cfg.revalidate_max), _REVAL, n)
            return
        n.checking[nid] = None
        self._call(n, entry.enr, Ping(b"", n.enr.seq), kind)

    def _contact(self, n: _Node, o: NodeContact) -> None:
        table = n.core.table
        check = table.add(o.enr, self.now)
        entry = table.get(o.enr.node_id)
        if entry is not None and not entry.live:
            self._liveness(n, entry)
        if check is not None:
            self._liveness(n, check)

    def _begin_walk(self, n: _Node, target: bytes) -> None:
        seeds = n.core.table.closest(target) or self.boot_enrs
        walk = _Walk(Lookup(n.core.local_id, target, seeds), self.now, target == n.core.local_id)
        self._advance(n, walk)

    def _advance(self, n: _Node, walk: _Walk) -> None:
        if walk.busy or walk.finished:
            return
        walk.busy = True
        while True:
            qs = walk.lk.next_queries()
            for q in qs:
                walk.inflight += 1
                self._call(n, q.enr, FindNode(b"", q.distances), _QUERY, walk)
            if not qs or walk.inflight:
                break
        walk.busy = False
        if walk.inflight == 0:  # next_queries() had nothing left: the lookup is done
            self._finish_walk(n, walk)

    def _finish_walk(self, n: _Node, walk: _Walk) -> None:
        walk.finished = True
        best = walk.lk.closest()
        hops = walk.depth.get(best[0].node_id, 1) if best else 0
        self.lookups.append((walk.start, hops, walk.lk.queries_sent, self.now - walk.start, walk.is_self))
        self._offer(n, walk.lk.seen())
        if not n.alive:
            return
        if walk.is_self:
            self._begin_walk(n, n.rng.randbytes(32))
        else:
            enough = len(n.good) >= self.cfg.target
            self._push(self.now + (self.cfg.idle_lookup_interval if enough else self.cfg.lookup_interval),
                       _WALK, n)

    def _offer(self, n: _Node, enrs: list[Enr]) -> None:
        if n.boot:
            return  # bootnodes run discovery only
        for e in enrs:
            nid = e.node_id
            if nid == n.core.local_id:
                continue
            verdict = self._verdicts.get(e.raw)
            if verdict is None:  # every node has the same shards and bootnodes: one verdict per record
                verdict = self._verdicts[e.raw] = waku_filter(e, self.shards, self.boot_ids)
            if verdict != FilterResult.ACCEPT:
                self.filtered[verdict.name.lower()] += 1
                continue
            old = n.found.get(nid)
            if old is not None and old.seq >= e.seq:
                continue
            n.found[nid] = e
            n.pending.append(e)
        self._dial_more(n)

    # ------------------------------------------------------------------ the connection manager

    def _dial_more(self, n: _Node) -> None:
        cfg = self.cfg
        while (n.pending and len(n.good) + len(n.dialing) < cfg.target
               and len(n.dialing) < cfg.max_parallel_dials):
            peer = self.by_id.get(n.pending.popleft().node_id)
            if peer is None or peer is n or peer.idx in n.good or peer.idx in n.dialing:
                continue
            n.dialing[peer.idx] = None
            rtt = 2 * (n.lat + peer.lat)
            if not (peer.alive and peer.reachable):
                delay = cfg.dial_timeout
            elif len(peer.inbound) >= cfg.max_inbound:
                delay = rtt
            else:
                delay = 2 * rtt  # TCP + the multistream/noise exchange, roughly
            self._push(self.now + delay, _DIAL, n, peer)

    def _dial_done(self, n: _Node, peer: _Node) -> None:
        n.dialing.pop(peer.idx, None)
        if not n.alive:
            return
        if peer.alive and peer.reachable and len(peer.inbound) < self.cfg.max_inbound:
            n.good[peer.idx] = None
            peer.inbound[n.idx] = None
            if n.boot_done is None and len(n.good) >= self.cfg.target:
                n.boot_done = self.now
                cohort = "initial" if n.start <= self.cfg.ramp else "joined later"
                self.bootstrap.append((n.start, self.now - n.start, cohort, n.reachable))
        self._dial_more(n)

    def _leave(self, n: _Node) -> None:
        n.alive = False
        self.left += 1
        del self.net[n.src]
        pos = self._pool_pos.pop(n.idx)
        last = self._alive_pool.pop()
        if last != n.idx:
            self._alive_pool[pos] = last
            self._pool_pos[last] = pos
        for i in n.inbound:
            m = self.nodes[i]
            m.good.pop(n.idx, None)
            self._dial_more(m)
        for i in n.good:
            self.nodes[i].inbound.pop(n.idx, None)
        n.good.clear()
        n.inbound.clear()

    def _sample(self) -> None:
        settled_age = 300.0
        counts = Counter[str]()
        for i in self._alive_pool:
            n = self.nodes[i]
            ok = len(n.good) >= self.cfg.target
            tag = "reachable" if n.reachable else "unreachable"
            counts["all"] += 1
            counts["all_ok"] += ok
            counts[tag] += 1
            counts[tag + "_ok"] += ok
            if self.now - n.start >= settled_age:
                counts["settled"] += 1
                counts["settled_ok"] += ok

        def share(k: str) -> float | None:
            return round(counts[k + "_ok"] / counts[k], 4) if counts[k] else None

        self.samples.append({"t": round(self.now, 1), "alive": counts["all"], "share": share("all"),
                             "share_settled": share("settled"), "share_reachable": share("reachable"),
                             "share_unreachable": share("unreachable")})

    # ------------------------------------------------------------------ running

    def run(self, progress: Callable[[str], None] | None = None,
            checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        cfg = self.cfg
        end = cfg.hours * 3600.0
        wall0 = time.perf_counter()
        cpu0 = time.process_time()
        with _patched(cfg.real_crypto):
            boots = [self._new_node(True, 0.0) for _ in range(cfg.bootnodes)]
            self.boot_enrs = [b.enr for b in boots]
            self.boot_ids = frozenset(e.node_id for e in self.boot_enrs)
            for b in boots:
                self._start(b)
            for _ in range(cfg.nodes):
                self._push(self.rng.uniform(0, cfg.ramp), _JOIN)
            if cfg.churn_per_hour > 0:
                self._push(self._churn_gap(), _CHURN)
            self._push(cfg.sample_every, _SAMPLE)
            self._loop(end, progress, checkpoint, wall0, cpu0)
        wall = time.perf_counter() - wall0
        return self._results(wall, time.process_time() - cpu0)

    def _churn_gap(self) -> float:
        rate = self.cfg.churn_per_hour * max(1, self.cfg.nodes) / 3600.0  # of the full network, ramp or not
        return self.now + self.rng.expovariate(rate)

    def _loop(self, end: float, progress: Callable[[str], None] | None,
              checkpoint: Callable[[dict[str, Any]], None] | None, wall0: float, cpu0: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        next_report = 300.0
        while heap and heap[0][0] <= end:
            t, _, kind, a, b, c = pop(heap)
            self.now = t
            if kind == _DELIVER:
                if a.alive and (a.reachable or b in a.contacted):
                    self._handle(a, a.core.datagram(b, c, t))
                else:
                    self.packets_lost += 1
            elif kind == _TIMER:
                if a.alive and t == a.timer_at:
                    a.timer_at = math.inf
                    self._handle(a, a.core.tick(t))
            elif kind == _WALK:
                if a.alive:
                    self._begin_walk(a, a.rng.randbytes(32))
            elif kind == _REVAL:
                if a.alive:
                    entry = a.core.table.revalidation_candidate(a.rng.randrange(1 << 30))
                    if entry is None:
                        self._push(t + a.rng.uniform(0, self.cfg.revalidate_max), _REVAL, a)
                    else:
                        self._liveness(a, entry, _REVAL_PING)
            elif kind == _DIAL:
                self._dial_done(a, b)
            elif kind == _JOIN:
                self.joined += 1
                self._start(self._new_node(False, t))
            elif kind == _CHURN:
                if self._alive_pool:
                    self._leave(self.nodes[self._alive_pool[self.rng.randrange(len(self._alive_pool))]])
                    self.joined += 1
                    self._start(self._new_node(False, t))
                self._push(self._churn_gap(), _CHURN)
            elif kind == _SAMPLE:
                self._sample()
                self._push(t + self.cfg.sample_every, _SAMPLE)
                if t >= next_report:
                    next_report += 300.0
                    if checkpoint is not None:  # a run cut short still leaves its results so far
                        checkpoint(self._results(time.perf_counter() - wall0, time.process_time() - cpu0))
                    s = self.samples[-1]
                    if progress is not None:
                        progress(f"[{self.cfg.scenario}] t={t / 60:.0f} min wall={time.perf_counter() - wall0:.0f} s "
                             f"alive={s['alive']} share>=6={s['share']} packets={self.packets} "
                             f"lookups={len(self.lookups)}")
        self.now = end

    def _results(self, wall: float, cpu: float) -> dict[str, Any]:
        cfg = self.cfg
        rand = [x for x in self.lookups if not x[4]]
        boot_lat = [x[1] for x in self.bootstrap]
        cohorts: dict[str, Any] = {}
        joined_by = Counter[str]()
        for n in self.nodes:
            if not n.boot:
                joined_by["initial" if n.start <= cfg.ramp else "joined later"] += 1
        for cohort in ("initial", "joined later"):
            xs = [x[1] for x in self.bootstrap if x[2] == cohort]
            total = joined_by[cohort]
            cohorts[cohort] = {**_summary(xs), "nodes": total,
                               "reached": round(len(xs) / total, 4) if total else None}
        for tag, want in (("reachable", True), ("unreachable", False)):
            xs = [x[1] for x in self.bootstrap if x[3] == want]
            cohorts[tag] = _summary(xs)
        last = self.samples[-1] if self.samples else {}
        tail = [s["share"] for s in self.samples if s["t"] >= cfg.ramp + 600 and s["share"] is not None]
        return {
            "scenario": cfg.scenario,
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "virtual_s": round(self.now, 1), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "nodes_total": len(self.nodes), "nodes_alive": len(self._alive_pool), "left": self.left,
            "packets": self.packets, "packets_lost": self.packets_lost,
            "calls": dict(sorted(self.calls.items())), "dropped": dict(sorted(self.drops.items())),
            "filtered": dict(sorted(self.filtered.items())),
            "lookup_hops": _summary([float(x[1]) for x in rand], 2),
            "lookup_hops_hist": dict(sorted(Counter(x[1] for x in rand).items())),
            "lookup_queries": _summary([float(x[2]) for x in rand], 2),
            "lookup_duration_s": _summary([x[3] for x in rand]),
            "self_lookup_duration_s": _summary([x[3] for x in self.lookups if x[4]]),
            "bootstrap_s": _summary(boot_lat), "bootstrap_by": cohorts,
            "bootstrap_cdf": [round(x, 2) for x in sorted(boot_lat)[:: max(1, len(boot_lat) // 200)]],
            "share_final": last.get("share"),
            "share_min_after_ramp": min(tail) if tail else None,
            "share_mean_after_ramp": round(sum(tail) / len(tail), 4) if tail else None,
            "samples": self.samples,
        }

    # ------------------------------------------------------------------ checks (tests)

    def live_unreachable_entries(self) -> int:
        """Table entries marked live whose node is unreachable (the NAT model says: never)."""
        bad = 0
        for n in self.nodes:
            for e in n.core.table.entries():
                m = self.by_id.get(e.node_id)
                if e.live and m is not None and not m.reachable:
                    bad += 1
        return bad


def run_scenario(name: str, base: SimConfig, progress: Callable[[str], None] | None = None,
                 checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    churn, unreachable = SCENARIOS[name]
    cfg = SimConfig(**{**{k: getattr(base, k) for k in base.__dataclass_fields__},
                       "churn_per_hour": base.churn_per_hour if churn < 0 else churn,
                       "unreachable": base.unreachable if unreachable < 0 else unreachable,
                       "scenario": name})
    return Simulation(cfg).run(progress, checkpoint)


# ---------------------------------------------------------------------------------------- plots


def plot(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    paths: list[Path] = []
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    for i, r in enumerate(results):
        label = r["scenario"]
        ts = [s["t"] / 60 for s in r["samples"]]
        axes[0].plot(ts, [s["share"] for s in r["samples"]], label=label)
        cdf = r["bootstrap_cdf"]
        if cdf:
            reached = r["bootstrap_s"]["n"] / max(1, r["nodes_total"] - r["config"]["bootnodes"])
            axes[1].plot(cdf, [reached * (i + 1) / len(cdf) for i in range(len(cdf))], label=label)
        hist = {int(k): v for k, v in r["lookup_hops_hist"].items()}
        total = sum(hist.values()) or 1
        ks = sorted(int(k) for k in hist)
        off = (i - (len(results) - 1) / 2) * 0.8 / len(results)
        axes[2].bar([k + off for k in ks], [hist[k] / total for k in ks], width=0.8 / len(results), label=label)
        qs = ("p50", "p90", "p99")
        axes[3].bar([j + off for j in range(len(qs))], [r["lookup_duration_s"].get(q, 0.0) for q in qs],
                    width=0.8 / len(results), label=label)
    n = results[0]["config"]["nodes"]
    low = min([s["share"] for r in results for s in r["samples"] if s["share"] is not None] or [0.0])
    axes[0].set(title=f"share of live nodes with >= 6 peers ({n} nodes)", xlabel="virtual minutes",
                ylim=(min(0.9, low - 0.02), 1.005))
    axes[1].set(title="bootstrap latency (join -> 6 peers), CDF", xlabel="seconds", ylabel="share of nodes",
                xscale="log", ylim=(0, 1.02))
    axes[1].set_xticks([0.5, 1, 2, 3, 5, 10, 20, 50])
    axes[1].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[1].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[2].set(title="random-walk lookup hops", xlabel="hops to the closest node", ylabel="share of lookups")
    axes[3].set(title="random-walk lookup time", ylabel="virtual seconds", xticks=range(3),
                xticklabels=["p50", "p90", "p99"])
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "discv5_sim.png"
    fig.savefig(p, dpi=80)
    plt.close(fig)
    paths.append(p)
    return paths


def table(results: list[dict[str, Any]]) -> str:
    """The docs/performance.md results table (Markdown), one column per scenario."""

    def f(x: Any, unit: str = "") -> str:
        return "–" if x is None else f"{x:g}{unit}"

    def failed(r: dict[str, Any], call: str) -> str:
        bad, ok = r["calls"].get(call + "_failed", 0), r["calls"].get(call + "_ok", 0)
        return f"{bad} of {bad + ok}"

    def per_node_hour(r: dict[str, Any]) -> float:
        return float(r["packets"]) / max(1, r["nodes_total"]) / max(1e-9, r["virtual_s"] / 3600)

    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("nodes (+ bootnodes), virtual time", lambda r: f"{r['config']['nodes']} (+{r['config']['bootnodes']}), "
                                                        f"{r['virtual_s'] / 60:g} min"),
        ("churn / unreachable", lambda r: f"{r['config']['churn_per_hour']:.0%}/h / {r['config']['unreachable']:.0%}"),
        ("nodes that left / joined later", lambda r: f"{r['left']} / {r['bootstrap_by']['joined later']['nodes']}"),
        ("bootstrap p50 / p90 / p99 / max", lambda r: " / ".join(f(r["bootstrap_s"].get(k), " s")
                                                                 for k in ("p50", "p90", "p99", "max"))),
        ("… reached 6 peers (initial / joined later)",
         lambda r: " / ".join(f(r["bootstrap_by"][c]["reached"]) for c in ("initial", "joined later"))),
        ("… p50 reachable / unreachable nodes",
         lambda r: " / ".join(f(r["bootstrap_by"][c].get("p50"), " s") for c in ("reachable", "unreachable"))),
        ("random lookups", lambda r: f"{r['lookup_hops']['n']}"),
        ("hops p50 / p90 / max", lambda r: " / ".join(f(r["lookup_hops"].get(k)) for k in ("p50", "p90", "max"))),
        ("queries per lookup, mean / p90", lambda r: f"{f(r['lookup_queries'].get('mean'))} / "
                                                     f"{f(r['lookup_queries'].get('p90'))}"),
        ("lookup time p50 / p90 / p99", lambda r: " / ".join(f(r["lookup_duration_s"].get(k), " s")
                                                             for k in ("p50", "p90", "p99"))),
        ("share with ≥ 6 peers: end / min / mean after the ramp + 10 min",
         lambda r: f"{f(r['share_final'])} / {f(r['share_min_after_ramp'])} / {f(r['share_mean_after_ramp'])}"),
        ("FINDNODE / PING calls that failed", lambda r: f"{failed(r, 'findnode')} / {failed(r, 'ping')}"),
        ("packets (per node and virtual hour)", lambda r: f"{r['packets']} ({per_node_hour(r):.0f})"),
        ("CPU s (µs per packet), peak RSS", lambda r: f"{r['cpu_s']:g} ({r['cpu_s'] / max(1, r['packets']) * 1e6:.0f}),"
                                                      f" {r['max_rss_mib']} MiB"),
    ]
    out = ["| | " + " | ".join(r["scenario"] for r in results) + " |",
           "|---|" + "---|" * len(results)]
    out += [f"| {name} | " + " | ".join(fn(r) for r in results) + " |" for name, fn in rows]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench discv5_sim", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    d = SimConfig()
    p.add_argument("--nodes", type=int, default=d.nodes, help=f"nodes besides the bootnodes (default {d.nodes})")
    p.add_argument("--hours", type=float, default=d.hours, help=f"virtual hours (default {d.hours})")
    p.add_argument("--churn-per-hour", type=float, default=0.10,
                   help="share of nodes replaced per hour in the churn scenarios (default 0.10)")
    p.add_argument("--unreachable", type=float, default=0.30,
                   help="share of nodes behind NAT in the unreachable scenarios (default 0.30)")
    p.add_argument("--scenario", choices=("all", *SCENARIOS), action="append",
                   help="scenario(s) to run (repeatable; default all four)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--ramp", type=float, default=d.ramp, help=f"initial nodes join over this many s ({d.ramp:g})")
    p.add_argument("--lookup-interval", type=float, default=d.lookup_interval,
                   help=f"s between walks while short of peers (default {d.lookup_interval:g}, as the service)")
    p.add_argument("--idle-lookup-interval", type=float, default=d.idle_lookup_interval,
                   help=f"s between walks with enough peers (default {d.idle_lookup_interval:g}; the service: 30)")
    p.add_argument("--revalidate-max", type=float, default=d.revalidate_max,
                   help=f"revalidation PINGs every U(0, this) s (default {d.revalidate_max:g}; the service: 10)")
    p.add_argument("--real-crypto", action="store_true", help="keep AES-GCM, ECDH and id-signatures real")
    p.add_argument("--out-dir", type=Path, default=Path("bench-out"), help="where JSON and PNG go")
    p.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON files in --out-dir")
    p.add_argument("--quick", action="store_true", help="500 nodes, 10 virtual minutes, 120 s ramp")
    return p


def _scenarios(chosen: list[str] | None) -> list[str]:
    names = [s for s in chosen or () if s != "all"]
    return list(dict.fromkeys(names)) if names else list(SCENARIOS)


def cli(argv: list[str]) -> None:
    a = _parser().parse_args(argv)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    names = _scenarios(a.scenario)
    if a.plot_only:
        res = [json.loads((a.out_dir / f"discv5_sim_{s}.json").read_text()) for s in SCENARIOS
               if (a.out_dir / f"discv5_sim_{s}.json").exists()]
        for p in plot(res, a.out_dir):
            print(p, file=sys.stderr)
        print(table(res))
        return
    base = SimConfig(nodes=a.nodes, hours=a.hours, churn_per_hour=a.churn_per_hour, unreachable=a.unreachable,
                     seed=a.seed, ramp=a.ramp, lookup_interval=a.lookup_interval,
                     idle_lookup_interval=a.idle_lookup_interval, revalidate_max=a.revalidate_max,
                     real_crypto=a.real_crypto)
    if a.quick:
        base = SimConfig(**{**{k: getattr(base, k) for k in base.__dataclass_fields__},
                            "nodes": 500, "hours": 1 / 6, "ramp": 120.0})
    machine = {"machine": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    results = []
    for name in names:
        path = a.out_dir / f"discv5_sim_{name}.json"

        def save(r: dict[str, Any], path: Path = path) -> None:
            path.write_text(json.dumps({**r, **machine}, indent=1) + "\n")

        r = {**run_scenario(name, base, lambda s: print(s, file=sys.stderr, flush=True), save), **machine}
        save(r)
        results.append(r)
        print(json.dumps({"bench": "discv5_sim", **{k: v for k, v in r.items() if k != "samples"}}), flush=True)
    if len(results) > 1:
        for p in plot(results, a.out_dir):
            print(p, file=sys.stderr)


def main() -> list[dict[str, Any]]:
    """``python -m bench`` (all modules): the quick run of the four scenarios, without the time series."""
    base = SimConfig(nodes=500, hours=1 / 6, ramp=120.0, churn_per_hour=0.10, unreachable=0.30)
    return [{k: v for k, v in run_scenario(s, base).items() if k not in ("samples", "bootstrap_cdf")}
            for s in SCENARIOS]


if __name__ == "__main__":
    cli(sys.argv[1:])
