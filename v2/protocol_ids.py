"""Every Waku v2 protocol id we speak, in one place (waku-v2.md §1).

Services and clients import their id from here, so identify's list, the node's mounts and the
tests can never disagree about a string.
"""

from __future__ import annotations

__all__ = [
    "FILTER_PUSH",
    "FILTER_SUBSCRIBE",
    "IDENTIFY",
    "LIGHTPUSH_V2",
    "LIGHTPUSH_V3",
    "METADATA",
    "PEER_EXCHANGE",
    "PING",
    "RELAY",
    "STORE_LEGACY",
    "STORE_V3",
]

RELAY = "/vac/waku/relay/2.0.0"
STORE_V3 = "/vac/waku/store-query/3.0.0"
# Legacy store: the only store go-waku v0.10.0 serves; we serve it beside store v3 from the same
# archive (v2/store/legacy_protocol.py) and query go-waku with it (v2/store/legacy_client.py).
STORE_LEGACY = "/vac/waku/store/2.0.0-beta4"
FILTER_SUBSCRIBE = "/vac/waku/filter-subscribe/2.0.0-beta1"
FILTER_PUSH = "/vac/waku/filter-push/2.0.0-beta1"
LIGHTPUSH_V3 = "/vac/waku/lightpush/3.0.0"
LIGHTPUSH_V2 = "/vac/waku/lightpush/2.0.0-beta1"
PEER_EXCHANGE = "/vac/waku/peer-exchange/2.0.0-alpha1"
METADATA = "/vac/waku/metadata/1.0.0"
IDENTIFY = "/ipfs/id/1.0.0"
PING = "/ipfs/ping/1.0.0"
