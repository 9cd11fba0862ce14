"""LightPush service, v3 (``/vac/waku/lightpush/3.0.0``) and legacy v2 (``/vac/waku/lightpush/2.0.0-beta1``).

One request and one response per stream, then we close our write side (waku-v2.md §2).  Both
protocols share one pipeline (§10.2, nwaku's order, size first because it is cheapest):

1. size of the WakuMessage > ``max_msg_size`` → 413 PAYLOAD_TOO_LARGE;
2. empty payload → 420 INVALID_MESSAGE (js-waku and our relay refuse empty payloads, §3);
3. pubsub topic: absent → autoshard the content topic (420 if the content topic does not parse
   or the node uses static sharding); present → it must be one of our shard topics, else 421;
4. ``await publish(pubsub_topic, msg, data)``.

**The publish contract.**  ``publish`` is the node's relay publish path: it relays the message and
does whatever else the node does with a lightpushed message (archive, filter pushes, hand it to
the application / bridge as ``origin="lightpush"``).  It returns the number of relay peers the
message went to; ``0`` means nobody got it → 505 NO_PEERS_TO_RELAY (nwaku's rule: an isolated
node cannot accept lightpush).  It may raise :class:`LightpushRejected` to answer a specific code
(e.g. 429 from a rate limit, 420 from a validator); any other exception → 500, counted, logged.
After a 200, the optional ``on_accepted(LightpushAccepted)`` hook runs with the pushing peer's id
(for a node that wants the origin peer; ``publish`` does not receive it).

v3 answers carry nwaku's status codes, with request_id "N/A" when the request could not be read;
legacy answers carry ``is_success`` (always written) and nwaku's ``info`` strings ("OK",
"not_published_to_any_peer" for every relay failure, "decode_rpc_failure: …",
"empty_request_body_failure").  Nothing a peer sends escapes as an exception: garbage, oversize
frames, silent streams (reset after ``request_timeout``) are answered or closed, and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import trio
from prometheus_client import CollectorRegistry

from v2.core.message import WakuMessage, message_hash
from v2.core.topics import PubsubTopic, TopicError, autoshard
from v2.errors import V2Error
from v2.lightpush.metrics import LightpushMetrics
from v2.lightpush.rpc_codec import (
    LightpushDecodeError,
    LightpushRequest,
    LightpushResponse,
    LightpushStatus,
    PushResponse,
    PushRPC,
)
from v2.protocol_ids import LIGHTPUSH_V2, LIGHTPUSH_V3
from v2.ratelimit import RateLimit
from v2.rpc import UNKNOWN_REQUEST_ID, RequestGate, respond
from v2.stream import FrameTooLarge, Stream, StreamClosedError, StreamTimeout

__all__ = ["TOO_MANY_REQUESTS_LEGACY", "TOO_MANY_REQUESTS_V3", "AcceptedFn", "LightpushAccepted", "LightpushOutcome",
           "LightpushRejected", "LightpushService",
           "PublishFn"]

log = logging.getLogger(__name__)

PublishFn = Callable[[str, WakuMessage, bytes], Awaitable[int]]

_RPC_OVERHEAD = 64 * 1024  # request framing around the message (nwaku reads lightpush unbounded)
_NOT_PUBLISHED = "not_published_to_any_peer"
# nwaku's TooManyRequestsMessage: waku_lightpush/common.nim (v3), waku_lightpush_legacy/common.nim.
TOO_MANY_REQUESTS_V3 = "Request rejected due to too many requests"
TOO_MANY_REQUESTS_LEGACY = "TOO_MANY_REQUESTS"


class LightpushRejected(V2Error):
    """Raised by ``publish`` to answer a specific status."""

    def __init__(self, status: LightpushStatus, desc: str) -> None:
        super().__init__(desc)
        self.status = status
        self.desc = desc


@dataclass(frozen=True, slots=True)
class LightpushOutcome:
    status: LightpushStatus
    desc: str | None
    relay_peer_count: int | None = None
    pubsub_topic: str | None = None


@dataclass(frozen=True, slots=True)
class LightpushAccepted:
    peer: str
    pubsub_topic: str
    message: WakuMessage
    data: bytes
    hash: bytes
    relay_peer_count: int
    protocol: str


AcceptedFn = Callable[[LightpushAccepted], Awaitable[None]]

_ERROR_TYPE = {
    LightpushStatus.BAD_REQUEST: "decode_rpc_failure",
    LightpushStatus.PAYLOAD_TOO_LARGE: "payload_too_large",
    LightpushStatus.INVALID_MESSAGE: "invalid_message",
    LightpushStatus.UNSUPPORTED_PUBSUB_TOPIC: "unsupported_pubsub_topic",
    LightpushStatus.TOO_MANY_REQUESTS: "too_many_requests",
    LightpushStatus.INTERNAL_SERVER_ERROR: "publish_failure",
    LightpushStatus.SERVICE_NOT_AVAILABLE: "service_not_available",
    LightpushStatus.OUT_OF_RLN_PROOF: "out_of_rln_proof",
    LightpushStatus.NO_PEERS_TO_RELAY: "no_peers_to_relay",
}


class LightpushService:
    protocol_ids: tuple[str, ...] = (LIGHTPUSH_V3, LIGHTPUSH_V2)

    def __init__(self, publish: PublishFn, registry: CollectorRegistry, *, cluster_id: int, num_shards: int,
                 max_msg_size: int, static_shards: bool = False, shards: Iterable[int] | None = None,
                 on_accepted: AcceptedFn | None = None, request_timeout: float = 300.0,
                 write_timeout: float = 10.0, publish_timeout: float = 30.0,
                 rate_limit: RateLimit | None = None) -> None:
        """``shards``: the shards we relay (default: all ``num_shards`` under autosharding, any
        shard of ``cluster_id`` under static sharding).  ``num_shards <= 0`` means static
        sharding, as nwaku's ``--num-shards-in-network=0``.  ``rate_limit`` (nwaku's
        ``--rate-limit=lightpush:…``, both protocols together, v2/ratelimit.py): a request over it
        is answered 429 with request_id "N/A" without being decoded; None: unlimited."""
        self._publish = publish
        self.metrics = LightpushMetrics(registry)
        self.cluster_id = cluster_id
        self.num_shards = num_shards
        self.max_msg_size = max_msg_size
        self.static_shards = static_shards or num_shards <= 0
        if shards is not None:
            self._shards: frozenset[int] | None = frozenset(shards)
        elif not self.static_shards:
            self._shards = frozenset(range(num_shards))
        else:
            self._shards = None
        self._on_accepted = on_accepted
        # Long by default: js-waku pre-opens streams and may use them much later (§2).
        self.request_timeout = request_timeout
        self.write_timeout = write_timeout
        self.publish_timeout = publish_timeout
        self.gate = RequestGate("lightpush", rate_limit, registry)

    # -- the shared pipeline ------------------------------------------------------------------

    def route(self, pubsub_topic: str | None, msg: WakuMessage, size: int) -> LightpushOutcome:
        """Pure checks 1-3: the pubsub topic to publish on (status SUCCESS) or the refusal."""
        if size > self.max_msg_size:
            return LightpushOutcome(LightpushStatus.PAYLOAD_TOO_LARGE,
                                    f"Message size exceeded maximum of {self.max_msg_size} bytes")
        if not msg.payload:
            return LightpushOutcome(LightpushStatus.INVALID_MESSAGE, "Message payload is empty")
        if pubsub_topic is None:
            if self.static_shards:
                return LightpushOutcome(LightpushStatus.INVALID_MESSAGE,
                                        "Pubsub topic must be specified when static sharding is enabled")
            try:
                topic = autoshard(msg.content_topic, self.cluster_id, self.num_shards)
            except TopicError as exc:
                return LightpushOutcome(LightpushStatus.INVALID_MESSAGE, f"Autosharding error: {exc}")
        else:
            try:
                topic = PubsubTopic.parse(pubsub_topic)
            except TopicError:
                return LightpushOutcome(LightpushStatus.UNSUPPORTED_PUBSUB_TOPIC,
                                        f"Unsupported pubsub topic: {pubsub_topic!r}")
        if topic.cluster != self.cluster_id or (self._shards is not None and topic.shard not in self._shards):
            return LightpushOutcome(LightpushStatus.UNSUPPORTED_PUBSUB_TOPIC, f"Unsupported pubsub topic: {topic}")
        return LightpushOutcome(LightpushStatus.SUCCESS, None, pubsub_topic=str(topic))

    async def process(self, peer: str, pubsub_topic: str | None, msg: WakuMessage, data: bytes,
                      protocol: str) -> LightpushOutcome:
        routed = self.route(pubsub_topic, msg, len(data))
        if routed.status is not LightpushStatus.SUCCESS or routed.pubsub_topic is None:
            return routed
        topic = routed.pubsub_topic
        try:
            with trio.fail_after(self.publish_timeout):
                count = await self._publish(topic, msg, data)
        except LightpushRejected as exc:
            return LightpushOutcome(exc.status, exc.desc)
        except trio.TooSlowError:
            return LightpushOutcome(LightpushStatus.INTERNAL_SERVER_ERROR, "relay publish timed out")
        except Exception as exc:  # the node's publish failed: an answer, never a dead handler
            log.warning("lightpush publish on %s failed: %r", topic, exc)
            return LightpushOutcome(LightpushStatus.INTERNAL_SERVER_ERROR, f"relay publish failed: {exc}")
        if count <= 0:
            return LightpushOutcome(LightpushStatus.NO_PEERS_TO_RELAY, "No peers for topic, skipping publish",
                                    relay_peer_count=0, pubsub_topic=topic)
        if self._on_accepted is not None:
            try:
                await self._on_accepted(LightpushAccepted(peer, topic, msg, data, message_hash(topic, msg), count,
                                                          protocol))
            except Exception:
                self.metrics.v3_errors.labels("on_accepted_failure").inc()
                log.exception("lightpush on_accepted hook failed")
        return LightpushOutcome(LightpushStatus.SUCCESS, None, relay_peer_count=count, pubsub_topic=topic)

    # -- streams ------------------------------------------------------------------------------

    async def handle(self, stream: Stream) -> None:
        legacy = stream.protocol == LIGHTPUSH_V2
        errors = self.metrics.errors if legacy else self.metrics.v3_errors
        try:
            data = await stream.read_lp(self.max_msg_size + _RPC_OVERHEAD, timeout=self.request_timeout)
        except FrameTooLarge:
            too_large = LightpushOutcome(LightpushStatus.PAYLOAD_TOO_LARGE,
                                         f"Message size exceeded maximum of {self.max_msg_size} bytes")
            await self._answer(stream, legacy, UNKNOWN_REQUEST_ID, too_large)
            return
        except StreamTimeout:
            errors.labels("read_timeout").inc()
            await stream.reset()
            return
        except StreamClosedError:
            errors.labels("stream_failure").inc()
            return
        if data is None:  # opened and closed unused (js-waku's StreamManager, §2): not an error
            await stream.close_write()
            return
        if not self.gate.admit(stream.remote_peer):
            limited = LightpushOutcome(LightpushStatus.TOO_MANY_REQUESTS,
                                       TOO_MANY_REQUESTS_LEGACY if legacy else TOO_MANY_REQUESTS_V3)
            await self._answer(stream, legacy, UNKNOWN_REQUEST_ID, limited)
            return
        if legacy:
            await self._handle_v2(stream, data)
        else:
            await self._handle_v3(stream, data)

    async def _handle_v3(self, stream: Stream, data: bytes) -> None:
        try:
            req = LightpushRequest.decode(data)
        except LightpushDecodeError as exc:
            outcome = LightpushOutcome(LightpushStatus.BAD_REQUEST, f"decode_rpc_failure: {exc}")
            await self._answer(stream, False, UNKNOWN_REQUEST_ID, outcome)
            return
        outcome = await self.process(stream.remote_peer, req.pubsub_topic, req.message, req.data, LIGHTPUSH_V3)
        await self._answer(stream, False, req.request_id, outcome)

    async def _handle_v2(self, stream: Stream, data: bytes) -> None:
        try:
            rpc = PushRPC.decode(data)
        except LightpushDecodeError as exc:
            await self._answer(stream, True, UNKNOWN_REQUEST_ID,
                               LightpushOutcome(LightpushStatus.BAD_REQUEST, f"decode_rpc_failure: {exc}"))
            return
        if rpc.request is None:
            outcome = LightpushOutcome(LightpushStatus.BAD_REQUEST, "empty_request_body_failure")
        else:
            r = rpc.request
            outcome = await self.process(stream.remote_peer, r.pubsub_topic, r.message, r.data, LIGHTPUSH_V2)
        await self._answer(stream, True, rpc.request_id, outcome)

    async def _answer(self, stream: Stream, legacy: bool, request_id: str, outcome: LightpushOutcome) -> None:
        ok = outcome.status is LightpushStatus.SUCCESS
        if legacy:
            info = "OK" if ok else self._legacy_info(outcome)
            frame = PushRPC(request_id, response=PushResponse(ok, info)).encode()
            self.metrics.messages.labels("PushRequest", "success" if ok else "failure").inc()
            if not ok:
                self.metrics.errors.labels(_ERROR_TYPE.get(outcome.status, "unknown")).inc()
        else:
            frame = LightpushResponse(request_id, int(outcome.status), outcome.desc, outcome.relay_peer_count).encode()
            self.metrics.v3_messages.labels("PushRequest", str(int(outcome.status))).inc()
            if not ok:
                self.metrics.v3_errors.labels(_ERROR_TYPE.get(outcome.status, "unknown")).inc()
        if not await respond(stream, frame, timeout=self.write_timeout):
            (self.metrics.errors if legacy else self.metrics.v3_errors).labels("stream_failure").inc()

    @staticmethod
    def _legacy_info(outcome: LightpushOutcome) -> str:
        # nwaku's legacy service reports every relay publish failure, no relay peers included,
        # as "not_published_to_any_peer" (§10.1); validation errors keep their description.
        if outcome.status in (LightpushStatus.NO_PEERS_TO_RELAY, LightpushStatus.INTERNAL_SERVER_ERROR):
            return _NOT_PUBLISHED
        return outcome.desc or outcome.status.name
