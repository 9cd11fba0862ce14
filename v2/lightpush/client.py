"""LightPush client: v3 first, legacy v2 when the peer lacks v3 (js-waku's rule, waku-v2.md §10.2).

The protocol is chosen by multistream-select over ``[v3, v2]`` on the stream itself, so it works
whether or not identify has filled the peer store yet.  A legacy request needs a pubsub topic:
with ``pubsub_topic=None`` the client autoshards if it was given ``cluster_id``/``num_shards``.
A legacy answer is mapped onto v3 codes ("not_published_to_any_peer" → 505, "TOO_MANY_REQUESTS"
→ 429, a decode failure → 400, other failures → 500), so callers see one result type.  Any v3 status other than 200 is a
failure, and so is 200 with zero relay peers (nwaku's own client rule).
"""

from __future__ import annotations

from dataclasses import dataclass

from v2.core.message import WakuMessage
from v2.core.topics import TopicError, autoshard
from v2.errors import V2Error
from v2.host import DialError, Host
from v2.lightpush.rpc_codec import (
    LightpushDecodeError,
    LightpushRequest,
    LightpushResponse,
    LightpushStatus,
    PushRequest,
    PushRPC,
)
from v2.protocol_ids import LIGHTPUSH_V2, LIGHTPUSH_V3
from v2.rpc import UNKNOWN_REQUEST_ID, exchange, new_request_id
from v2.stream import FrameTooLarge, StreamClosedError

__all__ = ["LightpushClient", "LightpushClientError", "LightpushResult"]

_MAX_RESPONSE = 64 * 1024


class LightpushClientError(V2Error):
    """No answer: dial failure, broken stream, an invalid or mismatched response."""


@dataclass(frozen=True, slots=True)
class LightpushResult:
    request_id: str
    protocol: str  # the one negotiated: LIGHTPUSH_V3 or LIGHTPUSH_V2
    status_code: int
    status_desc: str | None
    relay_peer_count: int | None
    pubsub_topic: str | None  # what we sent (None = the service autoshards, v3 only)

    @property
    def ok(self) -> bool:
        return self.status_code == LightpushStatus.SUCCESS and self.relay_peer_count != 0


class LightpushClient:
    def __init__(self, host: Host, *, cluster_id: int | None = None, num_shards: int | None = None,
                 timeout: float = 10.0) -> None:
        self.host = host
        self.cluster_id = cluster_id
        self.num_shards = num_shards
        self.timeout = timeout

    async def push(self, peer: str, pubsub_topic: str | None, msg: WakuMessage) -> LightpushResult:
        try:
            stream = await self.host.new_stream(peer, [LIGHTPUSH_V3, LIGHTPUSH_V2], timeout=self.timeout)
        except DialError as exc:
            raise LightpushClientError(f"lightpush to {peer}: {exc}") from None
        request_id = new_request_id()
        legacy = stream.protocol == LIGHTPUSH_V2
        topic: str | None = pubsub_topic
        try:
            if legacy:
                topic = pubsub_topic if pubsub_topic is not None else self._autoshard(msg)
                frame = PushRPC(request_id, request=PushRequest.of(topic, msg)).encode()
            else:
                frame = LightpushRequest.of(request_id, pubsub_topic, msg).encode()
        except BaseException:  # e.g. cannot autoshard: nothing to send, close the stream ourselves
            await stream.aclose()
            raise
        try:
            data = await exchange(stream, frame, _MAX_RESPONSE, timeout=self.timeout)
        except (StreamClosedError, FrameTooLarge) as exc:
            raise LightpushClientError(f"lightpush to {peer}: {exc}") from None
        if data is None:
            raise LightpushClientError(f"lightpush to {peer}: closed without an answer")
        try:
            if legacy and topic is not None:
                return self._v2_result(request_id, topic, data)
            return self._v3_result(request_id, topic, data)
        except LightpushDecodeError as exc:
            raise LightpushClientError(f"lightpush to {peer}: {exc}") from None

    def _autoshard(self, msg: WakuMessage) -> str:
        if self.cluster_id is None or not self.num_shards:
            raise LightpushClientError("legacy lightpush needs a pubsub topic (or cluster_id/num_shards to autoshard)")
        try:
            return str(autoshard(msg.content_topic, self.cluster_id, self.num_shards))
        except TopicError as exc:
            raise LightpushClientError(f"cannot autoshard {msg.content_topic!r}: {exc}") from None

    @staticmethod
    def _v3_result(request_id: str, topic: str | None, data: bytes) -> LightpushResult:
        resp = LightpushResponse.decode(data)
        if resp.request_id not in (request_id, UNKNOWN_REQUEST_ID):
            raise LightpushClientError(f"answer for request {resp.request_id!r}")
        return LightpushResult(request_id, LIGHTPUSH_V3, resp.status_code, resp.status_desc,
                               resp.relay_peer_count, topic)

    @staticmethod
    def _v2_result(request_id: str, topic: str, data: bytes) -> LightpushResult:
        rpc = PushRPC.decode(data)
        if rpc.response is None:
            raise LightpushClientError("legacy answer without a response")
        if rpc.request_id not in (request_id, UNKNOWN_REQUEST_ID):
            raise LightpushClientError(f"answer for request {rpc.request_id!r}")
        r = rpc.response
        if r.is_success:
            code = LightpushStatus.SUCCESS
        elif r.info and r.info.startswith("not_published_to_any_peer"):
            code = LightpushStatus.NO_PEERS_TO_RELAY
        elif r.info == "TOO_MANY_REQUESTS":
            code = LightpushStatus.TOO_MANY_REQUESTS
        elif r.info and r.info.startswith(("decode_rpc_failure", "empty_request_body_failure")):
            code = LightpushStatus.BAD_REQUEST
        else:
            code = LightpushStatus.INTERNAL_SERVER_ERROR
        return LightpushResult(request_id, LIGHTPUSH_V2, int(code), r.info, None, topic)
