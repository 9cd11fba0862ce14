"""Store v3 client: one query per stream, and an iterator over every page (waku-v2.md §2, §7).

As the client of nwaku we read exactly one length-prefixed response (§2).  Paging follows the
response cursor, which nwaku sets iff more results exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from v2.host import DialError, Host
from v2.protocol_ids import STORE_V3
from v2.rpc import new_request_id, request
from v2.store.common import StatusCode, StoreError
from v2.store.protocol import MAX_RESPONSE_SIZE
from v2.store.rpc_codec import StoreDecodeError, StoreQuery, StoreResponse, decode_response, encode_query
from v2.stream import FrameTooLarge, StreamClosedError

__all__ = ["StoreClient", "StoreClientError", "StoreQueryFailed"]


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
