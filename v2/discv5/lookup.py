"""Iterative Kademlia lookup as a pure state machine (discv5-theory.md "Lookup"; go-ethereum
p2p/discover/lookup.go).

Start from the k closest known nodes, keep at most α = 3 FINDNODE requests in flight, merge every
answer into a list sorted by XOR distance to the target, and finish when the k closest nodes seen
have all answered or failed.  Each queried node is asked for ``[d, d+1, d-1]`` around
``d = log2distance(target, node)`` (geth ``lookupDistances``, nim-eth likewise).  The driver (the
trio shell or a simulator) calls :meth:`next_queries`, sends them, and reports back with
:meth:`on_nodes` / :meth:`on_failure`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from v2.discv5.table import BUCKET_SIZE, log_distance, xor_distance
from v2.enr.enr import Enr

__all__ = ["ALPHA", "Lookup", "Query", "lookup_distances"]

ALPHA = 3


def lookup_distances(target: bytes, node_id: bytes) -> tuple[int, ...]:
    """geth lookupDistances: ``d`` then alternately ``d+i`` / ``d-i`` within 1..256, 3 in all."""
    d = log_distance(target, node_id)
    out = [d]
    i = 1
    while len(out) < 3 and i <= 256:
        if d + i <= 256:
            out.append(d + i)
        if d - i > 0 and len(out) < 3:
            out.append(d - i)
        i += 1
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Query:
    enr: Enr
    distances: tuple[int, ...]


class Lookup:
    def __init__(self, local_id: bytes, target: bytes, seeds: Iterable[Enr], *, alpha: int = ALPHA,
                 k: int = BUCKET_SIZE) -> None:
        self.local_id = local_id
        self.target = target
        self.alpha = alpha
        self.k = k
        self._seen: dict[bytes, Enr] = {}
        self._asked: set[bytes] = set()
        self._inflight: set[bytes] = set()
        self._answered: set[bytes] = set()
        self._failed: set[bytes] = set()
        self.queries_sent = 0
        for e in seeds:
            self._offer(e)

    def _offer(self, enr: Enr) -> None:
        nid = enr.node_id
        if nid == self.local_id:
            return
        old = self._seen.get(nid)
        if old is None or enr.seq > old.seq:
            self._seen[nid] = enr

    def _ranked(self) -> list[bytes]:
        return sorted((n for n in self._seen if n not in self._failed),
                      key=lambda n: xor_distance(n, self.target))

    @property
    def done(self) -> bool:
        if self._inflight:
            return False
        return all(n in self._asked for n in self._ranked()[:self.k])

    def next_queries(self) -> list[Query]:
        out: list[Query] = []
        for nid in self._ranked()[:self.k]:
            if len(self._inflight) >= self.alpha:
                break
            if nid in self._asked:
                continue
            self._asked.add(nid)
            self._inflight.add(nid)
            self.queries_sent += 1
            out.append(Query(self._seen[nid], lookup_distances(self.target, nid)))
        return out

    def on_nodes(self, node_id: bytes, enrs: Iterable[Enr]) -> None:
        self._inflight.discard(node_id)
        self._answered.add(node_id)
        for e in enrs:
            self._offer(e)

    def on_failure(self, node_id: bytes) -> None:
        self._inflight.discard(node_id)
        self._failed.add(node_id)

    def closest(self) -> list[Enr]:
        """The k closest nodes that answered (the lookup's result)."""
        return [self._seen[n] for n in self._ranked() if n in self._answered][:self.k]

    def seen(self) -> list[Enr]:
        """Every record learned, closest first (nim-eth ``query`` returns all of these)."""
        return [self._seen[n] for n in self._ranked()]
