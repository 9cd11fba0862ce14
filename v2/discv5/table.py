"""Kademlia routing table for discv5 (discv5-theory.md "Node Table"; go-ethereum p2p/discover/table.go,
nim-eth eth/p2p/discoveryv5/routing_table.nim).  Pure: ``now`` is passed in.

256 k-buckets indexed by ``log2distance(local, node)`` (1..256), k = 16, least recently seen first,
with a replacement cache per bucket (10, geth ``maxReplacements``).  Entries start *unverified*;
one becomes ``live`` when it answers one of our requests, and only live entries are relayed in
NODES answers (spec; nim-eth ``seenOnly``).  When a bucket is full the newcomer waits in the
replacement cache and the bucket's least-recently-seen entry is due for a liveness check; an entry
that fails is removed and the most recently seen replacement takes its place.  IP limits (2 per
bucket, 10 per table, per /24) apply only to public addresses, as geth ``addIP`` and nim-eth do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from v2.enr.enr import Enr

__all__ = ["BUCKET_SIZE", "NodeEntry", "RoutingTable", "log_distance", "xor_distance"]

BUCKET_SIZE = 16
MAX_REPLACEMENTS = 10
BUCKET_IP_LIMIT = 2
TABLE_IP_LIMIT = 10


def log_distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_length()


def xor_distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


@dataclass(slots=True)
class NodeEntry:
    enr: Enr
    added: float
    last_seen: float
    live: bool = False
    failures: int = 0

    @property
    def node_id(self) -> bytes:
        return self.enr.node_id


@dataclass(slots=True)
class _Bucket:
    entries: list[NodeEntry] = field(default_factory=list)  # least recently seen first
    replacements: list[NodeEntry] = field(default_factory=list)  # most recent last


def _subnet(enr: Enr) -> str | None:
    """The /24 an entry counts against, or None when limits do not apply (LAN, loopback, none)."""
    if enr.ip is None:
        return None
    ip = ipaddress.IPv4Address(enr.ip)
    if ip.is_private or ip.is_loopback or ip.is_link_local:
        return None
    return str(ipaddress.IPv4Network(f"{enr.ip}/24", strict=False))


def udp_endpoint(enr: Enr) -> tuple[str, int] | None:
    """The address a record can be contacted on (ip + udp, or ip6 + udp6)."""
    if enr.ip is not None and enr.udp:
        return enr.ip, enr.udp
    if enr.ip6 is not None and enr.udp6:
        return enr.ip6, enr.udp6
    return None


class RoutingTable:
    def __init__(self, local_id: bytes, *, bucket_size: int = BUCKET_SIZE,
                 max_replacements: int = MAX_REPLACEMENTS) -> None:
        self.local_id = local_id
        self.bucket_size = bucket_size
        self.max_replacements = max_replacements
        self._buckets = [_Bucket() for _ in range(257)]  # index = log distance; 0 unused (= self)
        self._index: dict[bytes, int] = {}

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return sum(len(b.entries) for b in self._buckets)

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, bytes) and node_id in self._index and self.get(node_id) is not None

    def get(self, node_id: bytes) -> NodeEntry | None:
        d = self._index.get(node_id)
        if d is None:
            return None
        for e in self._buckets[d].entries:
            if e.node_id == node_id:
                return e
        return None

    def entries(self) -> list[NodeEntry]:
        return [e for b in self._buckets for e in b.entries]

    def at_distance(self, distance: int, *, live_only: bool = True) -> list[NodeEntry]:
        if not 1 <= distance <= 256:
            return []
        return [e for e in self._buckets[distance].entries if e.live or not live_only]

    def closest(self, target: bytes, n: int = BUCKET_SIZE, *, live_only: bool = False) -> list[Enr]:
        es = [e for e in self.entries() if e.live or not live_only]
        es.sort(key=lambda e: xor_distance(e.node_id, target))
        return [e.enr for e in es[:n]]

    def bucket_fill(self) -> dict[int, int]:
        return {d: len(b.entries) for d, b in enumerate(self._buckets) if b.entries}

    def replacements(self, distance: int) -> list[Enr]:
        return [e.enr for e in self._buckets[distance].replacements]

    # ------------------------------------------------------------------ updates

    def _ip_allowed(self, enr: Enr, bucket: _Bucket) -> bool:
        net = _subnet(enr)
        if net is None:
            return True
        in_bucket = sum(1 for e in bucket.entries if _subnet(e.enr) == net)
        in_table = sum(1 for e in self.entries() if _subnet(e.enr) == net)
        return in_bucket < BUCKET_IP_LIMIT and in_table < TABLE_IP_LIMIT

    def add(self, enr: Enr, now: float, *, live: bool = False) -> NodeEntry | None:
        """Insert or refresh a record.

        Returns the entry that now needs a liveness check because its bucket is full (its
        least-recently-seen member), or None.  A known node keeps its place unless ``live``;
        a newer record (higher seq) replaces the stored one.
        """
        nid = enr.node_id
        d = log_distance(self.local_id, nid)
        if d == 0 or udp_endpoint(enr) is None:
            return None
        bucket = self._buckets[d]
        for e in bucket.entries:
            if e.node_id == nid:
                if enr.seq > e.enr.seq:
                    e.enr = enr
                if live:
                    e.live = True
                    e.failures = 0
                    e.last_seen = now
                    bucket.entries.remove(e)
                    bucket.entries.append(e)
                return None
        if len(bucket.entries) < self.bucket_size:
            if not self._ip_allowed(enr, bucket):
                return None
            bucket.entries.append(NodeEntry(enr, now, now, live=live))
            self._index[nid] = d
            return None
        # Full: remember as a replacement and ask for the oldest member to be checked.
        for r in bucket.replacements:
            if r.node_id == nid:
                bucket.replacements.remove(r)
                break
        bucket.replacements.append(NodeEntry(enr, now, now, live=live))
        del bucket.replacements[:-self.max_replacements]
        return bucket.entries[0]

    def mark_live(self, node_id: bytes, now: float) -> None:
        e = self.get(node_id)
        if e is not None:
            e.live = True
            e.failures = 0
            e.last_seen = now
            b = self._buckets[self._index[node_id]]
            b.entries.remove(e)
            b.entries.append(e)

    def mark_failed(self, node_id: bytes, *, max_failures: int = 1) -> bool:
        """Count a failed request; after ``max_failures`` the entry is replaced.  True if removed."""
        e = self.get(node_id)
        if e is None:
            return False
        e.failures += 1
        if e.failures < max_failures and e.live:
            return False
        self.remove(node_id)
        return True

    def remove(self, node_id: bytes) -> None:
        d = self._index.pop(node_id, None)
        if d is None:
            return
        b = self._buckets[d]
        b.entries = [e for e in b.entries if e.node_id != node_id]
        if b.replacements and len(b.entries) < self.bucket_size:
            r = b.replacements.pop()
            b.entries.append(r)
            self._index[r.node_id] = d

    def revalidation_candidate(self, pick: int) -> NodeEntry | None:
        """The least-recently-seen entry of a bucket chosen by ``pick`` (caller's randomness)."""
        filled = [b for b in self._buckets if b.entries]
        if not filled:
            return None
        return filled[pick % len(filled)].entries[0]

    def add_many(self, enrs: Iterable[Enr], now: float) -> list[NodeEntry]:
        out = []
        for enr in enrs:
            c = self.add(enr, now)
            if c is not None:
                out.append(c)
        return out
