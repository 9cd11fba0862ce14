"""Peer exchange service (34/WAKU2-PEER-EXCHANGE; waku-v2.md §11).

One request per stream: read ``query{num_peers}``, answer with up to ``min(num_peers, max_peers)``
records sampled from ``enr_source()``, close the write side (js-waku reads to EOF).  Bad requests
get a 400 answer and a counted error; the handler never raises on network input.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from v2.enr.enr import Enr
from v2.peer_exchange.rpc_codec import MAX_RPC_SIZE, PxCodecError, PxStatus, decode_request, encode_response
from v2.peers.metrics import PeerMetrics
from v2.protocol_ids import PEER_EXCHANGE
from v2.ratelimit import RateLimit
from v2.rpc import RequestGate, respond
from v2.stream import FrameTooLarge, Stream, StreamClosedError

__all__ = ["PeerExchangeService"]

log = logging.getLogger(__name__)

# nwaku MaxPeersCacheSize; js-waku asks for 60 at a time.
DEFAULT_MAX_PEERS = 60


class PeerExchangeService:
    protocol_ids = (PEER_EXCHANGE,)

    def __init__(self, registry: CollectorRegistry, *, enr_source: Callable[[], list[Enr]],
                 max_peers: int = DEFAULT_MAX_PEERS, rng: random.Random | None = None,
                 read_timeout: float = 60.0, rate_limit: RateLimit | None = None) -> None:
        """``rate_limit``: nwaku's ``--rate-limit=px:…`` (v2/ratelimit.py); over it, 429 (None: unlimited)."""
        self._metrics = PeerMetrics.of(registry)
        self._enr_source = enr_source
        self._max_peers = max_peers
        self._rng = rng if rng is not None else random.Random()
        # js-waku pre-opens streams and may write late (waku-v2.md §2): a patient first read.
        self._read_timeout = read_timeout
        self.gate = RequestGate("px", rate_limit, registry)

    def select(self, num_peers: int) -> list[Enr]:
        """A uniform random sample, as nwaku's shuffled cache (pure given the rng)."""
        pool = list({e.node_id: e for e in self._enr_source()}.values())
        return self._rng.sample(pool, min(num_peers, self._max_peers, len(pool)))

    async def handle(self, stream: Stream) -> None:
        try:
            data = await stream.read_lp(MAX_RPC_SIZE, timeout=self._read_timeout)
        except FrameTooLarge:
            self._metrics.px_errors.labels("decode_rpc_failure").inc()
            await stream.reset()
            return
        except StreamClosedError:
            self._metrics.px_errors.labels("read_failure").inc()
            return
        if data is None:  # a pre-opened stream closed unused
            return
        # Counted after the read so that idle pre-opened streams cost no tokens.
        if not self.gate.admit(stream.remote_peer):
            # nwaku waku_peer_exchange/protocol.nim: status 429, no description, no peers.
            self._metrics.px_errors.labels("rate_limited").inc()
            await self._respond(stream, [], PxStatus.TOO_MANY_REQUESTS, None, 0)
            return
        try:
            req = decode_request(data)
        except PxCodecError as exc:
            self._metrics.px_errors.labels("decode_rpc_failure").inc()
            await self._respond(stream, [], PxStatus.BAD_REQUEST, str(exc), 0)
            return
        if req.num_peers == 0:
            self._metrics.px_errors.labels("bad_request").inc()
            await self._respond(stream, [], PxStatus.BAD_REQUEST, "num_peers is 0", 0)
            return
        try:
            enrs = self.select(req.num_peers)
        except Exception:  # the source is node code, but a bug there must not kill the listener
            log.exception("peer exchange: enr_source failed")
            self._metrics.px_errors.labels("enr_source_failure").inc()
            await self._respond(stream, [], PxStatus.SERVICE_UNAVAILABLE, "no peers", req.num_peers)
            return
        if await self._respond(stream, [e.raw for e in enrs], PxStatus.SUCCESS, None, req.num_peers):
            self._metrics.px_peers_sent.inc(len(enrs))

    async def _respond(self, stream: Stream, enrs: list[bytes], status: PxStatus, desc: str | None,
                       num_peers: int) -> bool:
        if await respond(stream, encode_response(enrs, status, desc, num_peers=num_peers)):
            return True
        self._metrics.px_errors.labels("write_failure").inc()
        return False
