"""Legacy store client (``/vac/waku/store/2.0.0-beta4``): history from go-waku, which serves no
store v3 (waku-org/go-waku v0.10.0 waku/v2/protocol/legacy_store/waku_store_protocol.go).

One query per stream, as store v3 (waku-v2.md §2): go-waku's server reads one HistoryRPC, writes
one and closes.  Paging follows the response cursor, which go-waku sets iff more rows exist
(persistence/store.go Query).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from v2.host import DialError, Host
from v2.protocol_ids import STORE_LEGACY
from v2.rpc import new_request_id, request
from v2.store.common import StoreError
from v2.store.legacy_codec import (
    HistoryError,
    HistoryQuery,
    HistoryResponse,
    LegacyStoreDecodeError,
    decode_response,
    encode_query,
)
from v2.store.protocol import MAX_RESPONSE_SIZE
from v2.stream import FrameTooLarge, StreamClosedError

__all__ = ["LegacyStoreClient", "LegacyStoreClientError", "LegacyStoreQueryFailed"]


class LegacyStoreClientError(StoreError):
    """No usable answer: dial failure, timeout, a reset (go-waku resets on an invalid query), bad bytes."""


class LegacyStoreQueryFailed(StoreError):
    def __init__(self, response: HistoryResponse) -> None:
        super().__init__(f"legacy store query {response.request_id}: error {response.error}")
        self.response = response


class LegacyStoreClient:
    def __init__(self, host: Host) -> None:
        self.host = host

    async def query(self, peer: str, q: HistoryQuery, *, timeout: float = 10.0) -> HistoryResponse:
        if not q.request_id:
            q = dataclasses.replace(q, request_id=new_request_id())
        try:
            raw = await request(self.host, peer, [STORE_LEGACY], encode_query(q), MAX_RESPONSE_SIZE,
                                timeout=timeout, reset_on_error=True)
        except DialError as exc:
            raise LegacyStoreClientError(f"legacy store peer {peer}: {exc}") from None
        except (StreamClosedError, FrameTooLarge) as exc:
            raise LegacyStoreClientError(f"legacy store query to {peer}: {exc}") from None
        if raw is None:
            raise LegacyStoreClientError(f"legacy store peer {peer} closed the stream without answering")
        try:
            resp = decode_response(raw)
        except LegacyStoreDecodeError as exc:
            raise LegacyStoreClientError(f"legacy store peer {peer}: {exc}") from None
        if resp.request_id != q.request_id:
            raise LegacyStoreClientError(f"legacy store peer {peer}: answer for request {resp.request_id!r}")
        return resp

    async def pages(self, peer: str, q: HistoryQuery, *, timeout: float = 10.0,
                    max_pages: int | None = None) -> AsyncIterator[HistoryResponse]:
        """Every page of ``q``; a repeated cursor ends the iteration (a peer cannot keep us looping)."""
        seen = set()
        n = 0
        while True:
            resp = await self.query(peer, q, timeout=timeout)
            if resp.error != HistoryError.NONE:
                raise LegacyStoreQueryFailed(resp)
            yield resp
            n += 1
            if resp.cursor is None or resp.cursor in seen or (max_pages is not None and n >= max_pages):
                return
            seen.add(resp.cursor)
            q = dataclasses.replace(q, request_id="", cursor=resp.cursor)
