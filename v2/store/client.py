"""Store v3 client: one query per stream, an iterator over every page, and a history lookup over
several sources at once (waku-v2.md §2, §7).

As the client of nwaku we read exactly one length-prefixed response (§2).  Paging follows the
response cursor, which nwaku sets iff more results exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol

import trio

from v2.core.message import MessageDecodeError, WakuMessage
from v2.host import DialError, Host
from v2.protocol_ids import STORE_V3
from v2.rpc import new_request_id, request
from v2.store.common import MAX_PAGE_SIZE, HistoryRequest, HistoryResult, StatusCode, StoreError
from v2.store.protocol import MAX_RESPONSE_SIZE
from v2.store.rpc_codec import StoreDecodeError, StoreQuery, StoreResponse, decode_response, encode_query
from v2.stream import FrameTooLarge, StreamClosedError

__all__ = [
    "HISTORY_MAX_PAGES",
    "HISTORY_PAGE_SIZE",
    "HistoryRequest",
    "HistoryResult",
    "LocalStore",
    "StoreClient",
    "StoreClientError",
    "StoreQueryFailed",
    "query_history",
]

HISTORY_PAGE_SIZE = MAX_PAGE_SIZE  # nwaku's maximum page
HISTORY_MAX_PAGES = 50  # per source and query: a bridge takeover's window at ~100 msg/s per topic batch

NS = 10**9


class StoreClientError(StoreError):
    """The query did not get a response: dial failure, timeout, broken stream, undecodable bytes."""


class StoreQueryFailed(StoreError):
    """The store answered with a non-200 status (raised only by :meth:`StoreClient.pages`)."""

    def __init__(self, response: StoreResponse) -> None:
        super().__init__(f"store query {response.request_id}: {response.status_code} {response.status_desc}")
        self.response = response


class StoreClient:
    def __init__(self, host: Host) -> None:
        self.host = host

    async def query(self, peer: str, q: StoreQuery, *, timeout: float = 10.0) -> StoreResponse:
        """Send one request to ``peer`` and return its response, whatever its status.

        An empty ``request_id`` is replaced by a UUIDv4 (nwaku requires one; js-waku sends UUIDs).
        """
        if not q.request_id:
            q = dataclasses.replace(q, request_id=new_request_id())
        try:
            raw = await request(self.host, peer, [STORE_V3], encode_query(q), MAX_RESPONSE_SIZE, timeout=timeout,
                                reset_on_error=True)
        except DialError as exc:
            raise StoreClientError(f"store peer {peer}: {exc}") from None
        except (StreamClosedError, FrameTooLarge) as exc:
            raise StoreClientError(f"store query to {peer}: {exc}") from None
        if raw is None:
            raise StoreClientError(f"store peer {peer} closed the stream without answering")
        try:
            return decode_response(raw)
        except StoreDecodeError as exc:
            raise StoreClientError(f"store peer {peer}: {exc}") from None

    async def pages(self, peer: str, q: StoreQuery, *, timeout: float = 10.0,
                    max_pages: int | None = None) -> AsyncIterator[StoreResponse]:
        """Every page of ``q``, following the response cursor until the store says there is no more.

        Raises :class:`StoreQueryFailed` on a non-200 page and :class:`StoreClientError` if a page
        does not arrive.  A cursor that does not advance ends the iteration (a misbehaving peer
        cannot keep us looping).
        """
        seen: set[bytes] = set()
        n = 0
        while True:
            resp = await self.query(peer, q, timeout=timeout)
            if resp.status_code != StatusCode.OK:
                raise StoreQueryFailed(resp)
            yield resp
            n += 1
            cursor = resp.pagination_cursor
            if cursor is None or cursor in seen or (max_pages is not None and n >= max_pages):
                return
            seen.add(cursor)
            q = dataclasses.replace(q, request_id="", pagination_cursor=cursor)


Ask = Callable[[StoreQuery], Awaitable[StoreResponse]]


class LocalStore(Protocol):
    """Our own store service, asked without a stream (:meth:`v2.store.protocol.StoreService.answer`)."""

    async def answer(self, raw: bytes) -> StoreResponse: ...


async def query_history(host: Host, peers: Iterable[str], req: HistoryRequest, deadline: float, *,
                        local: LocalStore | None = None, local_since: float | None = None,
                        page_size: int = HISTORY_PAGE_SIZE, max_pages: int = HISTORY_MAX_PAGES) -> HistoryResult:
    """What the history holds for ``req``: asked of every store peer in ``peers`` and of ``local``
    (our own archive) if it was up over the whole window (``local_since``, wall seconds, at or
    before ``req.time_start``: an earlier gap may hide a message), all at once, each until
    ``deadline`` (a ``trio.current_time()`` value), every page.

    Never raises for a source: one that answers a non-200, breaks, runs past ``max_pages`` or the
    deadline is listed in ``failures`` with what it returned so far kept.  Store peers are trusted
    to tell the truth about what they hold (fleet store nodes): a lying one hides a message."""
    client = StoreClient(host)

    def remote(peer: str) -> Ask:
        async def ask(q: StoreQuery) -> StoreResponse:
            return await client.query(peer, q, timeout=max(0.1, deadline - trio.current_time()))
        return ask

    asks: list[tuple[str, Ask]] = []
    if local is not None and local_since is not None and local_since * NS <= req.time_start:
        store = local

        async def ask_local(q: StoreQuery) -> StoreResponse:
            return await store.answer(encode_query(q))
        asks.append(("local", ask_local))
    asks += [(peer, remote(peer)) for peer in peers]
    messages: list[WakuMessage] = []
    failures: list[str] = []

    async def one(name: str, ask: Ask) -> None:
        q = StoreQuery(request_id="", include_data=True, pubsub_topic=req.pubsub_topic,
                       content_topics=req.content_topics, time_start=req.time_start, time_end=req.time_end,
                       pagination_forward=True, pagination_limit=page_size)
        with trio.move_on_at(deadline):
            try:
                for _ in range(max_pages):
                    q = dataclasses.replace(q, request_id=new_request_id())
                    resp = await ask(q)
                    if resp.status_code != StatusCode.OK:
                        failures.append(f"{name}: {resp.status_code} {resp.status_desc}")
                        return
                    for kv in resp.messages:
                        if kv.data is not None:
                            try:
                                messages.append(WakuMessage.decode(kv.data))
                            except MessageDecodeError:
                                pass  # not a message: it cannot match anything
                    if resp.pagination_cursor is None or resp.pagination_cursor == q.pagination_cursor:
                        return
                    q = dataclasses.replace(q, pagination_cursor=resp.pagination_cursor)
                failures.append(f"{name}: more than {max_pages} pages")
            except StoreError as exc:
                failures.append(f"{name}: {exc}")
            return
        failures.append(f"{name}: deadline")

    async with trio.open_nursery() as nursery:
        for name, ask in asks:
            nursery.start_soon(one, name, ask)
    return HistoryResult(tuple(messages), len(asks), tuple(failures))
