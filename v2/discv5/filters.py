"""Which discovered records are Waku peers worth handing to the peer manager (pure).

go-waku waku/v2/discv5/discover.go ``evaluateNode`` + filters.go ``DefaultPredicate``, nwaku
waku/discovery/waku_discv5.nim ``shardingPredicate``: a record needs ``waku2`` ≠ 0 and a libp2p
address; when we advertise shards, it must share our cluster and at least one shard, unless it is
one of our bootnodes.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import IntEnum

from v2.enr.enr import Enr, RelayShards

__all__ = ["FilterResult", "waku_filter"]


class FilterResult(IntEnum):
    ACCEPT = 0
    NO_WAKU2 = 1
    NOT_DIALABLE = 2
    OTHER_CLUSTER = 3
    NO_SHARED_SHARD = 4


def waku_filter(enr: Enr, local: RelayShards | None, bootnodes: Collection[bytes] = ()) -> FilterResult:
    if not enr.waku2:  # absent or 0 (RFC 31)
        return FilterResult.NO_WAKU2
    if not enr.multiaddrs():
        return FilterResult.NOT_DIALABLE
    if local is None or enr.node_id in bootnodes:
        return FilterResult.ACCEPT
    theirs = enr.shards
    if theirs is None or theirs.cluster != local.cluster:
        return FilterResult.OTHER_CLUSTER
    if not set(theirs.shards) & set(local.shards):
        return FilterResult.NO_SHARED_SHARD
    return FilterResult.ACCEPT
