"""Store v3 service (``/vac/waku/store-query/3.0.0``): answers queries from the archive, archives
what the node accepts (waku-v2.md §2, §7).

One exchange per stream: read one length-prefixed request (with a deadline), write one response,
close the write side (js-waku reads to EOF).  ``status_desc`` is always written ("OK" on success).
Garbage → 400; invalid queries and archive failures → 300 "archive error: …" (nwaku); past the end
→ 200 with no messages (js-waku pages until it gets an empty list).  Every refusal is counted in
``waku_store_errors{type}``; nothing a peer sends escapes as an exception.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable

import trio
from prometheus_client import CollectorRegistry

from common.sqlite import is_corruption
from v2.core.message import MAX_MESSAGE_SIZE, WakuMessage
from v2.protocol_ids import STORE_V3
from v2.ratelimit import RateLimit
from v2.rpc import UNKNOWN_REQUEST_ID, RequestGate
from v2.store.archive import Archive
from v2.store.common import ArchiveError, StatusCode, ineligibility
from v2.store.metrics import StoreMetrics
from v2.store.planner import Rejection, plan_query
from v2.store.rpc_codec import KeyValue, StoreDecodeError, StoreResponse, decode_query, encode_response
from v2.stream import FrameTooLarge, Stream, StreamClosedError

__all__ = ["MAX_REQUEST_SIZE", "MAX_RESPONSE_SIZE", "StoreService"]

log = logging.getLogger(__name__)

# nwaku reads store requests unbounded (§2); we bound them: 64 KiB holds ~1 900 hashes, far more
# than a page.  A response holds at most 100 messages of at most 150 KiB each.
MAX_REQUEST_SIZE = 64 * 1024
MAX_RESPONSE_SIZE = 100 * (MAX_MESSAGE_SIZE + 1024) + 64 * 1024


class StoreService:
    """Serve Store v3 from ``archive``; mount ``handle`` for each of ``protocol_ids``.

    ``request_timeout`` is generous on purpose: js-waku opens streams ahead of time and may leave
    them idle for minutes before writing (§2; nwaku's mplex timeout is 5 min).
    """

    protocol_ids: tuple[str, ...] = (STORE_V3,)

    def __init__(self, archive: Archive, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time,
                 request_timeout: float = 300.0, write_timeout: float = 30.0,
                 retention_interval: float = 30 * 60.0, max_pending_queries: int = 64,
                 rate_limit: RateLimit | None = None) -> None:
        """``rate_limit``: nwaku's ``--rate-limit=storev3:…`` (v2/ratelimit.py); a query over it is
        answered 429 with request_id "N/A" without being decoded; None: unlimited."""
        self.archive = archive
        self.metrics = StoreMetrics(registry)
        self.gate = RequestGate("storev3", rate_limit, registry)
        self._clock = clock
        self.request_timeout = request_timeout
        self.write_timeout = write_timeout
        self.retention_interval = retention_interval  # nwaku WakuArchiveDefaultRetentionPolicyInterval
        self.max_pending_queries = max_pending_queries
        self._pending = 0
        self._deleted_counted = 0
        self._failures_counted = 0
        self.archive_ok = True  # the last open or insert worked (a full disk makes it False until one does)
        self._insert_failures = 0  # since the last log line about them
        self._insert_failure_logged = -math.inf
        self.started = trio.Event()

    async def _open(self) -> bool:
        """Open the archive; False if the disk refused it (full, failing: retried), while a damaged
        file or a wrong schema still raises (a restart cannot help there)."""
        try:
            await self.archive.open()
        except ArchiveError as exc:
            cause = exc.__cause__
            if not isinstance(cause, sqlite3.OperationalError) or is_corruption(cause):
                raise
            self.metrics.archive_errors.labels("open_failure").inc()
            self.archive_ok = False
            log.warning("store: %s; the node runs without its archive until it opens (retried)", exc)
            return False
        self.archive_ok = True
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the archive, apply retention now and every ``retention_interval``; close it on exit.

        An archive the disk cannot open (full: SQLite cannot even create the WAL index) does not
        stop the node: it starts without it (inserts are counted failures, queries answer 503)
        and the open is retried with backoff, 1 s doubling to 30 s."""
        opened = await self._open()
        try:
            if opened:
                await self._apply_retention()
            self.started.set()
            task_status.started()
            delay = 1.0
            while not opened:
                await trio.sleep(delay)
                delay = min(30.0, 2 * delay)
                if opened := await self._open():
                    log.info("store: archive open")
                    await self._apply_retention()
            while True:
                await trio.sleep(self.retention_interval)
                await self._apply_retention()
        finally:
            await self.archive.aclose()  # shielded inside

    async def _apply_retention(self) -> None:
        try:
            await self.archive.apply_retention(self._clock())
        except ArchiveError as exc:
            self.metrics.archive_errors.labels("retpolicy_failure").inc()
            log.warning("store: retention policy failed: %s", exc)
        self._update_gauge()

    def _update_gauge(self) -> None:
        self.metrics.archive_messages.labels("stored").set(self.archive.message_count)
        # The archive counts every retention delete, the periodic run's and the capacity/size trims
        # it does right after an insert alike.
        total = self.archive.retention_deleted
        if total > self._deleted_counted:
            self.metrics.retention_deleted.inc(total - self._deleted_counted)
            self._deleted_counted = total
        failures = self.archive.connection_failures
        if failures > self._failures_counted:
            self.metrics.db_connection_failures.inc(failures - self._failures_counted)
            self._failures_counted = failures

    async def on_message(self, pubsub_topic: str, msg: WakuMessage, msg_hash: bytes, data: bytes) -> None:
        """Archive a message the node accepted, if eligible (never raises for a message's content)."""
        reason = ineligibility(msg, self._clock())
        if reason is not None:
            self.metrics.archive_errors.labels(reason).inc()
            return
        t0 = time.perf_counter()
        try:
            added = await self.archive.insert(pubsub_topic, msg_hash, msg, data)
        except ArchiveError as exc:
            self.metrics.archive_errors.labels("insert_failure").inc()
            self.archive_ok = False
            self._insert_failures += 1
            now = self._clock()
            if now >= self._insert_failure_logged + 60.0:  # a full disk fails every insert: a line a minute
                log.warning("store: insert of %s failed: %s (%d failed inserts since the last line; the message "
                            "is still relayed)", msg_hash.hex(), exc, self._insert_failures)
                self._insert_failure_logged, self._insert_failures = now, 0
            self._update_gauge()
            return
        self.metrics.insert_duration.observe(time.perf_counter() - t0)
        self.archive_ok = True
        if not added:
            self.metrics.archive_duplicates.inc()
        self._update_gauge()

    async def handle(self, stream: Stream) -> None:
        try:
            await self._handle(stream)
        except StreamClosedError as exc:  # includes StreamTimeout on our write
            self.metrics.errors.labels("stream_failure").inc()
            log.debug("store: stream from %s: %s", stream.remote_peer, exc)
            await stream.reset()
        except Exception:  # a bug must not take the node down; the peer just loses this stream
            self.metrics.errors.labels("internal_error").inc()
            log.exception("store: failed serving %s", stream.remote_peer)
            await stream.reset()

    async def _handle(self, stream: Stream) -> None:
        try:
            raw = await stream.read_lp(MAX_REQUEST_SIZE, timeout=self.request_timeout)
        except FrameTooLarge as exc:
            self.metrics.errors.labels("request_too_large").inc()
            await self._respond(stream, StoreResponse(UNKNOWN_REQUEST_ID, StatusCode.BAD_REQUEST,
                                                      f"decoding rpc failed: {exc}"))
            return
        except StreamClosedError as exc:  # silent past the deadline, or EOF/reset mid-request
            self.metrics.errors.labels("read_failure").inc()
            log.debug("store: no request from %s: %s", stream.remote_peer, exc)
            await stream.reset()
            return
        if raw is None:  # opened ahead of time and closed unused (js-waku), not an error
            await stream.close_write()
            return
        if not self.gate.admit(stream.remote_peer):  # nwaku waku_store/protocol.nim rejectResponse
            self.metrics.errors.labels("rate_limited").inc()
            await self._respond(stream, StoreResponse(UNKNOWN_REQUEST_ID, StatusCode.TOO_MANY_REQUESTS,
                                                      StatusCode.TOO_MANY_REQUESTS.name))
            return
        await self._respond(stream, await self.answer(raw))

    async def _respond(self, stream: Stream, resp: StoreResponse) -> None:
        await stream.write_lp(encode_response(resp), timeout=self.write_timeout)
        await stream.close_write()

    async def answer(self, raw: bytes) -> StoreResponse:
        """The response to one encoded request (the part of ``handle`` that needs no stream)."""
        try:
            q = decode_query(raw)
        except StoreDecodeError as exc:
            self.metrics.errors.labels("decode_rpc_failure").inc()
            return StoreResponse(UNKNOWN_REQUEST_ID, StatusCode.BAD_REQUEST, f"decoding rpc failed: {exc}")
        self.metrics.queries.inc()
        plan = plan_query(q)
        if isinstance(plan, Rejection):
            self.metrics.errors.labels("invalid_query" if plan.status == StatusCode.BAD_RESPONSE
                                       else "bad_request").inc()
            return StoreResponse(q.request_id, plan.status, plan.desc)
        if not self.archive.is_open:
            self.metrics.errors.labels("service_unavailable").inc()
            return StoreResponse(q.request_id, StatusCode.SERVICE_UNAVAILABLE, "store is not ready")
        if self._pending >= self.max_pending_queries:  # bounded queue in front of the one DB thread
            self.metrics.errors.labels("too_many_requests").inc()
            return StoreResponse(q.request_id, StatusCode.TOO_MANY_REQUESTS, "too many pending store queries")
        self._pending += 1
        t0 = time.perf_counter()
        try:
            page = await self.archive.find(plan)
        except ArchiveError as exc:
            self.metrics.errors.labels("archive_failure").inc()
            return StoreResponse(q.request_id, StatusCode.BAD_RESPONSE, f"archive error: {exc}")
        finally:
            self._pending -= 1
        self.metrics.query_duration.observe(time.perf_counter() - t0)
        if plan.include_data:
            items = tuple(KeyValue(r.message_hash, r.data, r.pubsub_topic) for r in page.rows)
        else:
            items = tuple(KeyValue(r.message_hash) for r in page.rows)
        return StoreResponse(q.request_id, StatusCode.OK, "OK", items, page.cursor)
