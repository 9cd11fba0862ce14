"""Filter v2 service (waku-v2.md §9): subscribe/ping/unsubscribe requests and message pushes.

Requests: one request and one response per stream on ``/vac/waku/filter-subscribe/2.0.0-beta1``,
then we close our write side (js-waku reads to EOF, §2).  Garbage answers 400 with request_id
"N/A"; a stream closed before any byte (js-waku pre-opens streams) is closed quietly; a stream
that stays silent past ``request_timeout`` is reset and counted.  Nothing a peer sends escapes
as an exception.

Pushes: the node feeds every accepted message to :meth:`FilterService.on_message`.  Each
matching subscriber has a bounded queue (a full queue is a counted drop, so a slow subscriber
never slows the node) and a worker that writes each ``MessagePush`` on a NEW stream it opens to
the subscriber (``/vac/waku/filter-push/2.0.0-beta1``), then closes it, each push bounded by
``push_timeout`` (nwaku: 20 s).  One push per stream because go-waku's light node reads exactly
one MessagePush and closes the stream (waku-org/go-waku v0.10.0 waku/v2/protocol/filter/client.go
onRequest), so a second frame on a kept stream is lost without an error; go-waku's own server
pushes the same way (filter/server.go pushMessage), and nwaku's and js-waku's clients read to
EOF, so a one-frame stream suits them too.  A subscriber that could not take a push gets none for
``push_backoff`` seconds (counted drops), so a half-dead connection costs one timeout, not one
per queued message.
Each message hash is pushed once per 2 min (nwaku's push cache).

Maintenance (every minute, nwaku's period) removes subscribers that stopped pinging for
``subscription_timeout`` (5 min), and, as nwaku's maintainSubscriptions does, subscribers whose
identify does not list ``/vac/waku/filter-push/2.0.0-beta1`` (§9): they could never take a push.
nwaku also checks before each push (pushToPeer) and skips such a peer; we check where we would
open the push stream, and count the skip.  One difference: nim-libp2p finishes identify while it
upgrades the connection, so nwaku's peer store always knows a subscriber's protocols, whereas
py-libp2p identifies a new peer in the background; an empty protocol list therefore means "not
identified yet", and such a subscriber is kept (it still expires without pings) rather than
dropped.  Subscribers are never checked at subscribe time (nor does nwaku).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio
from prometheus_client import CollectorRegistry

from v2.core.message import WakuMessage
from v2.filter.metrics import FilterMetrics
from v2.filter.rpc_codec import (
    MAX_SUBSCRIBE_REQUEST_SIZE,
    FilterDecodeError,
    FilterStatus,
    FilterSubscribeRequest,
    FilterSubscribeResponse,
    FilterSubscribeType,
    encode_message_push,
)
from v2.filter.subscriptions import (
    CriteriaLimitError,
    NotSubscribedError,
    PeerLimitError,
    PushDedup,
    SubscriptionTable,
    TooManyContentTopicsError,
)
from v2.host import DialError, Host
from v2.protocol_ids import FILTER_PUSH, FILTER_SUBSCRIBE
from v2.ratelimit import RateLimit
from v2.rpc import UNKNOWN_REQUEST_ID, RequestGate, respond
from v2.stream import FrameTooLarge, Stream, StreamClosedError, StreamTimeout

__all__ = ["TOO_MANY_REQUESTS", "FilterService"]

log = logging.getLogger(__name__)

TOO_MANY_REQUESTS = "filter request rejected due rate limit exceeded"  # nwaku's status_desc, word for word


@dataclass(slots=True)
class _Pusher:
    send: trio.MemorySendChannel[bytes]
    recv: trio.MemoryReceiveChannel[bytes]
    backoff_until: float = 0.0  # trio clock; pushes before it are dropped (the peer is unreachable)


class FilterService:
    protocol_ids: tuple[str, ...] = (FILTER_SUBSCRIBE,)

    def __init__(self, host: Host, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time,
                 max_peers: int = 1000, max_criteria_per_peer: int = 1000, subscription_timeout: float = 300.0,
                 push_timeout: float = 20.0, push_queue_size: int = 256, request_timeout: float = 300.0,
                 maintenance_interval: float = 60.0, dedup_ttl: float = 120.0, push_backoff: float = 10.0,
                 rate_limit: RateLimit | None = None) -> None:
        """``rate_limit``: nwaku's ``--rate-limit=filter:…``, per peer only as nwaku's
        PerPeerRateLimiter (v2/ratelimit.py): a subscribe-codec request over it (subscribe, ping,
        unsubscribe alike) is answered 429 with request_id "N/A" undecoded; None: unlimited."""
        self.host = host
        self.metrics = FilterMetrics(registry)
        self.gate = RequestGate("filter", rate_limit, registry, per_peer_only=True)
        self._clock = clock
        self.table = SubscriptionTable(max_peers=max_peers, max_criteria_per_peer=max_criteria_per_peer,
                                       ttl=subscription_timeout)
        self._dedup = PushDedup(ttl=dedup_ttl)
        self.push_timeout = push_timeout
        self.push_queue_size = push_queue_size
        self.push_backoff = push_backoff
        # Long by default: js-waku pre-opens streams and may write to them much later (§2;
        # nwaku's mplex timeout is 5 min).
        self.request_timeout = request_timeout
        self.maintenance_interval = maintenance_interval
        self._pushers: dict[str, _Pusher] = {}
        self._nursery: trio.Nursery | None = None

    # -- requests -----------------------------------------------------------------------------

    async def handle(self, stream: Stream) -> None:
        try:
            data = await stream.read_lp(MAX_SUBSCRIBE_REQUEST_SIZE, timeout=self.request_timeout)
        except FrameTooLarge:
            self.metrics.errors.labels("decode_rpc_failure").inc()
            self.metrics.requests.labels("invalid", str(int(FilterStatus.BAD_REQUEST))).inc()
            too_large = FilterSubscribeResponse(UNKNOWN_REQUEST_ID, FilterStatus.BAD_REQUEST, "request too large")
            await self._respond(stream, too_large)
            return
        except StreamTimeout:
            self.metrics.errors.labels("read_timeout").inc()
            await stream.reset()
            return
        except StreamClosedError:
            self.metrics.errors.labels("stream_failure").inc()
            return
        if data is None:  # opened and closed unused (js-waku's StreamManager, §2): not an error
            await stream.close_write()
            return
        if not self.gate.admit(stream.remote_peer):
            # nwaku waku_filter_v2/protocol.nim: answered without decoding the request.
            self.metrics.requests.labels("rate_limited", str(int(FilterStatus.TOO_MANY_REQUESTS))).inc()
            await self._respond(stream, FilterSubscribeResponse(UNKNOWN_REQUEST_ID, FilterStatus.TOO_MANY_REQUESTS,
                                                                TOO_MANY_REQUESTS))
            return
        started = time.perf_counter()
        try:
            req = FilterSubscribeRequest.decode(data)
        except FilterDecodeError as exc:
            self.metrics.errors.labels("decode_rpc_failure").inc()
            resp = FilterSubscribeResponse(UNKNOWN_REQUEST_ID, FilterStatus.BAD_REQUEST, f"decode_rpc_failure: {exc}")
            kind = "invalid"
        else:
            resp = self.serve(stream.remote_peer, req)
            kind = req.type.name
        self.metrics.requests.labels(kind, str(resp.status_code)).inc()
        self.metrics.request_duration.labels(kind).observe(time.perf_counter() - started)
        await self._respond(stream, resp)

    async def _respond(self, stream: Stream, resp: FilterSubscribeResponse) -> None:
        if not await respond(stream, resp.encode(), timeout=self.push_timeout):
            # js-waku's unsubscribe never reads the answer (§9)
            self.metrics.errors.labels("stream_failure").inc()

    def serve(self, peer: str, req: FilterSubscribeRequest) -> FilterSubscribeResponse:
        """Apply one decoded request from ``peer`` to the table; the response to send (§9 codes)."""
        now = self._clock()
        t = req.type
        try:
            if t is FilterSubscribeType.SUBSCRIBER_PING:
                self.table.ping(peer, now)
            elif t is FilterSubscribeType.UNSUBSCRIBE_ALL:
                self.table.unsubscribe_all(peer, now)
            else:
                if not req.pubsub_topic or not req.content_topics:
                    return FilterSubscribeResponse(req.request_id, FilterStatus.BAD_REQUEST,
                                                   "pubsubTopic and contentTopics must be specified")
                if t is FilterSubscribeType.SUBSCRIBE:
                    self.table.subscribe(peer, req.pubsub_topic, req.content_topics, now)
                else:
                    self.table.unsubscribe(peer, req.pubsub_topic, req.content_topics, now)
        except TooManyContentTopicsError as exc:
            return FilterSubscribeResponse(req.request_id, FilterStatus.BAD_REQUEST, str(exc))
        except (PeerLimitError, CriteriaLimitError) as exc:
            self.metrics.errors.labels("limit_reached").inc()
            return FilterSubscribeResponse(req.request_id, FilterStatus.SERVICE_UNAVAILABLE, str(exc))
        except NotSubscribedError as exc:
            self._forget_gone()
            return FilterSubscribeResponse(req.request_id, FilterStatus.NOT_FOUND, str(exc))
        finally:
            self.metrics.subscriptions.set(len(self.table))
        self._forget_gone()
        return FilterSubscribeResponse(req.request_id, FilterStatus.OK, "OK")

    # -- pushes -------------------------------------------------------------------------------

    async def on_message(self, pubsub_topic: str, msg: WakuMessage, msg_hash: bytes,
                         data: bytes | None = None) -> None:
        """Queue a push of ``msg`` (its original bytes ``data``) to every matching subscriber.

        Never blocks on the network: a full subscriber queue is a counted drop.
        """
        started = time.perf_counter()
        now = self._clock()
        peers = self.table.match(pubsub_topic, msg.content_topic, now)
        if not peers or not self._dedup.first_seen(msg_hash, now):
            return
        if self._nursery is None:
            self.metrics.errors.labels("not_running").inc()
            return
        frame = encode_message_push(pubsub_topic, data if data is not None else msg.encode())
        for peer in peers:
            pusher = self._pushers.get(peer)
            if pusher is None:
                send, recv = trio.open_memory_channel[bytes](self.push_queue_size)
                pusher = self._pushers[peer] = _Pusher(send, recv)
                self._nursery.start_soon(self._push_worker, peer, pusher)
            try:
                pusher.send.send_nowait(frame)
            except trio.WouldBlock:
                self.metrics.errors.labels("push_queue_full").inc()
                self.metrics.pushes.labels("dropped").inc()
            except trio.ClosedResourceError:  # removed between match and here; nothing to do
                pass
        self.metrics.handle_message_duration.observe(time.perf_counter() - started)

    async def _push_worker(self, peer: str, pusher: _Pusher) -> None:
        async with pusher.recv:
            async for frame in pusher.recv:
                await self._push_one(peer, pusher, frame)

    async def _push_one(self, peer: str, pusher: _Pusher, frame: bytes) -> None:
        if self._lacks_push_codec(peer):
            # nwaku's pushToPeer: no push to a peer whose identify lacks the codec (the stream
            # could not be negotiated); maintenance removes the subscriber.
            self.metrics.errors.labels("no_push_codec").inc()
            self.metrics.pushes.labels("dropped").inc()
            return
        if trio.current_time() < pusher.backoff_until:
            # A subscriber that just failed to take a push would cost every queued message a
            # full push timeout (a half-dead connection answers nothing): drop, counted.
            self.metrics.errors.labels("push_backoff").inc()
            self.metrics.pushes.labels("dropped").inc()
            return
        stream: Stream | None = None
        try:
            with trio.fail_after(self.push_timeout):
                stream = await self.host.new_stream(peer, [FILTER_PUSH], timeout=self.push_timeout)
                await stream.write_lp(frame, timeout=self.push_timeout)
                await stream.close_write()
            self.metrics.pushes.labels("ok").inc()
            return
        except trio.TooSlowError:
            self.metrics.errors.labels("push_timeout_failure").inc()
        except DialError as exc:
            log.debug("filter push to %s: %s", peer, exc)
            self.metrics.errors.labels("dial_failure").inc()
        except StreamClosedError as exc:
            log.debug("filter push stream to %s: %s", peer, exc)
            self.metrics.errors.labels("push_failure").inc()
        finally:
            if stream is not None:
                await stream.aclose()
        self.metrics.pushes.labels("failed").inc()
        pusher.backoff_until = trio.current_time() + self.push_backoff

    def _lacks_push_codec(self, peer: str) -> bool:
        """True when the peer's identify is known and does not list filter-push (§9); False when
        it lists it or py-libp2p has not identified the peer yet (an empty list)."""
        protocols = self.host.peer_protocols(peer)
        return bool(protocols) and FILTER_PUSH not in protocols

    def _forget_gone(self) -> None:
        """Stop the push workers of peers that are no longer subscribed."""
        live = set(self.table.peers())
        for peer in [p for p in self._pushers if p not in live]:
            self._pushers.pop(peer).send.close()

    # -- maintenance --------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """One maintenance round (run every ``maintenance_interval``): remove the subscribers that
        stopped pinging, then those whose identify lacks filter-push (nwaku's
        maintainSubscriptions, §9); returns the removed peers."""
        expired = self.table.sweep(self._clock())
        self.metrics.subscribers_removed.labels("expired").inc(len(expired))
        unreachable = [p for p in self.table.peers() if self._lacks_push_codec(p)]
        for peer in unreachable:
            log.debug("filter: removing subscriber %s: its identify does not list %s", peer, FILTER_PUSH)
            self.table.remove(peer)
        self.metrics.subscribers_removed.labels("no_push_codec").inc(len(unreachable))
        self._forget_gone()
        self.metrics.subscriptions.set(len(self.table))
        return expired + unreachable

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await trio.sleep(self.maintenance_interval)
                    removed = self.sweep()
                    if removed:
                        log.info("filter: %d subscribers removed by maintenance", len(removed))
        finally:
            self._nursery = None
            for pusher in self._pushers.values():
                pusher.send.close()
            self._pushers.clear()
