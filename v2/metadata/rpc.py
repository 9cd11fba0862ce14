"""The node's verdict on a peer's metadata (waku-v2.md §12, nwaku peer_manager ``onPeerMetadata``).

Pure.  A peer is kept only if it answered and reported our cluster id.  Shards are not compared:
js-waku light nodes answer ``shards: []`` and must be kept, and nwaku master (>= v0.37) no longer
drops relay peers without a common shard either.
"""

from __future__ import annotations

from enum import IntEnum

from v2.metadata.rpc_codec import Metadata

__all__ = ["Verdict", "judge"]


class Verdict(IntEnum):
    KEEP = 0
    QUERY_FAILED = 1  # no metadata protocol, a broken stream, or an undecodable answer
    NO_CLUSTER = 2
    CLUSTER_MISMATCH = 3

    @property
    def reason(self) -> str:
        return self.name.lower()


def judge(cluster_id: int, remote: Metadata | None) -> Verdict:
    if remote is None:
        return Verdict.QUERY_FAILED
    if remote.cluster_id is None:
        return Verdict.NO_CLUSTER
    if remote.cluster_id != cluster_id:
        return Verdict.CLUSTER_MISMATCH
    return Verdict.KEEP
