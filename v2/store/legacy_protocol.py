"""Legacy store service (``/vac/waku/store/2.0.0-beta4``), served from the store v3 archive.

Status's production fleets still serve it beside store v3 and go-waku v0.10.0 clients speak only
it (waku/v2/protocol/legacy_store/waku_store_client.go).  One exchange per stream, as nwaku
(waku_store_legacy/protocol.nim): read one HistoryRPC, write one, close the write side.

Refusals, each counted in ``waku_legacy_store_errors{type}``:
- no request before the deadline, or a frame over :data:`MAX_REQUEST_SIZE`: stream reset;
- bytes that are no HistoryRPC, or one without request id or query: stream reset (nwaku returns
  without answering, "failed to decode rpc" / "empty query rpc"; the reset tells the client at once);
- a query that asks too much (over 10 content filters, an empty content topic, a cursor digest
  that is not 32 bytes): an answer with ``error = INVALID_CURSOR``, nwaku's mapping of every
  BAD_REQUEST (waku_store_legacy/rpc.nim ``toRPC``);
- over the rate limit (``--rate-limit=storev2:…``), archive not open, too busy:
  ``TOO_MANY_REQUESTS`` / ``SERVICE_UNAVAILABLE`` / ``TOO_MANY_REQUESTS``.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from v2.core.message import WakuMessage
from v2.protocol_ids import STORE_LEGACY
from v2.ratelimit import RateLimit
from v2.rpc import RequestGate
from v2.store.archive import Archive
from v2.store.common import HASH_SIZE, ArchiveError
from v2.store.legacy_codec import (
    Direction,
    HistoryError,
    HistoryResponse,
    LegacyQueryInvalid,
    LegacyStoreDecodeError,
    decode_query,
    encode_response,
)
from v2.store.legacy_planner import LegacyRow, cursor_position, index_for, legacy_plan
from v2.store.metrics import LegacyStoreMetrics
from v2.stream import FrameTooLarge, Stream, StreamClosedError

__all__ = ["MAX_REQUEST_SIZE", "LegacyStoreService"]

log = logging.getLogger(__name__)

# A legacy query is small: ten content topics, a cursor and a few integers.
MAX_REQUEST_SIZE = 16 * 1024


class LegacyStoreService:
    protocol_ids: tuple[str, ...] = (STORE_LEGACY,)

    def __init__(self, archive: Archive, registry: CollectorRegistry, *, request_timeout: float = 300.0,
                 write_timeout: float = 30.0, max_pending_queries: int = 64,
                 rate_limit: RateLimit | None = None) -> None:
        """``rate_limit``: nwaku's ``--rate-limit=storev2:…`` (v2/ratelimit.py); None: unlimited."""
        self.archive = archive
        self.metrics = LegacyStoreMetrics(registry)
        self.gate = RequestGate("storev2", rate_limit, registry)
        self.request_timeout = request_timeout
        self.write_timeout = write_timeout
        self.max_pending_queries = max_pending_queries
        self._pending = 0

    async def handle(self, stream: Stream) -> None:
        try:
            await self._handle(stream)
        except StreamClosedError as exc:  # includes a timeout on our write
            self.metrics.errors.labels("stream_failure").inc()
            log.debug("legacy store: stream from %s: %s", stream.remote_peer, exc)
            await stream.reset()
        except Exception:  # a bug must not take the node down; the peer just loses this stream
            self.metrics.errors.labels("internal_error").inc()
            log.exception("legacy store: failed serving %s", stream.remote_peer)
            await stream.reset()

    async def _handle(self, stream: Stream) -> None:
        try:
            raw = await stream.read_lp(MAX_REQUEST_SIZE, timeout=self.request_timeout)
        except FrameTooLarge:
            self.metrics.errors.labels("request_too_large").inc()
            await stream.reset()
            return
        except StreamClosedError as exc:
            self.metrics.errors.labels("read_failure").inc()
            log.debug("legacy store: no request from %s: %s", stream.remote_peer, exc)
            await stream.reset()
            return
        if raw is None:  # opened and closed unused
            await stream.close_write()
            return
        answer = await self.answer(raw, stream.remote_peer)
        if answer is None:
            await stream.reset()
            return
        await stream.write_lp(answer, timeout=self.write_timeout)
        await stream.close_write()

    async def answer(self, raw: bytes, peer: str | None = None) -> bytes | None:
        """The encoded answer to one request of ``peer`` (None: not rate limited), or None when the
        stream is to be reset (counted)."""
        try:
            q = decode_query(raw)
        except LegacyQueryInvalid as exc:
            self.metrics.errors.labels("invalid_query").inc()
            return encode_response(HistoryResponse(exc.request_id, (), None, HistoryError.INVALID_CURSOR))
        except LegacyStoreDecodeError as exc:
            self.metrics.errors.labels("decode_rpc_failure").inc()
            log.debug("legacy store: undecodable request: %s", exc)
            return None
        direction = Direction.FORWARD if q.forward else Direction.BACKWARD

        def refuse(error: HistoryError, label: str) -> bytes:
            self.metrics.errors.labels(label).inc()
            return encode_response(HistoryResponse(q.request_id, (), None, error), direction=direction)

        # Over the rate limit: nwaku's legacy store decodes first and answers TOO_MANY_REQUESTS with
        # the request's id (waku_store_legacy/protocol.nim); go-waku's client refuses any other id
        # (legacy_store/pb/validation.go ValidateResponse), "N/A" included.
        if peer is not None and not self.gate.admit(peer):
            return refuse(HistoryError.TOO_MANY_REQUESTS, "rate_limited")
        self.metrics.queries.inc()
        if q.cursor is not None and len(q.cursor.digest) != HASH_SIZE:
            return refuse(HistoryError.INVALID_CURSOR, "invalid_cursor")
        if not self.archive.is_open:
            return refuse(HistoryError.SERVICE_UNAVAILABLE, "service_unavailable")
        if self._pending >= self.max_pending_queries:
            return refuse(HistoryError.TOO_MANY_REQUESTS, "too_many_requests")
        self._pending += 1
        try:
            position = None
            if q.cursor is not None:
                rows = await self.archive.rows_at(q.cursor.sender_time)
                position = cursor_position(q.cursor, q.forward, (LegacyRow(*r) for r in rows))
            plan = legacy_plan(q, position)
            page = await self.archive.find(plan, position.timestamp if position is not None else None)
        except ArchiveError as exc:
            log.warning("legacy store: archive failure: %s", exc)
            return refuse(HistoryError.SERVICE_UNAVAILABLE, "archive_failure")
        finally:
            self._pending -= 1
        messages = tuple(r.data for r in page.rows if r.data is not None)
        cursor = None
        if page.cursor is not None:
            # The cursor row is the last one in query order: the newest forward, the oldest backward.
            last = page.rows[-1] if q.forward else page.rows[0]
            assert last.data is not None
            cursor = index_for(last.pubsub_topic, WakuMessage.decode(last.data))
        return encode_response(HistoryResponse(q.request_id, messages, cursor), direction=direction)
