"""Peer exchange client: ask one peer for ENRs (waku-v2.md §11).

We read exactly one length-prefixed response (nwaku closes after it; js-waku too).  A non-200
status raises :class:`PeerExchangeError` carrying the status; individual records that fail
EIP-778 verification are dropped and counted, the valid rest is returned.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from v2.enr.enr import Enr, EnrError
from v2.errors import V2Error
from v2.host import DialError, Host
from v2.peer_exchange.rpc_codec import MAX_RPC_SIZE, PxCodecError, PxStatus, decode_response, encode_request
from v2.peers.metrics import PeerMetrics
from v2.protocol_ids import PEER_EXCHANGE
from v2.rpc import request
from v2.stream import FrameTooLarge, StreamClosedError

__all__ = ["PeerExchangeClient", "PeerExchangeError"]

log = logging.getLogger(__name__)


class PeerExchangeError(V2Error):
    def __init__(self, status: int, desc: str) -> None:
        super().__init__(f"peer exchange failed: {status} {desc}")
        self.status = status
        self.desc = desc


class PeerExchangeClient:
    def __init__(self, host: Host, registry: CollectorRegistry | None = None, *, timeout: float = 10.0) -> None:
        self._host = host
        self._metrics = PeerMetrics.of(registry) if registry is not None else None
        self._timeout = timeout

    def _error(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.px_errors.labels(kind).inc()

    async def request(self, peer: str, num_peers: int) -> list[Enr]:
        """ENRs from ``peer`` (a base58 peer id we are connected to or can reach via the peerstore)."""
        try:
            data = await request(self._host, peer, [PEER_EXCHANGE], encode_request(num_peers), MAX_RPC_SIZE,
                                 timeout=self._timeout)
        except DialError as exc:
            self._error("dial_failure")
            raise PeerExchangeError(PxStatus.DIAL_FAILURE, str(exc)) from None
        except (StreamClosedError, FrameTooLarge) as exc:
            self._error("read_failure")
            raise PeerExchangeError(PxStatus.SERVICE_UNAVAILABLE, str(exc)) from None
        if data is None:
            self._error("read_failure")
            raise PeerExchangeError(PxStatus.SERVICE_UNAVAILABLE, "stream closed without a response")
        try:
            resp = decode_response(data)
        except PxCodecError as exc:
            self._error("decode_rpc_failure")
            raise PeerExchangeError(PxStatus.BAD_RESPONSE, str(exc)) from None
        if resp.status != PxStatus.SUCCESS:
            self._error("px_failure")
            raise PeerExchangeError(resp.status, resp.status_desc or "")
        out: list[Enr] = []
        for raw in resp.enrs[:num_peers] if num_peers > 0 else resp.enrs:  # never more than asked for
            try:
                out.append(Enr.from_rlp(raw))
            except EnrError as exc:
                self._error("invalid_enr")
                log.debug("peer exchange: dropping a record from %s: %s", peer, exc)
        if self._metrics is not None:
            self._metrics.px_peers_received.inc(len(out))
        return out
