"""The metadata service (``/vac/waku/metadata/1.0.0``, always mounted; waku-v2.md §12).

The dialer writes its own ``{cluster_id, shards}``; we answer with ours and close our write side.
js-waku pre-opens streams and may close them unused (EOF before a request is normal, not an
error), and may leave them idle for minutes, so the read deadline is long (nwaku's mplex timeout
is 5 min) and configurable.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from v2.metadata.metrics import MetadataMetrics
from v2.metadata.rpc_codec import MAX_METADATA_SIZE, Metadata, MetadataDecodeError, decode_metadata, encode_metadata
from v2.protocol_ids import METADATA
from v2.rpc import respond
from v2.stream import FrameTooLarge, Stream, StreamTimeout

__all__ = ["MetadataService"]

log = logging.getLogger(__name__)


class MetadataService:
    protocol_ids: tuple[str, ...] = (METADATA,)

    def __init__(self, cluster_id: int, shards: tuple[int, ...], registry: CollectorRegistry, *,
                 idle_timeout: float = 300.0, metrics: MetadataMetrics | None = None) -> None:
        self.local = Metadata(cluster_id, tuple(shards))
        self._answer = encode_metadata(self.local)  # fails at start-up, not per peer, if > 1024 B
        self.idle_timeout = idle_timeout
        self.metrics = metrics if metrics is not None else MetadataMetrics(registry)

    async def handle(self, stream: Stream) -> None:
        try:
            req = await stream.read_lp(MAX_METADATA_SIZE, timeout=self.idle_timeout)
        except StreamTimeout:
            self.metrics.errors.labels("timeout").inc()
            await stream.reset()
            return
        except FrameTooLarge:
            self.metrics.errors.labels("too_large").inc()
            await stream.reset()
            return
        if req is None:  # a pre-opened stream closed unused
            return
        try:
            remote = decode_metadata(req)
        except MetadataDecodeError as exc:
            self.metrics.errors.labels("decode").inc()
            log.debug("metadata from %s: %s", stream.remote_peer, exc)
            await stream.reset()
            return
        log.debug("metadata request from %s: %s", stream.remote_peer, remote)
        if not await respond(stream, self._answer):
            self.metrics.errors.labels("write").inc()
            return
        self.metrics.requests.labels("served").inc()
