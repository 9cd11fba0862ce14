"""nwaku's REST API (routes and JSON shapes of nwaku waku/waku_api/rest/*/handlers.nim and
types.nim) as a thin shell over :class:`v2.node.V2Node`'s public methods.  Document:
v2/rest/openapi.yaml.

Shapes, as nwaku writes them:
- messages (relay/types.nim ``RelayWakuMessage``): ``payload`` and ``meta`` base64, ``contentTopic``,
  ``version``, ``timestamp`` (ns), ``ephemeral``; store v3 keys are 0x-hex (store/types.nim);
- POST/DELETE on relay and admin answer ``OK`` as text (responses.nim ``RestApiResponse.ok``);
- ``/health``: ``{"nodeHealth": "Ready", "protocolsHealth": [{"Relay": "Ready"}, ...]}``
  (health/types.nim); ``/debug/v1/version``: the version as text (debug/handlers.nim);
- ``/admin/v1/peers``: WakuPeer ``{multiaddr, protocols, shards, connected, agent, origin}``;
  ``/relay`` and ``/mesh``: ``[{"shard": n, "peers": [WakuPeer]}]`` (admin/handlers.nim).

Relay GET endpoints serve a per-topic cache (nwaku relay/topic_cache.nim: the newest messages,
drained by the GET).  Filter: nwaku's REST filter is a filter *client* of some service node; this
node sees every message of its pubsub topics itself, so a REST filter subscription here is served
from its own relay, with nwaku's request/response shapes.  Admin routes
(``/admin/...``) need ``X-Admin-Token`` (or ``Authorization: Bearer``) unless the caller is on
loopback.
"""

from __future__ import annotations

import base64
import binascii
import collections
import ipaddress
import secrets
from collections.abc import Callable
from typing import Any

from v2.core.message import MessageDecodeError, WakuMessage
from v2.core.topics import ContentTopic, PubsubTopic, TopicError, autoshard
from v2.node import V2Node
from v2.protocol_ids import (
    FILTER_SUBSCRIBE,
    LIGHTPUSH_V2,
    LIGHTPUSH_V3,
    PEER_EXCHANGE,
    RELAY,
    STORE_LEGACY,
    STORE_V3,
)
from v2.relay.protocol import PublishError
from v2.rest.server import Handler, HttpError, Request, Response, Route, json_response, text_response
from v2.store.client import StoreClient
from v2.store.common import StoreError
from v2.store.rpc_codec import StoreQuery, StoreResponse, encode_query

__all__ = ["CACHE_CAPACITY", "RestApi", "message_from_json", "message_to_json"]

CACHE_CAPACITY = 50  # messages kept per topic between two GETs (nwaku --rest-relay-cache-capacity)
MAX_TOPICS_PER_REQUEST = 100
MAX_EXTRA_TOPICS = 64  # pubsub topics subscribed through REST on top of the configured ones
MAX_FILTER_CRITERIA = 1000  # nwaku --filter-max-criteria's default
_SERVICE_CODECS = (RELAY, FILTER_SUBSCRIBE, STORE_V3, STORE_LEGACY, LIGHTPUSH_V2, LIGHTPUSH_V3, PEER_EXCHANGE)
_U32 = 2**32
_I64 = 2**63


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(field: str, text: Any) -> bytes:
    if not isinstance(text, str):
        raise HttpError(400, f"{field} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(400, f"{field} is not valid base64") from None


def message_to_json(m: WakuMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"payload": _b64(m.payload), "contentTopic": m.content_topic,
                           "version": m.version or 0, "timestamp": m.timestamp or 0}
    if m.meta is not None:
        out["meta"] = _b64(m.meta)
    if m.ephemeral is not None:
        out["ephemeral"] = m.ephemeral
    return out


def _int(field: str, v: Any, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v < hi:
        raise HttpError(400, f"{field} must be an integer in [{lo}, {hi})")
    return v


def message_from_json(obj: Any, now_ns: int) -> WakuMessage:
    """nwaku's RelayWakuMessage: ``payload`` and ``contentTopic`` required; a missing timestamp
    is set to now (relay/handlers.nim ``toWakuMessage``: ``timestamp.get(getNowInNanosecondTime())``)."""
    if not isinstance(obj, dict):
        raise HttpError(400, "message must be a JSON object")
    if "payload" not in obj:
        raise HttpError(400, "message: payload missing")
    ct = obj.get("contentTopic")
    if not isinstance(ct, str) or not ct:
        raise HttpError(400, "message: contentTopic missing or not a string")
    payload = _unb64("payload", obj["payload"])
    if not payload:
        raise HttpError(400, "message: empty payload")
    version = _int("version", obj["version"], 0, _U32) if obj.get("version") is not None else 0
    ts = _int("timestamp", obj["timestamp"], -_I64, _I64) if obj.get("timestamp") is not None else now_ns
    if ts == 0:
        ts = now_ns
    meta = _unb64("meta", obj["meta"]) if obj.get("meta") is not None else None
    if meta is not None and len(meta) > 64:
        raise HttpError(400, "message: meta longer than 64 bytes")
    eph = obj.get("ephemeral")
    if eph is not None and not isinstance(eph, bool):
        raise HttpError(400, "message: ephemeral must be a boolean")
    try:
        return WakuMessage(payload, ct, version=version, timestamp=ts, meta=meta, ephemeral=eph)
    except MessageDecodeError as exc:
        raise HttpError(400, f"message: {exc}") from None


def _pubsub_topic(text: str) -> str:
    """A static-sharding topic is checked (cluster and shard in range); any other name (nwaku's
    named ``/waku/2/default-waku/proto``) is taken as it is, as nwaku's relay takes it."""
    if text.startswith("/waku/2/rs/"):
        try:
            return str(PubsubTopic.parse(text))
        except TopicError as exc:
            raise HttpError(400, f"invalid pubsub topic: {exc}") from None
    if not 0 < len(text) <= 256 or not text.isprintable() or " " in text:
        raise HttpError(400, "invalid pubsub topic: expected 1 to 256 printable characters without spaces")
    return text


def _content_topic(text: str) -> str:
    try:
        ContentTopic.parse(text)
    except TopicError as exc:
        raise HttpError(400, f"invalid content topic: {exc}") from None
    return text


def _str_list(obj: Any, what: str) -> list[str]:
    if not isinstance(obj, list) or not all(isinstance(x, str) for x in obj):
        raise HttpError(400, f"body must be a JSON array of {what} strings")
    if len(obj) > MAX_TOPICS_PER_REQUEST:
        raise HttpError(400, f"at most {MAX_TOPICS_PER_REQUEST} {what}s per request")
    return obj


def _hex_or_b64(field: str, text: str) -> bytes:
    t = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        if len(t) == 64:
            return bytes.fromhex(t)
        return base64.b64decode(t.replace("-", "+").replace("_", "/"), validate=True)
    except (ValueError, binascii.Error):
        raise HttpError(400, f"{field}: expected 0x-hex or base64, got {text[:80]!r}") from None


def _bool_arg(req: Request, name: str, default: bool) -> bool:
    v = req.arg(name)
    if v is None or v == "":
        return default
    if v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise HttpError(400, f"{name} must be true or false")


def _int_arg(req: Request, name: str, lo: int, hi: int) -> int | None:
    v = req.arg(name)
    if v is None or v == "":
        return None
    try:
        n = int(v, 10)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer") from None
    if not lo <= n < hi:
        raise HttpError(400, f"{name} out of range [{lo}, {hi})")
    return n


class RestApi:
    """``RestApi(node).routes()`` for :class:`v2.rest.server.RestServer`."""

    def __init__(self, node: V2Node, *, version: str = "unknown", admin_token: str | None = None,
                 clock_ns: Callable[[], int] | None = None, cache_capacity: int = CACHE_CAPACITY) -> None:
        import time

        self.node = node
        self.version = version
        self.admin_token = admin_token
        self._now_ns = clock_ns or time.time_ns
        self.cache_capacity = cache_capacity
        self._relay_cache: dict[str, collections.deque[WakuMessage]] = {}
        self._auto_cache: dict[str, collections.deque[WakuMessage]] = {}
        self._filter_cache: dict[str, collections.deque[WakuMessage]] = {}
        self._filter_criteria: set[tuple[str, str]] = set()
        node.add_message_sink(self._on_message)

    async def _on_message(self, pubsub_topic: str, msg: WakuMessage, _hash: bytes, _data: bytes) -> None:
        if pubsub_topic in self._relay_cache:
            self._relay_cache[pubsub_topic].append(msg)
        if msg.content_topic in self._auto_cache:
            self._auto_cache[msg.content_topic].append(msg)
        if (pubsub_topic, msg.content_topic) in self._filter_criteria:
            self._filter_cache.setdefault(msg.content_topic, collections.deque(maxlen=self.cache_capacity)).append(msg)

    def routes(self) -> list[Route]:
        a = self._admin
        return [
            Route("GET", "/health", self.health),
            Route("GET", "/debug/v1/info", self.debug_info),
            Route("GET", "/debug/v1/version", self.debug_version),
            Route("GET", "/admin/v1/peers", a(self.admin_peers)),
            Route("POST", "/admin/v1/peers", a(self.admin_connect)),
            Route("GET", "/admin/v1/peers/connected", a(self.admin_connected)),
            Route("GET", "/admin/v1/peers/service", a(self.admin_service)),
            Route("GET", "/admin/v1/peers/relay", a(self.admin_relay)),
            Route("GET", "/admin/v1/peers/mesh", a(self.admin_mesh)),
            Route("GET", "/admin/v1/peers/stats", a(self.admin_stats)),
            Route("GET", "/relay/v1/subscriptions", self.relay_subscriptions),
            Route("POST", "/relay/v1/subscriptions", self.relay_subscribe),
            Route("DELETE", "/relay/v1/subscriptions", self.relay_unsubscribe),
            Route("GET", "/relay/v1/messages/{pubsubTopic}", self.relay_get),
            Route("POST", "/relay/v1/messages/{pubsubTopic}", self.relay_post),
            Route("POST", "/relay/v1/auto/subscriptions", self.auto_subscribe),
            Route("DELETE", "/relay/v1/auto/subscriptions", self.auto_unsubscribe),
            Route("GET", "/relay/v1/auto/messages/{contentTopic}", self.auto_get),
            Route("POST", "/relay/v1/auto/messages", self.auto_post),
            Route("GET", "/store/v3/messages", self.store_messages),
            Route("POST", "/filter/v2/subscriptions", self.filter_subscribe),
            Route("PUT", "/filter/v2/subscriptions", self.filter_subscribe),
            Route("DELETE", "/filter/v2/subscriptions", self.filter_unsubscribe),
            Route("DELETE", "/filter/v2/subscriptions/all", self.filter_unsubscribe_all),
            Route("GET", "/filter/v2/subscriptions/{requestId}", self.filter_ping),
            Route("GET", "/filter/v2/messages/{contentTopic}", self.filter_get),
            Route("POST", "/lightpush/v3/message", self.lightpush),
        ]

    # -- access --------------------------------------------------------------------------------

    def _admin(self, handler: Handler) -> Handler:
        async def guarded(req: Request) -> Response:
            if not self._admin_allowed(req):
                raise HttpError(403, "admin routes need X-Admin-Token (or Authorization: Bearer) off loopback")
            return await handler(req)

        return guarded

    def _admin_allowed(self, req: Request) -> bool:
        try:
            if ipaddress.ip_address(req.remote).is_loopback:
                return True
        except ValueError:
            pass
        if not self.admin_token:
            return False
        given = req.headers.get("x-admin-token", "")
        auth = req.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        return bool(given) and secrets.compare_digest(given.encode(), self.admin_token.encode())

    # -- health and debug ------------------------------------------------------------------------

    async def health(self, _: Request) -> Response:
        ready = self.node.started.is_set()
        status = "Ready" if ready else "Initializing"
        c = self.node.config
        protos = []
        for name, on in (("Relay", c.relay), ("Store", c.store), ("Filter", c.filter), ("Lightpush", c.lightpush)):
            protos.append({name: (status if on else "Not mounted")})
        return json_response({"nodeHealth": status, "protocolsHealth": protos}, 200 if ready else 503)

    async def debug_info(self, _: Request) -> Response:
        return json_response(self.node.info())

    async def debug_version(self, _: Request) -> Response:
        return text_response(self.version)

    # -- admin -----------------------------------------------------------------------------------

    def _peer(self, peer: str) -> dict[str, Any]:
        host = self.node.host
        protos = sorted(set(host.peer_protocols(peer)))
        shards: list[int] = []
        md = self.node.peer_metadata.get(peer)
        if md is not None:
            shards = sorted(md.shards)
        addrs = host.peer_addrs(peer)  # identify's listen addresses (may carry /p2p/ already)
        maddr = f"/p2p/{peer}"
        if addrs:
            maddr = addrs[0] if "/p2p/" in addrs[0] else f"{addrs[0]}/p2p/{peer}"
        connected = peer in host.connected_peers()
        return {"multiaddr": maddr, "protocols": protos, "shards": shards,
                "connected": "Connected" if connected else "NotConnected", "agent": "",
                "origin": "UnknownOrigin"}

    async def admin_peers(self, _: Request) -> Response:
        return json_response([self._peer(p) for p in self.node.peers()])

    async def admin_connected(self, _: Request) -> Response:
        return json_response([self._peer(p) for p in self.node.peers()])

    async def admin_service(self, _: Request) -> Response:
        return json_response([self._peer(p) for p in self.node.peers()
                              if set(self.node.host.peer_protocols(p)) & set(_SERVICE_CODECS)])

    def _shard_peers(self, peers_of: Callable[[str], list[str]]) -> list[dict[str, Any]]:
        out = []
        for topic in self.node.relay.topics:
            try:
                shard = PubsubTopic.parse(topic).shard
            except TopicError:
                continue  # nwaku skips topics that are no shard, too
            out.append({"shard": shard, "peers": [self._peer(p) for p in peers_of(topic)]})
        return out

    async def admin_relay(self, _: Request) -> Response:
        if not self.node.config.relay:
            raise HttpError(503, "Error: Relay Protocol is not mounted to the node")
        return json_response(self._shard_peers(self.node.relay.topic_peers))

    async def admin_mesh(self, _: Request) -> Response:
        if not self.node.config.relay:
            raise HttpError(503, "Error: Relay Protocol is not mounted to the node")
        return json_response(self._shard_peers(self.node.relay.mesh_peers))

    async def admin_stats(self, _: Request) -> Response:
        peers = [self._peer(p) for p in self.node.peers()]
        relay = self._shard_peers(self.node.relay.topic_peers)
        mesh = self._shard_peers(self.node.relay.mesh_peers)
        by_proto = {c: sum(c in p["protocols"] for p in peers) for c in _SERVICE_CODECS}
        return json_response({
            "Sum": {"Total peers": len(peers)},
            "By Connectedness": {"Connected": sum(p["connected"] == "Connected" for p in peers),
                                 "NotConnected": sum(p["connected"] != "Connected" for p in peers),
                                 "CannotConnect": 0, "CanConnect": 0},
            "Relay peers": {**{str(s["shard"]): len(s["peers"]) for s in relay}, "Total relay peers": len(relay)},
            "Mesh peers": {**{str(s["shard"]): len(s["peers"]) for s in mesh}, "Total mesh peers": len(mesh)},
            "By Protocols": by_proto,
        })

    async def admin_connect(self, req: Request) -> Response:
        addrs = _str_list(req.json(), "multiaddr")
        for i, addr in enumerate(addrs):
            if "/p2p/" not in addr:
                raise HttpError(400, f"Couldn't parse remote peer info: no /p2p/<peer id> in {addr[:200]!r}")
            try:
                await self.node.host.connect(addr, timeout=5.0)
            except Exception as exc:  # any dial failure (bad multiaddr, refused, timeout) is the caller's 400
                raise HttpError(400, f"Failed to connect to peer at index: {i} - {addr[:200]}: {exc}") from None
        return text_response("OK")

    # -- relay -----------------------------------------------------------------------------------

    def _require_relay(self) -> None:
        if not self.node.config.relay:
            raise HttpError(503, "relay is not mounted on this node")

    async def relay_subscriptions(self, _: Request) -> Response:
        return json_response(list(self.node.relay.topics))

    async def relay_subscribe(self, req: Request) -> Response:
        self._require_relay()
        topics = [_pubsub_topic(t) for t in _str_list(req.json(), "pubsub topic")]
        extra = set(self.node.relay.topics) - set(self.node.config.pubsub_topics)
        if len(extra | set(topics) - set(self.node.config.pubsub_topics)) > MAX_EXTRA_TOPICS:
            raise HttpError(400, f"at most {MAX_EXTRA_TOPICS} pubsub topics beyond the configured ones")
        for t in topics:
            await self.node.subscribe(t)
            self._relay_cache.setdefault(t, collections.deque(maxlen=self.cache_capacity))
        return text_response("OK")

    async def relay_unsubscribe(self, req: Request) -> Response:
        self._require_relay()
        topics = [_pubsub_topic(t) for t in _str_list(req.json(), "pubsub topic")]
        for t in topics:
            if t in self.node.config.pubsub_topics:
                continue  # the node's configured topics stay (the bridge relies on them)
            await self.node.unsubscribe(t)
            self._relay_cache.pop(t, None)
        return text_response("OK")

    async def relay_get(self, req: Request) -> Response:
        topic = _pubsub_topic(req.params["pubsubTopic"])
        cache = self._relay_cache.get(topic)
        if cache is None:
            if topic not in self.node.relay.topics:
                raise HttpError(404, f"Not subscribed to topic: {topic}")
            cache = self._relay_cache.setdefault(topic, collections.deque(maxlen=self.cache_capacity))
        out = [message_to_json(m) for m in cache]
        cache.clear()
        return json_response(out)

    async def _publish(self, topic: str, obj: Any) -> Response:
        self._require_relay()
        msg = message_from_json(obj, self._now_ns())
        if len(msg.encode()) > self.node.config.max_msg_size:
            raise HttpError(400, f"message over the maximum size of {self.node.config.max_msg_size} bytes")
        if topic not in self.node.relay.topics:
            raise HttpError(400, f"Failed to publish: not subscribed to pubsub topic {topic}")
        try:
            await self.node.publish(topic, msg)
        except PublishError as exc:
            raise HttpError(400, f"Failed to publish: {exc}") from None
        return text_response("OK")

    async def relay_post(self, req: Request) -> Response:
        return await self._publish(_pubsub_topic(req.params["pubsubTopic"]), req.json())

    def _autoshard(self, content_topic: str) -> str:
        c = self.node.config
        try:
            return str(autoshard(_content_topic(content_topic), c.cluster_id, c.num_shards_in_network or 1))
        except TopicError as exc:
            raise HttpError(400, f"invalid content topic: {exc}") from None

    async def auto_subscribe(self, req: Request) -> Response:
        self._require_relay()
        topics = [_content_topic(t) for t in _str_list(req.json(), "content topic")]
        for ct in topics:
            await self.node.subscribe(self._autoshard(ct))
            self._auto_cache.setdefault(ct, collections.deque(maxlen=self.cache_capacity))
        return text_response("OK")

    async def auto_unsubscribe(self, req: Request) -> Response:
        self._require_relay()
        for ct in [_content_topic(t) for t in _str_list(req.json(), "content topic")]:
            self._auto_cache.pop(ct, None)
        return text_response("OK")

    async def auto_get(self, req: Request) -> Response:
        ct = _content_topic(req.params["contentTopic"])
        cache = self._auto_cache.get(ct)
        if cache is None:
            raise HttpError(404, f"Not subscribed to content topic: {ct}")
        out = [message_to_json(m) for m in cache]
        cache.clear()
        return json_response(out)

    async def auto_post(self, req: Request) -> Response:
        obj = req.json()
        if not isinstance(obj, dict) or not isinstance(obj.get("contentTopic"), str):
            raise HttpError(400, "message: contentTopic missing or not a string")
        return await self._publish(self._autoshard(obj["contentTopic"]), obj)

    # -- store v3 --------------------------------------------------------------------------------

    async def store_messages(self, req: Request) -> Response:
        cts = [t for t in (req.arg("contentTopics") or "").split(",") if t]
        hashes = tuple(_hex_or_b64("hashes", h) for h in (req.arg("hashes") or "").split(",") if h)
        cursor = req.arg("cursor")
        limit = _int_arg(req, "pageSize", 0, 2**64)
        pubsub = req.arg("pubsubTopic") or None
        q = StoreQuery(req.arg("requestId") or secrets.token_hex(8), include_data=_bool_arg(req, "includeData", False),
                       pubsub_topic=pubsub, content_topics=tuple(cts),
                       time_start=_int_arg(req, "startTime", -_I64, _I64),
                       time_end=_int_arg(req, "endTime", -_I64, _I64),
                       message_hashes=hashes, pagination_cursor=_hex_or_b64("cursor", cursor) if cursor else None,
                       pagination_forward=_bool_arg(req, "ascending", True), pagination_limit=limit)
        peer = req.arg("peerAddr")
        if peer:
            try:
                if "/p2p/" in peer:
                    peer = await self.node.host.connect(peer)
                resp = await StoreClient(self.node.host).query(peer, q)
            except StoreError as exc:
                raise HttpError(400, f"Failed to query the store peer: {exc}") from None
            except Exception as exc:  # a dial failure on the address the caller gave
                raise HttpError(400, f"Failed to dial the store peer: {exc}") from None
        elif self.node.store is not None:
            resp = await self.node.store.answer(encode_query(q))
        else:
            raise HttpError(400, "no peerAddr given and this node mounts no store")
        if resp.status_code == 400:
            raise HttpError(400, resp.status_desc)
        return json_response(self._store_json(resp), 200 if resp.status_code in (200, 300) else resp.status_code)

    @staticmethod
    def _store_json(r: StoreResponse) -> dict[str, Any]:
        out: dict[str, Any] = {"requestId": r.request_id, "statusCode": r.status_code, "statusDesc": r.status_desc,
                               "messages": []}
        for kv in r.messages:
            item: dict[str, Any] = {"messageHash": "0x" + kv.message_hash.hex()}
            if kv.message is not None:
                item["message"] = message_to_json(kv.message)
            if kv.pubsub_topic is not None:
                item["pubsubTopic"] = kv.pubsub_topic
            out["messages"].append(item)
        if r.pagination_cursor is not None:
            out["paginationCursor"] = "0x" + r.pagination_cursor.hex()
        return out

    # -- filter (served from this node's own relay; see the module docstring) ----------------------

    def _filter_request(self, req: Request) -> tuple[str, str, list[str]]:
        obj = req.json()
        if not isinstance(obj, dict):
            raise HttpError(400, "body must be a JSON object")
        rid = obj.get("requestId")
        if not isinstance(rid, str) or not rid:
            raise HttpError(400, "requestId missing")
        topic = obj.get("pubsubTopic")
        cts = _str_list(obj.get("contentFilters"), "content topic")
        if not cts:
            raise HttpError(400, "contentFilters is empty")
        if len(cts) > 30:  # nwaku waku_filter_v2 MaxContentTopicsPerRequest
            raise HttpError(400, "at most 30 content filters per request")
        for ct in cts:
            _content_topic(ct)
        if topic is None or topic == "":
            topics = {self._autoshard(ct) for ct in cts}
            if len(topics) != 1:
                raise HttpError(400, "contentFilters map to several shards: give pubsubTopic")
            topic = topics.pop()
        elif not isinstance(topic, str):
            raise HttpError(400, "pubsubTopic must be a string")
        else:
            topic = _pubsub_topic(topic)
        return rid, topic, cts

    async def filter_subscribe(self, req: Request) -> Response:
        rid, topic, cts = self._filter_request(req)
        if topic not in self.node.relay.topics:
            return json_response({"requestId": rid, "statusCode": 400,
                                  "statusDesc": f"pubsub topic {topic} is not served by this node"}, 400)
        if len(self._filter_criteria | {(topic, ct) for ct in cts}) > MAX_FILTER_CRITERIA:
            return json_response({"requestId": rid, "statusCode": 400,
                                  "statusDesc": f"at most {MAX_FILTER_CRITERIA} filter criteria"}, 400)
        for ct in cts:
            self._filter_criteria.add((topic, ct))
        return json_response({"requestId": rid, "statusCode": 200, "statusDesc": ""})

    async def filter_unsubscribe(self, req: Request) -> Response:
        rid, topic, cts = self._filter_request(req)
        for ct in cts:
            self._filter_criteria.discard((topic, ct))
        return json_response({"requestId": rid, "statusCode": 200, "statusDesc": ""})

    async def filter_unsubscribe_all(self, req: Request) -> Response:
        obj = req.json()
        rid = obj.get("requestId") if isinstance(obj, dict) else None
        if not isinstance(rid, str) or not rid:
            raise HttpError(400, "requestId missing")
        self._filter_criteria.clear()
        return json_response({"requestId": rid, "statusCode": 200, "statusDesc": ""})

    async def filter_ping(self, req: Request) -> Response:
        rid = req.params["requestId"]
        if not self._filter_criteria:
            return json_response({"requestId": rid, "statusCode": 404, "statusDesc": "NOT_FOUND: no subscription"},
                                 404)
        return json_response({"requestId": rid, "statusCode": 200, "statusDesc": ""})

    async def filter_get(self, req: Request) -> Response:
        ct = _content_topic(req.params["contentTopic"])
        if not any(c == ct for _, c in self._filter_criteria):
            raise HttpError(404, f"Not subscribed to content topic: {ct}")
        cache = self._filter_cache.get(ct)
        out = [message_to_json(m) for m in cache] if cache else []
        if cache:
            cache.clear()
        return json_response(out)

    # -- lightpush v3 ------------------------------------------------------------------------------

    async def lightpush(self, req: Request) -> Response:
        """nwaku lightpush/handlers.nim: ``{pubsubTopic?, message}`` → ``{statusCode, statusDesc?,
        relayPeerCount?}``; this node publishes through its own relay."""
        obj = req.json()
        if not isinstance(obj, dict):
            raise HttpError(400, "body must be a JSON object")
        self._require_relay()
        msg = message_from_json(obj.get("message"), self._now_ns())
        topic = obj.get("pubsubTopic")
        if topic is None or topic == "":
            topic = self._autoshard(msg.content_topic)
        elif not isinstance(topic, str):
            raise HttpError(400, "pubsubTopic must be a string")
        else:
            topic = _pubsub_topic(topic)
        if len(msg.encode()) > self.node.config.max_msg_size:
            return json_response({"statusCode": 413, "statusDesc": "PAYLOAD_TOO_LARGE"}, 413)
        if topic not in self.node.relay.topics:
            return json_response({"statusCode": 421, "statusDesc": f"UNSUPPORTED_PUBSUB_TOPIC: {topic}"}, 400)
        peers = len(self.node.relay_peers(topic))
        if peers == 0:
            return json_response({"statusCode": 505, "statusDesc": "NO_PEERS_TO_RELAY"}, 503)
        res = await self.node.publish(topic, msg)
        return json_response({"statusCode": 200, "relayPeerCount": max(res.relay_peers, peers)})
