"""Bad input from the network against a full node (every protocol mounted): garbage protobufs,
oversize frames and messages, wrong or missing metadata, peers that open streams and go silent.
Each is answered with the right status, or the stream/peer is dropped, and counted; the node
keeps serving well-behaved peers throughout."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.helpers.v2host import new_host
from tests.helpers.v2node import TOPIC, Collector, make_node, metric, start
from v2.core.message import MAX_MESSAGE_SIZE, WakuMessage
from v2.filter.client import FilterClient
from v2.filter.rpc_codec import FilterStatus, FilterSubscribeResponse
from v2.host import Host
from v2.lightpush.client import LightpushClient
from v2.lightpush.rpc_codec import LightpushResponse, LightpushStatus, PushRPC
from v2.metadata.client import query_metadata
from v2.metadata.protocol import MetadataService
from v2.metadata.rpc_codec import Metadata
from v2.node import V2Node
from v2.peer_exchange.rpc_codec import PxStatus, decode_response
from v2.protocol_ids import (
    FILTER_SUBSCRIBE,
    LIGHTPUSH_V2,
    LIGHTPUSH_V3,
    METADATA,
    PEER_EXCHANGE,
    RELAY,
    STORE_LEGACY,
    STORE_V3,
)
from v2.store.client import StoreClient
from v2.store.rpc_codec import StoreQuery
from v2.store.rpc_codec import decode_response as decode_store_response
from v2.stream import Stream, StreamClosedError, encode_uvarint

GARBAGE = b"\xff" * 24  # not a protobuf: a truncated 10-byte varint tag
CONTENT = "/test/1/bad/proto"


async def peer_host(nursery: trio.Nursery, cluster: int | None = 0, metadata: bool = True) -> Host:
    """A raw libp2p host; with ``metadata`` it answers the handshake (so the node keeps it)."""
    h = new_host(ws=True)
    if metadata and cluster is None:
        async def no_cluster(stream: Stream) -> None:
            await stream.read_lp(1024)
            await stream.write_lp(b"")  # an answer without cluster_id
            await stream.close_write()
        h.set_stream_handler(METADATA, no_cluster)
    elif metadata:
        assert cluster is not None
        h.set_stream_handler(METADATA, MetadataService(cluster, (), CollectorRegistry()).handle)
    await nursery.start(h.run)
    return h


async def exchange(h: Host, peer: str, protocol: str, frame: bytes, raw: bool = False) -> bytes | None:
    """Write one frame, read one answer (None = closed without answer, or reset)."""
    s = await h.new_stream(peer, [protocol])
    try:
        if raw:
            await s._write(frame)
        else:
            await s.write_lp(frame)
        return await s.read_lp(1 << 20, timeout=10)
    except StreamClosedError:
        return None
    finally:
        await s.aclose()


@pytest.fixture
async def served(nursery: trio.Nursery, tmp_path: Path) -> tuple[V2Node, Collector, V2Node]:
    # Every hostile client is a new host on 127.0.0.1: without lifting the colocation limit (nwaku's 5
    # per IP) the manager would prune them before their frames reach the decoders under test.
    node = make_node(tmp_path, lightpush=True, peer_exchange=True, idle_stream_timeout=1.0, ip_colocation_limit=0)
    relay_peer = make_node()
    col = await start(nursery, node)
    await start(nursery, relay_peer)
    await relay_peer.host.connect(node.listen_addrs[0])
    with trio.fail_after(20):
        while not node.relay.mesh_peers(TOPIC):
            await trio.sleep(0.05)
    return node, col, relay_peer


async def still_serving(nursery: trio.Nursery, node: V2Node, tag: str) -> None:
    """A well-behaved light client: metadata, lightpush, store, filter all work."""
    h = await peer_host(nursery)
    await h.connect(node.listen_addrs[0])
    assert await query_metadata(h, node.peer_id, Metadata(0, ())) == Metadata(0, (0,))
    msg = WakuMessage(f"still serving {tag}".encode(), CONTENT, version=0, timestamp=time.time_ns())
    res = await LightpushClient(h).push(node.peer_id, TOPIC, msg)
    assert res.ok, res
    fc = FilterClient(h)
    assert (await fc.subscribe(node.peer_id, TOPIC, [CONTENT])).status_code == FilterStatus.OK
    with trio.fail_after(10):
        while True:
            resp = await StoreClient(h).query(node.peer_id, StoreQuery(
                "q-" + tag, include_data=True, pubsub_topic=TOPIC, content_topics=(CONTENT,)))
            if any(kv.message == msg for kv in resp.messages):
                break
            await trio.sleep(0.05)
    assert resp.status_code == 200


async def test_garbage_on_every_protocol(nursery: trio.Nursery, served: tuple[V2Node, Collector, V2Node]) -> None:
    node, _, _ = served
    h = await peer_host(nursery)
    await h.connect(node.listen_addrs[0])
    pid = node.peer_id

    store = await exchange(h, pid, STORE_V3, GARBAGE)
    assert store is not None and decode_store_response(store).status_code == 400
    filt = await exchange(h, pid, FILTER_SUBSCRIBE, GARBAGE)
    assert filt is not None and FilterSubscribeResponse.decode(filt).status_code == FilterStatus.BAD_REQUEST
    lp3 = await exchange(h, pid, LIGHTPUSH_V3, GARBAGE)
    assert lp3 is not None and LightpushResponse.decode(lp3).status_code == LightpushStatus.BAD_REQUEST
    lp2 = await exchange(h, pid, LIGHTPUSH_V2, GARBAGE)
    assert lp2 is not None
    legacy = PushRPC.decode(lp2).response
    assert legacy is not None and not legacy.is_success and (legacy.info or "").startswith("decode_rpc_failure")
    px = await exchange(h, pid, PEER_EXCHANGE, GARBAGE)
    assert px is None or decode_response(px).status == PxStatus.BAD_REQUEST
    assert await exchange(h, pid, STORE_LEGACY, GARBAGE) is None  # no HistoryRPC: stream reset (nwaku: no answer)
    assert await exchange(h, pid, METADATA, GARBAGE) is None  # no answer to garbage, stream reset
    assert await exchange(h, pid, RELAY, GARBAGE) is None  # gossipsub drops the broken stream

    assert metric(node, "waku_store_errors_total", type="decode_rpc_failure") == 1
    assert metric(node, "waku_legacy_store_errors_total", type="decode_rpc_failure") == 1
    assert metric(node, "waku_lightpush_v3_errors_total", type="decode_rpc_failure") == 1
    assert metric(node, "waku_lightpush_errors_total", type="decode_rpc_failure") == 1
    assert metric(node, "waku_px_errors_total", type="decode_rpc_failure") == 1
    assert metric(node, "waku_metadata_errors_total", type="decode") == 1
    with trio.fail_after(5):  # relay garbage: counted; the stream is reset
        while metric(node, "waku_relay_rejected_total", reason="malformed_rpc") < 1:
            await trio.sleep(0.05)
    await still_serving(nursery, node, "garbage")


async def test_oversize_frames_and_messages(nursery: trio.Nursery, served: tuple[V2Node, Collector, V2Node]) -> None:
    node, col, relay_peer = served
    h = await peer_host(nursery)
    await h.connect(node.listen_addrs[0])
    pid = node.peer_id
    big = WakuMessage(b"x" * (MAX_MESSAGE_SIZE + 1), CONTENT, version=0, timestamp=time.time_ns())
    res = await LightpushClient(h).push(pid, TOPIC, big)
    assert res.status_code == LightpushStatus.PAYLOAD_TOO_LARGE
    # frames announcing more than each protocol reads: refused before the body is read
    huge = encode_uvarint(50 << 20) + b"\x0a"
    store = await exchange(h, pid, STORE_V3, huge, raw=True)
    assert store is None or decode_store_response(store).status_code == 400
    filt = await exchange(h, pid, FILTER_SUBSCRIBE, huge, raw=True)
    assert filt is None or FilterSubscribeResponse.decode(filt).status_code == FilterStatus.BAD_REQUEST
    assert await exchange(h, pid, STORE_LEGACY, huge, raw=True) is None
    assert metric(node, "waku_legacy_store_errors_total", type="request_too_large") == 1
    assert await exchange(h, pid, METADATA, encode_uvarint(5000) + b"\x08\x00", raw=True) is None
    assert metric(node, "waku_metadata_errors_total", type="too_large") == 1
    # an oversize relay message from a misbehaving relay peer (it skips its own publish checks)
    assert relay_peer.relay._pubsub is not None
    relay_peer.relay._pubsub.remove_topic_validator(TOPIC)
    await relay_peer.relay._pubsub.publish(TOPIC, big.encode())
    good = await relay_peer.publish(TOPIC, WakuMessage(b"fine", CONTENT, version=0, timestamp=time.time_ns()))
    with trio.fail_after(10):
        while not any(m.hash == good.hash for m in col.got):
            await trio.sleep(0.05)
    assert metric(node, "waku_relay_rejected_total", reason="too_large") == 1
    assert all(len(m.data) <= MAX_MESSAGE_SIZE for m in col.got)
    await still_serving(nursery, node, "oversize")


async def test_silent_streams_time_out_and_are_counted(nursery: trio.Nursery,
                                                       served: tuple[V2Node, Collector, V2Node]) -> None:
    node, _, _ = served
    h = await peer_host(nursery)
    await h.connect(node.listen_addrs[0])
    silent = [await h.new_stream(node.peer_id, [p])
              for p in (STORE_V3, FILTER_SUBSCRIBE, LIGHTPUSH_V3, LIGHTPUSH_V2, PEER_EXCHANGE, METADATA) * 3]
    await still_serving(nursery, node, "silent")  # while 18 streams sit idle
    with trio.fail_after(15):  # idle_stream_timeout = 1 s: each one is reset and counted
        while (metric(node, "waku_store_errors_total", type="read_failure") < 3
               or metric(node, "waku_lightpush_v3_errors_total", type="read_timeout") < 3
               or metric(node, "waku_lightpush_errors_total", type="read_timeout") < 3
               or metric(node, "waku_metadata_errors_total", type="timeout") < 3):
            await trio.sleep(0.1)
    for s in silent:
        await s.aclose()
    await still_serving(nursery, node, "after-silent")


async def test_wrong_or_missing_cluster_is_disconnected(nursery: trio.Nursery,
                                                        served: tuple[V2Node, Collector, V2Node]) -> None:
    node, _, _ = served
    wrong = await peer_host(nursery, cluster=9)
    mute = await peer_host(nursery, cluster=None)
    bare = await peer_host(nursery, metadata=False)
    for h in (wrong, mute, bare):
        await h.connect(node.listen_addrs[0])
    with trio.fail_after(15):
        while any(h.connected_peers() for h in (wrong, mute, bare)):
            await trio.sleep(0.05)
    assert metric(node, "waku_metadata_rejected_peers_total", reason="cluster_mismatch") == 1
    assert metric(node, "waku_metadata_rejected_peers_total", reason="no_cluster") == 1
    assert metric(node, "waku_metadata_rejected_peers_total", reason="query_failed") == 1
    await still_serving(nursery, node, "clusters")


def _relay_frames() -> list[bytes]:
    """Hostile gossipsub RPCs: random bytes, signed/seqno'd junk, subscription floods, absurd control."""
    from libp2p.pubsub.pb import rpc_pb2  # test-only: builds RPCs the way a hostile peer would

    rnd = random.Random(7)
    junk = [rnd.randbytes(rnd.randint(1, 200)) for _ in range(3)]
    publish = rpc_pb2.RPC(publish=[rpc_pb2.Message(
        data=rnd.randbytes(50), topicIDs=[TOPIC], seqno=rnd.randbytes(20), from_id=rnd.randbytes(40),
        signature=rnd.randbytes(10), key=rnd.randbytes(70))])
    subs = rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=f"/t/{i}") for i in range(300)])
    control = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(
        ihave=[rpc_pb2.ControlIHave(topicID=TOPIC, messageIDs=[rnd.randbytes(32)] * 50)],
        iwant=[rpc_pb2.ControlIWant(messageIDs=[rnd.randbytes(3)] * 20)],
        graft=[rpc_pb2.ControlGraft(topicID=TOPIC)], prune=[rpc_pb2.ControlPrune(topicID=TOPIC, backoff=2**63)]))
    return [*junk, publish.SerializeToString(), subs.SerializeToString(), control.SerializeToString()]


async def test_hostile_relay_rpcs(nursery: trio.Nursery, served: tuple[V2Node, Collector, V2Node]) -> None:
    node, col, relay_peer = served
    for frame in _relay_frames():
        h = await peer_host(nursery)
        await h.connect(node.listen_addrs[0])
        s = await h.new_stream(node.peer_id, [RELAY])
        try:
            await s.write_lp(frame)
        except StreamClosedError:
            pass
        await trio.sleep(0.05)
    good = await relay_peer.publish(TOPIC, WakuMessage(b"after hostile rpcs", CONTENT, version=0,
                                                       timestamp=time.time_ns()))
    with trio.fail_after(10):
        while not any(m.hash == good.hash for m in col.got):
            await trio.sleep(0.05)
    await still_serving(nursery, node, "hostile-relay")
