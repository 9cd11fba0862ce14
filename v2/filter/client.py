"""Filter v2 client (waku-v2.md §9): subscribe / ping / unsubscribe, and the push receiver.

Constructing a :class:`FilterClient` registers the ``/vac/waku/filter-push/2.0.0-beta1`` handler
on the host, so identify advertises it (nwaku drops subscribers whose identify lacks it, §16).
Pushes arrive on long-lived service-opened streams, each read until EOF; every valid push goes
to :meth:`FilterClient.pushes` (bounded; a full channel is a counted drop, ``dropped``), and an
invalid one is counted (``invalid``) and skipped.  Keeping a subscription alive (js-waku pings
every 60 s; the service expires it after 5 min) is the caller's loop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from v2.core.message import WakuMessage, message_hash
from v2.errors import V2Error
from v2.filter.rpc_codec import (
    MAX_PUSH_SIZE,
    MAX_SUBSCRIBE_RESPONSE_SIZE,
    FilterDecodeError,
    FilterSubscribeRequest,
    FilterSubscribeResponse,
    FilterSubscribeType,
    MessagePush,
)
from v2.host import DialError, Host
from v2.protocol_ids import FILTER_PUSH, FILTER_SUBSCRIBE
from v2.rpc import UNKNOWN_REQUEST_ID, new_request_id, request
from v2.stream import FrameTooLarge, Stream, StreamClosedError

__all__ = ["FilterClient", "FilterClientError", "FilterPush"]

log = logging.getLogger(__name__)


class FilterClientError(V2Error):
    """The request could not be completed (dial failure, no/invalid answer)."""


@dataclass(frozen=True, slots=True)
class FilterPush:
    peer: str  # the service node that pushed it
    pubsub_topic: str
    message: WakuMessage
    data: bytes
    hash: bytes
    received_at: float


class FilterClient:
    def __init__(self, host: Host, *, capacity: int = 1024, timeout: float = 10.0) -> None:
        self.host = host
        self.timeout = timeout
        self._send, self._recv = trio.open_memory_channel[FilterPush](capacity)
        self.dropped = 0
        self.invalid = 0
        self.push_streams = 0  # push streams services opened to us (nwaku reuses one; we and go-waku open one per push)
        host.set_stream_handler(FILTER_PUSH, self._handle_push)

    def pushes(self) -> trio.MemoryReceiveChannel[FilterPush]:
        return self._recv

    async def subscribe(self, peer: str, pubsub_topic: str, content_topics: Sequence[str]) -> FilterSubscribeResponse:
        return await self.request(peer, FilterSubscribeType.SUBSCRIBE, pubsub_topic, content_topics)

    async def unsubscribe(self, peer: str, pubsub_topic: str, content_topics: Sequence[str]) -> FilterSubscribeResponse:
        return await self.request(peer, FilterSubscribeType.UNSUBSCRIBE, pubsub_topic, content_topics)

    async def unsubscribe_all(self, peer: str) -> FilterSubscribeResponse:
        return await self.request(peer, FilterSubscribeType.UNSUBSCRIBE_ALL)

    async def ping(self, peer: str) -> FilterSubscribeResponse:
        return await self.request(peer, FilterSubscribeType.SUBSCRIBER_PING)

    async def request(self, peer: str, kind: FilterSubscribeType, pubsub_topic: str | None = None,
                      content_topics: Sequence[str] = ()) -> FilterSubscribeResponse:
        """One exchange; the service's answer whatever its status, or FilterClientError."""
        req = FilterSubscribeRequest(new_request_id(), kind, pubsub_topic, tuple(content_topics))
        try:
            data = await request(self.host, peer, [FILTER_SUBSCRIBE], req.encode(), MAX_SUBSCRIBE_RESPONSE_SIZE,
                                 timeout=self.timeout)
        except (DialError, StreamClosedError, FrameTooLarge) as exc:
            raise FilterClientError(f"filter {kind.name} to {peer}: {exc}") from None
        if data is None:
            raise FilterClientError(f"filter {kind.name} to {peer}: closed without an answer")
        try:
            resp = FilterSubscribeResponse.decode(data)
        except FilterDecodeError as exc:
            raise FilterClientError(f"filter {kind.name} to {peer}: {exc}") from None
        # "N/A": a refusal of a request the service did not decode (nwaku's 429), as go-waku accepts.
        if resp.request_id not in (req.request_id, UNKNOWN_REQUEST_ID):
            raise FilterClientError(f"filter {kind.name} to {peer}: answer for request {resp.request_id!r}")
        return resp

    async def _handle_push(self, stream: Stream) -> None:
        # A push stream lives as long as the service keeps it (nwaku reuses one per subscriber):
        # no idle deadline; it ends with EOF, a reset or the connection.
        self.push_streams += 1
        while True:
            try:
                data = await stream.read_lp(MAX_PUSH_SIZE, timeout=math.inf)
            except FrameTooLarge:
                self.invalid += 1
                await stream.reset()
                return
            if data is None:
                return
            try:
                push = MessagePush.decode(data)
            except FilterDecodeError as exc:
                self.invalid += 1
                log.debug("invalid filter push from %s: %s", stream.remote_peer, exc)
                continue
            item = FilterPush(stream.remote_peer, push.pubsub_topic, push.message, push.data,
                              message_hash(push.pubsub_topic, push.message), time.time())
            try:
                self._send.send_nowait(item)
            except trio.WouldBlock:
                self.dropped += 1
