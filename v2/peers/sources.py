"""Discovery sources the connection manager runs: an EIP-1459 DNS tree and peer exchange."""

from __future__ import annotations

import random
from collections.abc import Sequence

from v2.enr.dns import EnrTreeUrl, TxtLookup, make_txt_lookup, walk_tree
from v2.enr.enr import Enr
from v2.host import Host
from v2.peer_exchange.client import PeerExchangeClient
from v2.protocol_ids import PEER_EXCHANGE

__all__ = ["DnsDiscoverySource", "PeerExchangeSource"]


class DnsDiscoverySource:
    """``--dns-discovery-url``: re-walks the tree every ``interval`` seconds."""

    def __init__(self, url: str, *, lookup_txt: TxtLookup | None = None, interval: float = 1800.0,
                 max_records: int = 2000) -> None:
        self._url = EnrTreeUrl.parse(url)  # a bad configured URL fails at startup
        self._lookup = lookup_txt if lookup_txt is not None else make_txt_lookup()
        self._max_records = max_records
        self.name = f"dns:{self._url.domain}"
        self.interval = interval

    async def discover(self) -> Sequence[Enr]:
        return (await walk_tree(self._url, self._lookup, max_records=self._max_records)).enrs


class PeerExchangeSource:
    """Asks one random connected peer that advertises peer exchange (identify) for ENRs."""

    name = "px"

    def __init__(self, host: Host, client: PeerExchangeClient, *, num_peers: int = 60, interval: float = 60.0,
                 rng: random.Random | None = None) -> None:
        self._host = host
        self._client = client
        self._num_peers = num_peers
        self._rng = rng if rng is not None else random.Random()
        self.interval = interval

    async def discover(self) -> Sequence[Enr]:
        peers = [p for p in self._host.connected_peers() if PEER_EXCHANGE in self._host.peer_protocols(p)]
        if not peers:
            return []
        return await self._client.request(self._rng.choice(sorted(peers)), self._num_peers)
